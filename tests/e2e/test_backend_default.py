"""A config that names no backend runs on theano through the installed ``returnn`` command (RETURNN 2017's default).

The fallbacks when theano is missing are covered in tests/core/test_backend_choice.py without importing TensorFlow.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("returnn_theano")

# no 'model': the run stops with a config error right after the backend is chosen, before any training
CONFIG = """\
task train
train {"class": "Task12AXDataset", "num_seqs": 10}
network {
  "output": {"class": "softmax", "loss": "ce"}
}
"""


def returnn_log(tmp_path) -> str:
    cfg = tmp_path / "nobackend.config"
    cfg.write_text(CONFIG)
    proc = subprocess.run([sys.executable, "-m", "returnn_core", str(cfg)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "set 'model'" in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def test_no_backend_named_runs_on_theano(tmp_path):
    log = returnn_log(tmp_path)
    assert "backend: theano (RETURNN's default when a config names no backend); choose one with backend = " in log

