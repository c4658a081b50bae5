"""The 12AX demo through the ``returnn`` command on the theano backend (NativeLSTM from returnn-native)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("returnn_theano")
pytest.importorskip("returnn_datasets")
pytest.importorskip("returnn_native")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")


def returnn(*args: str) -> str:
    """Run the CLI with the theano backend; return its output (fails the test with the output on error)."""
    cmd = [sys.executable, "-m", "returnn_core", DEMO, "++backend", "theano", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def dev_errors(log: str) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"epoch (\d+) score: .* dev: score \S+ error (\S+)", log)}


def test_demo_learns_on_theano(tmp_path) -> None:
    log = returnn("++model", str(tmp_path / "model"))
    errors = dev_errors(log)
    assert sorted(errors) == [1, 2, 3, 4, 5], log
    assert errors[5] < 0.05, log
    assert errors[5] < errors[1]
    assert os.path.exists(tmp_path / "model.005.npz")


def test_resume_and_forward_on_theano(tmp_path) -> None:
    model = str(tmp_path / "model")
    returnn("++model", model, "++num_epochs", "2")
    log = returnn("++model", model, "++num_epochs", "3")
    assert "resuming from " + model + ".002" in log
    assert sorted(dev_errors(log)) == [3]
    out = str(tmp_path / "fwd.hdf")
    returnn("++model", model, "++task", "forward", "++eval",
            "{'class': 'Task12AXDataset', 'num_seqs': 4, 'fixed_random_seed': 3}", "++output_file", out)
    import h5py

    with h5py.File(out, "r") as f:
        probs = np.asarray(f["inputs"])
        assert int(f.attrs["numSeqs"]) == 4 and probs.shape[1] == 2
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


def test_lstm_unit_uses_the_registered_native_lstm() -> None:
    from returnn_core.config import Config
    from returnn_core.datasets import DataSpec, ExternData
    from returnn_core.log import Log
    from returnn_core.network import resolve_network
    from returnn_core.plugin import get_plugin_manager

    manager = get_plugin_manager()
    ext = ExternData({"data": DataSpec(3), "classes": DataSpec(2, sparse=True)})
    net = {"native": {"class": "rec", "unit": "lstm", "n_out": 4},
           "scan": {"class": "rec", "unit": "standardlstm", "n_out": 4, "reuse_params": "native",
                    "unit_opts": {"forget_bias": 0.0}},  # TF's cells add 1.0, NativeLSTM adds none
           "output": {"class": "softmax", "loss": "ce", "from": ["native", "scan"]}}
    backend = manager.backends.get("theano")(Config({}), manager, Log(0))
    backend.build(resolve_network(net, ext.keys()), ext, train=False)
    from returnn_core.datasets import DatasetSeq, generate_batches

    rng = np.random.RandomState(0)
    seqs = [DatasetSeq(i, f"s{i}", {"data": rng.randn(n, 3).astype("f")}) for i, n in enumerate((5, 2))]
    (bd,) = [b.to_data(ext) for b in generate_batches(seqs, batch_size=0)]
    native, _ = backend.forward_step(bd, "native")
    scan, _ = backend.forward_step(bd, "scan")
    np.testing.assert_allclose(native, scan, rtol=1e-5, atol=1e-6)
    ops = {type(node.op).__name__ for node in backend._forward_fns["native"].fn.maker.fgraph.apply_nodes}
    assert any("NativeLstm" in op for op in ops), ops
    assert not any("Scan" in op for op in ops), ops
