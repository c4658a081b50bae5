"""A full install: every first-party plugin loads, and `returnn --list-plugins` still imports no backend."""

from __future__ import annotations

import json
import subprocess
import sys

from returnn_core.plugin import FIRST_PARTY


def test_list_plugins_shows_all_five_loaded():
    res = subprocess.run([sys.executable, "-m", "returnn_core", "--list-plugins", "--json"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    for name, dist in FIRST_PARTY.items():
        assert plugins[name]["status"] == "loaded", plugins[name]
        assert plugins[name]["distribution"] == dist


def test_list_plugins_with_all_plugins_imports_no_backend():
    code = (
        "import sys, io, contextlib\n"
        "from returnn_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--list-plugins']) == 0\n"
        "print(sorted(m for m in ('tensorflow', 'pytensor', 'h5py', 'torch') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
