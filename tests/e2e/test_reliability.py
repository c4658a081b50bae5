"""Reliability on the real tf backend: a TensorBoard writer that cannot write never stops training.

(The backend-independent cases, a second run on a model, leftovers, SIGTERM and a full disk, run on the toy
backend in tests/core/test_reliability.py.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from returnn_core.engine import completed_epochs

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_datasets")


def test_tensorboard_writer_failing_does_not_stop_training(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = tmp_path / "tb.config"
    cfg.write_text(
        "#!python\nbackend = 'tf'\n"
        "train = {'class': 'Task12AXDataset', 'num_seqs': 8}\n"
        "network = {'output': {'class': 'softmax', 'loss': 'ce'}}\n"
        f"model = {str(tmp_path / 'out' / 'model')!r}\n"
        f"tf_log_dir = {str(blocker / 'tensorboard')!r}\n"
        "num_epochs = 2\nbatch_size = 2000\nmax_seqs = 4\nlearning_rate = 0.01\nlog_verbosity = 3\n"
    )
    res = subprocess.run([sys.executable, "-m", "returnn_core", str(cfg)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stdout.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: TensorBoard summaries stopped (")
    assert warnings[0].endswith("); training goes on without them")
    assert completed_epochs(str(tmp_path / "out" / "model"), ".index") == [1, 2]
