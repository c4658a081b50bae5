"""Layer-wise pretraining through the real ``returnn`` CLI on tf and theano: the network grows per epoch, params carry
over the switch, checkpoints are named ``model.pretrain.NNN`` then ``model.NNN``, and a run interrupted in the middle
of pretraining resumes with the right network."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")
pytest.importorskip("returnn_datasets")

# a 2017-style line-based config: the hidden_size description (no network key) with default pretraining
CONFIG = """\
pretrain default
hidden_size 7,7,7
hidden_type forward
activation tanh
bidirectional false
num_inputs 9
num_outputs 2
train Task12AXDataset:num_seqs=30
dev Task12AXDataset:num_seqs=8,fixed_random_seed=1
batch_size 1000
max_seqs 8
adam true
learning_rate 0.01
"""


def _train(tmp_path, backend: str, *args: str) -> str:
    path = tmp_path / "pretrain.config"
    path.write_text(CONFIG)
    # PyTensor without C compilation of each graph: the same ops, seconds instead of minutes on a cold cache
    env = {**os.environ, "PYTENSOR_FLAGS": "mode=FAST_COMPILE"}
    cmd = [sys.executable, "-m", "returnn_core", str(path), "++backend", backend,
           "++model", str(tmp_path / "out" / "model"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _params(tmp_path, backend: str, name: str) -> dict[str, np.ndarray]:
    prefix = str(tmp_path / "out" / name)
    if backend == "tf":
        from returnn_tf.checkpoint import read_values

        values = read_values(prefix)
    else:
        with np.load(prefix + ".npz") as f:
            values = {k: f[k] for k in f.files}
    # the layers' params are "<layer>/<param>"; the rest is optimizer state and step counters
    return {k: v for k, v in values.items() if "/" in k and not k.startswith("optimizer")}


def _files(tmp_path) -> list[str]:
    return sorted(f for f in os.listdir(tmp_path / "out") if f.startswith("model."))


@pytest.mark.parametrize("backend", ["tf", "theano"])
def test_greedy_pretraining_grows_the_network_and_carries_the_params(tmp_path, backend):
    log = _train(tmp_path, backend, "++num_epochs", "4", "++pretrain_greedy", "true")
    for epoch, layers in ((1, "hidden_0, output"), (2, "hidden_0, hidden_1, output"),
                          (3, "hidden_0, hidden_1, hidden_2, output")):
        assert f"pretrain epoch {epoch} (of 3): network with layers {layers}" in log
    assert "pretrain: new network for epoch 2; 4 params carried over, freshly initialised: hidden_1/W, hidden_1/b" \
        in log
    assert "start epoch 4 with learning rate 0.01" in log
    marker = ".index" if backend == "tf" else ".npz"
    assert [f for f in _files(tmp_path) if f.endswith(marker)] == [
        f"model.004{marker}", f"model.pretrain.001{marker}", f"model.pretrain.002{marker}",
        f"model.pretrain.003{marker}"]
    p1, p2, p3, p4 = (_params(tmp_path, backend, n) for n in ("model.pretrain.001", "model.pretrain.002",
                                                               "model.pretrain.003", "model.004"))
    assert sorted(p1) == ["hidden_0/W", "hidden_0/b", "output/W", "output/b"]
    # greedy: an earlier layer no longer trains, so the value it took over is exactly the trained one
    np.testing.assert_array_equal(p2["hidden_0/W"], p1["hidden_0/W"])
    np.testing.assert_array_equal(p3["hidden_1/W"], p2["hidden_1/W"])
    assert not np.array_equal(p2["output/W"], p1["output/W"])  # the output layer trains in each epoch
    assert not np.array_equal(p4["hidden_0/W"], p3["hidden_0/W"])  # after pretraining everything trains


@pytest.mark.parametrize("backend", ["tf", "theano"])
def test_resume_in_the_middle_of_pretraining_builds_that_epochs_network(tmp_path, backend):
    first = _train(tmp_path, backend, "++num_epochs", "2")
    assert "pretrain epoch 3" not in first
    log = _train(tmp_path, backend, "++num_epochs", "4")
    assert f"resuming from {tmp_path / 'out' / 'model.pretrain.002'}" in log
    assert "pretrain epoch 1 " not in log and "pretrain epoch 2 " not in log
    assert "pretrain epoch 3 (of 3): network with layers hidden_0, hidden_1, hidden_2, output" in log
    assert "pretrain: new network for epoch 3; 6 params carried over, freshly initialised: hidden_2/W, hidden_2/b" \
        in log
    marker = ".index" if backend == "tf" else ".npz"
    assert [f for f in _files(tmp_path) if f.endswith(marker)] == [
        f"model.004{marker}", f"model.pretrain.001{marker}", f"model.pretrain.002{marker}",
        f"model.pretrain.003{marker}"]
    # eval of a pretrain epoch's checkpoint builds that epoch's network
    evaluated = _train(tmp_path, backend, "++task", "eval", "++load_epoch", "1")
    assert "epoch 1 dev: score" in evaluated
    # load_epoch in the middle of pretraining: that epoch's network is loaded, then the next one grows from it
    again = _train(tmp_path, backend, "++load_epoch", "2", "++num_epochs", "3")
    assert "pretrain: new network for epoch 3; 6 params carried over" in again and "resuming" not in again
