"""The 12AX demo through the ``returnn`` command on the TF backend: learning, resume, forward to HDF, priors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_datasets")


def returnn(*args: str) -> str:
    """Run the CLI; return its output (fails the test with the output on a non-zero exit)."""
    cmd = [sys.executable, "-m", "returnn_core", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def dev_errors(log: str) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"epoch (\d+) score: .* dev: score \S+ error (\S+)", log)}


def test_demo_reaches_low_dev_error(tmp_path) -> None:
    log = returnn(DEMO, "++model", str(tmp_path / "model"))
    errors = dev_errors(log)
    assert sorted(errors) == [1, 2, 3, 4, 5], log
    assert errors[5] < 0.015, log
    assert os.path.exists(tmp_path / "model.005.index")
    assert os.listdir(tmp_path / "tensorboard")


def test_resume_forward_and_priors(tmp_path) -> None:
    model = str(tmp_path / "model")
    returnn(DEMO, "++model", model, "++num_epochs", "2")
    assert os.path.exists(model + ".002.index")
    # a checkpoint without its marker (a run killed while saving) is ignored
    open(model + ".003.data-00000-of-00001", "w").close()
    log = returnn(DEMO, "++model", model, "++num_epochs", "3")
    assert "resuming from " + model + ".002" in log
    assert sorted(dev_errors(log)) == [3]
    out = str(tmp_path / "fwd.hdf")
    returnn(DEMO, "++model", model, "++task", "forward", "++eval", "{'class': 'Task12AXDataset', 'num_seqs': 5, "
            "'fixed_random_seed': 3}", "++output_file", out)
    import h5py

    with h5py.File(out, "r") as f:
        assert int(f.attrs["numSeqs"]) == 5
        probs = np.asarray(f["inputs"])
        assert probs.shape[1] == 2
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
        assert probs.shape[0] == int(np.asarray(f["seqLengths"])[:, 0].sum())
    priors = str(tmp_path / "priors.txt")
    returnn(DEMO, "++model", model, "++task", "compute_priors", "++output_file", priors)
    values = np.array([float(v) for v in open(priors).read().split()])
    assert values.shape == (2,) and np.exp(values).sum() == pytest.approx(1.0, abs=1e-3)
