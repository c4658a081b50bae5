"""What a user sees from a TF run: no framework noise on stderr, the lstm fallback line, per-step lines in logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")
SMALL = ["++num_epochs", "1", "++train", "{'class': 'Task12AXDataset', 'num_seqs': 30}",
         "++dev", "{'class': 'Task12AXDataset', 'num_seqs': 10, 'fixed_random_seed': 1}"]


def _returnn(tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``returnn DEMO`` as a user runs it: output piped, TensorFlow's log settings left alone."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "RETURNN_LOG_VERBOSITY")}
    res = subprocess.run([sys.executable, "-m", "returnn_core", DEMO, *SMALL, *args], capture_output=True, text=True,
                         cwd=tmp_path, env={**clean, **(env or {})}, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def test_run_is_quiet_says_which_lstm_runs_and_logs_every_step_at_verbosity_4(tmp_path):
    """One TF run (they are slow to start) checks stderr, the lstm line, per-step log lines and TensorBoard."""
    # without returnn-native, "unit": "lstm" runs on TF's own kernel and says so once
    log_file = tmp_path / "train.log"
    res = _returnn(tmp_path, "++log_verbosity", "4", "++log", str(log_file), env={"RETURNN_DISABLE_PLUGINS": "native"})
    assert res.stderr == ""  # no TensorFlow, absl or CUDA lines (e.g. "failed call to cuInit") below verbosity 5
    fallback = [line for line in res.stdout.splitlines() if "NativeLSTM" in line]
    assert fallback == ["layer 'fw0': unit lstm uses the tf backend's own LSTM kernel, not NativeLSTM "
                        "(no plugin provides nativelstm for tf: pip install returnn-native)"]
    steps = re.findall(r"^train epoch 1, step (\d+), cost:output [\d.]+, error:output [\d.]+, num_seqs \d+, "
                       r"lr 0\.01, [\d.]+ sec/step$", res.stdout, re.M)
    assert steps and steps == [str(i) for i in range(1, len(steps) + 1)]
    assert re.search(r"^dev epoch 1, step 1, cost:output", res.stdout, re.M)
    assert re.search(r"^epoch 1 score: [\d.]+ elapsed: \d:\d\d:\d\d dev: score [\d.]+ error [\d.]+$", res.stdout, re.M)
    assert log_file.read_text() == res.stdout
    # TensorBoard gets the same steps (the event file holds each scalar's tag once per write)
    events = b"".join(f.read_bytes() for f in (tmp_path / "out" / "demo-12ax" / "tensorboard").iterdir())
    assert events.count(b"step/cost:output") == len(steps) and events.count(b"step/learning_rate") == len(steps)
    assert events.count(b"dev_error") == 1  # the epoch's scalars, once


def _help(*command: str) -> str:
    res = subprocess.run([sys.executable, "-m", "returnn_core", *command, "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stderr == "", (command, res.stderr)
    assert res.stdout.startswith(f"usage: returnn {' '.join(command)}"), (command, res.stdout[:200])
    assert "-h, --help" in res.stdout
    return res.stdout


def test_every_command_and_subcommand_has_help():
    import json

    listing = subprocess.run([sys.executable, "-m", "returnn_core", "--list-plugins", "--json"], capture_output=True,
                             text=True, timeout=60)
    commands = [name for plugin in json.loads(listing.stdout) for name in plugin["provides"].get("cli_tools", [])]
    assert {"plot", "dump-dataset", "hdf-dump", "tf-distributed"} <= set(commands)
    for command in commands:
        text = _help(command)
        subcommands = re.search(r" \{([\w,-]+)\} \.\.\.", text.split("\n\n", 1)[0])  # argparse's subparsers
        for sub in subcommands[1].split(",") if subcommands else ():
            _help(command, sub)
