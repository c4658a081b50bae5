"""Every demo config under ``demos/`` runs through the ``returnn`` command (one short epoch, small data)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from returnn_core.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMOS = os.path.join(REPO, "demos")

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_datasets")

SMALL_12AX = "{'class': 'Task12AXDataset', 'num_seqs': 100}"


def returnn(*args: str) -> str:
    """Run the CLI from the repository root; its output (the test fails on a non-zero exit)."""
    proc = subprocess.run([sys.executable, "-m", "returnn_core", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def epoch_lines(log: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(0) for m in re.finditer(r"^epoch (\d+) score: .*$", log, re.M)}


def demo(name: str) -> str:
    return os.path.join(DEMOS, name)


def test_every_demo_is_covered_and_writes_under_out() -> None:
    names = sorted(f for f in os.listdir(DEMOS) if f.endswith(".config"))
    # demo-attention-copy and demo-rec-explicit-lstm run in test_rec_subnet.py (search; equality with the lstm unit),
    # the demo-2017-* ones in test_demos_2017.py (on the default theano backend and on tf)
    assert names == ["demo-12ax-forward.config", "demo-12ax.config", "demo-2017-12ax-lstm2.config",
                     "demo-2017-12ax-native-lstm.config", "demo-attention-copy.config",
                     "demo-blstm-newbob.config", "demo-ctc.config", "demo-rec-explicit-lstm.config"]
    for name in names:
        config = Config.from_args([demo(name)])
        for key in ("model", "output_file", "learning_rate_file"):
            if config.has(key):
                assert config.value(key).startswith("out/"), (name, key, config.value(key))


def test_blstm_newbob_demo(tmp_path) -> None:
    lr_file = tmp_path / "learning_rates"
    log = returnn(demo("demo-blstm-newbob.config"), "++num_epochs", "2", "++train", SMALL_12AX,
                  "++model", str(tmp_path / "model"), "++learning_rate_file", str(lr_file))
    lines = epoch_lines(log)
    assert sorted(lines) == [1, 2], log
    assert "dev: score" in lines[2]
    state = lr_file.read_text()
    assert state.count("EpochData") == 2 and "dev_score" in state, state
    assert os.path.exists(tmp_path / "model.002.index")


def test_ctc_demo(tmp_path) -> None:
    small = "{'class': 'TaskNumberBaseConvertDataset', 'input_base': 2, 'output_base': 8, 'num_seqs': %d}"
    log = returnn(demo("demo-ctc.config"), "++num_epochs", "1", "++train", small % 200, "++dev", small % 20,
                  "++model", str(tmp_path / "model"))
    line = epoch_lines(log)[1]
    m = re.search(r"dev: score (\S+) error (\S+)", line)
    assert m, line
    assert np.isfinite(float(m.group(1))) and 0.0 <= float(m.group(2)) <= 1.5, line


def test_forward_demo_writes_hdf(tmp_path) -> None:
    import h5py

    model = str(tmp_path / "model")
    returnn(demo("demo-12ax.config"), "++num_epochs", "1", "++train", SMALL_12AX, "++model", model)
    out = str(tmp_path / "forward.hdf")
    log = returnn(demo("demo-12ax-forward.config"), "++model", model, "++output_file", out)
    assert "forward: wrote" in log
    with h5py.File(out, "r") as f:
        assert int(f.attrs["numSeqs"]) == 20
        lens = np.asarray(f["seqLengths"])[:, 0]
        probs = np.asarray(f["inputs"])
        assert probs.shape == (int(lens.sum()), 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
