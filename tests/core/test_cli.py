"""The returnn command line as a user runs it: version, plugin listing without backends, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

from fake_dist import run_returnn

from returnn_core import __version__

HEAVY = ("tensorflow", "pytensor", "h5py", "numpy", "torch", "scipy")


def test_version():
    res = run_returnn(["--version"])
    assert res.returncode == 0 and res.stdout.strip() == f"returnn-core {__version__}"


def test_list_plugins_imports_no_backend():
    code = (
        "import sys, io, contextlib\n"
        "from returnn_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--list-plugins']) == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_list_plugins_json_includes_core():
    res = run_returnn(["--list-plugins", "--json"])
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["core"]["status"] == "loaded"
    assert "newbob" in plugins["core"]["provides"]["lr_controls"]


def test_config_error_is_one_line_with_exit_2(tmp_path):
    cfg = tmp_path / "bad.config"
    cfg.write_text("#!python\nnetwork = {\n")
    res = run_returnn([str(cfg)])
    assert res.returncode == 2
    assert res.stderr.startswith(f"returnn: error: {cfg}:2: syntax error") and "Traceback" not in res.stderr


def test_usage_without_args():
    res = run_returnn([])
    assert res.returncode == 2 and "usage: returnn CONFIG" in res.stdout
