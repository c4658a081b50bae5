"""The returnn command line as a user runs it: version, plugin listing without backends, clean errors."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys

import pytest
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


def test_help_lists_options_commands_and_environment():
    res = run_returnn(["--help"])
    assert res.returncode == 0 and res.stderr == ""
    for option in ("--list-plugins", "-v, --verbose", "--json", "--version"):
        assert option in res.stdout
    commands = res.stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^  plot +draw scores, errors and the learning rate", commands, re.M)
    env = res.stdout.split("environment variables:\n", 1)[1]
    assert {line.split()[0] for line in env.splitlines()} >= {"RETURNN_CACHE_DIR", "RETURNN_DISABLE_PLUGINS"}


def test_list_plugins_fits_the_terminal_and_verbose_shows_every_name():
    names = json.loads(run_returnn(["--list-plugins", "--json"]).stdout)
    short = run_returnn(["--list-plugins"], env={"COLUMNS": "80"})
    assert short.returncode == 0 and max(len(line) for line in short.stdout.splitlines()) <= 80
    assert re.search(r"^core +returnn-core +\S+ +loaded +lr_controls: 4$", short.stdout, re.M)  # 4 names: a count
    full = run_returnn(["--list-plugins", "-v"], env={"COLUMNS": "80"})
    assert max(len(line) for line in full.stdout.splitlines()) <= 80
    flat = " ".join(full.stdout.split())
    for plugin in names:
        for kind, provided in plugin["provides"].items():
            assert f"{kind}: {', '.join(provided)}" in flat
    bad = run_returnn(["--list-plugins", "--wide"])
    assert bad.returncode == 2 and "takes only -v/--verbose and --json" in bad.stderr


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plot_draws_the_learning_rate_file(tmp_path):
    pytest.importorskip("matplotlib")
    from returnn_core.learning_rate.state_file import EpochData, save_state

    lr_file = tmp_path / "newbob.data"
    save_state(str(lr_file), {
        1: EpochData(0.01, {"train_score": 0.9, "dev_score": 0.8, "dev_error": 0.3}),
        2: EpochData(0.01, {"train_score": 0.5, "dev_score": 0.45, "dev_error": 0.1}),
        3: EpochData(0.005, {"train_score": 0.3, "dev_score": 0.35, "dev_error": 0.05}),
    })
    out = tmp_path / "plots" / "curves.png"
    res = run_returnn(["plot", str(lr_file), "-o", str(out), "--size", "640x480"], timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"wrote {out} (3 epochs)\n"
    assert _png_size(out) == (640, 480)
    missing = run_returnn(["plot", str(tmp_path / "nope.data")])
    assert missing.returncode == 2 and "nope.data: no such learning-rate file" in missing.stderr


def test_plot_curves_split_scores_and_errors():
    from returnn_core.cli.plot import curves
    from returnn_core.learning_rate.state_file import EpochData

    epochs, scores, errors = curves({2: EpochData(0.1, {"dev_score": 1.0, "dev_error": 0.5}),
                                     1: EpochData(0.1, {"dev_score": 2.0})})
    assert epochs == [1, 2] and scores == {"dev_score": [2.0, 1.0]}
    assert errors["dev_error"][1] == 0.5 and errors["dev_error"][0] != errors["dev_error"][0]  # NaN: not measured


def test_shell_completion_of_commands_and_options(tmp_path):
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"

    def complete(line: str) -> list[str]:
        env = {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)), "_ARGCOMPLETE_IFS": "\n",
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        assert run_returnn([], env=env, cwd=str(tmp_path)).returncode == 0
        return sorted(c.strip() for c in out.read_text().split("\n") if c.strip())

    (tmp_path / "plot-setup.config").write_text("#!returnn\n")
    assert complete("returnn pl") == ["plot", "plot-setup.config"]
    assert complete("returnn --list") == ["--list-plugins"]
