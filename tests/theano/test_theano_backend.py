"""The Backend interface on PyTensor: learning, one compile for all batch shapes, dropout, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from theano_helpers import batch, make_backend

from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches
from returnn_core.errors import NetworkError, TrainingError

EXTERN = {"data": DataSpec(3), "classes": DataSpec(3, sparse=True)}
NET = {
    "fw": {"class": "rec", "unit": "lstm", "n_out": 8},
    "bw": {"class": "rec", "unit": "lstm", "n_out": 8, "direction": -1},
    "output": {"class": "softmax", "loss": "ce", "from": ["fw", "bw"]},
}


def _seqs(n: int, seed: int) -> list[DatasetSeq]:
    """Label of a frame: which of the previous, current or next frame has the largest first feature."""
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        x = rng.randn(rng.randint(2, 9), 3).astype("f")
        a = x[:, 0]
        prev, nxt = np.r_[-9.0, a[:-1]], np.r_[a[1:], -9.0]
        y = np.argmax(np.stack([prev, a, nxt], 1), 1).astype("int32")
        out.append(DatasetSeq(i, f"seq-{i}", {"data": x, "classes": y}))
    return out


def _batches(seqs: list[DatasetSeq]):
    return [b.to_data(ExternData(EXTERN)) for b in generate_batches(seqs, batch_size=40, max_seqs=6)]


@pytest.mark.c_linker
def test_learns_and_compiles_once(tmp_path) -> None:
    backend = make_backend(NET, EXTERN, optimizer={"class": "adam"})
    train, dev = _batches(_seqs(60, 0)), _batches(_seqs(20, 1))
    assert len({(b.data["data"].shape) for b in train}) > 3  # several batch shapes

    def dev_error() -> float:
        res = None
        for b in dev:
            step = backend.eval_step(b)
            res = step if res is None else (res.add(step) or res)
        return res.error_rates()["output"]

    before = dev_error()
    fn = None
    for _ in range(8):
        for b in train:
            assert backend.train_step(b, 0.02).is_finite()
            fn = fn or backend._train_fn.fn
            assert backend._train_fn.fn is fn  # compiled once, whatever the batch shape
    after = dev_error()
    assert before > 0.4 and after < 0.5 * before

    out, lens = backend.forward_step(dev[0], "output")
    assert out.shape[:2] == dev[0].data["data"].shape[:2] and out.shape[2] == 3
    np.testing.assert_allclose(out.sum(-1)[0, : lens[0]], 1.0, rtol=1e-5)

    # checkpoint round trip: a fresh backend continues exactly like the original only with the optimizer state
    files = backend.save(str(tmp_path / "model.003"))
    assert files == [str(tmp_path / "model.003.npz")]
    full = make_backend(NET, EXTERN, optimizer={"class": "adam"}, random_seed=7)
    params_only = make_backend(NET, EXTERN, optimizer={"class": "adam"}, random_seed=8)
    full.load(str(tmp_path / "model.003"))
    params_only.load(str(tmp_path / "model.003"), params_only=True)
    for name, value in backend.get_param_values().items():
        np.testing.assert_array_equal(full.get_param_values()[name], value)
        np.testing.assert_array_equal(params_only.get_param_values()[name], value)
    # the optimizer state comes back only without params_only
    saved = {}
    for tag, b in (("orig", backend), ("full", full), ("params", params_only)):
        b.save(str(tmp_path / tag))
        with np.load(str(tmp_path / tag) + ".npz") as f:
            saved[tag] = {k: f[k] for k in f.files if k.startswith("optimizer:")}
    assert "optimizer:fw/W/m" in saved["orig"] and np.abs(saved["orig"]["optimizer:fw/W/m"]).max() > 0
    for key, value in saved["orig"].items():
        np.testing.assert_array_equal(saved["full"][key], value)
        assert not saved["params"][key].any(), key  # fresh Adam state: step 0, zero moments
    losses = [b.train_step(train[0], 0.02).losses["output"] for b in (backend, full)]
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(backend.get_param_values()["fw/W"], full.get_param_values()["fw/W"])


def test_dropout_only_in_training() -> None:
    net = {"drop": {"class": "dropout", "dropout": 0.5},
           "output": {"class": "softmax", "loss": "ce", "from": "drop"}}
    backend = make_backend(net, EXTERN, optimizer={"class": "sgd"})
    bd = batch({"data": [np.ones((50, 3), "f")], "classes": [np.zeros(50, "int32")]}, EXTERN)
    evals = {backend.eval_step(bd).losses["output"] for _ in range(3)}
    trains = {backend.train_step(bd, 0.0).losses["output"] for _ in range(3)}
    assert len(evals) == 1 and len(trains) == 3  # fresh dropout masks each step


def test_checkpoint_errors(tmp_path) -> None:
    backend = make_backend(NET, EXTERN, optimizer={"class": "adam"})
    with pytest.raises(TrainingError, match="does not exist"):
        backend.load(str(tmp_path / "model.001"))
    small = make_backend({**NET, "fw": {**NET["fw"], "n_out": 4}}, EXTERN)
    small.save(str(tmp_path / "model.001"))
    with pytest.raises(TrainingError, match=r"model.001.npz: parameter 'fw/W': shape \(3, 16\) given"):
        backend.load(str(tmp_path / "model.001"))
    with pytest.raises(NetworkError, match="unknown parameter.*nope/W"):
        backend.set_param_values({"nope/W": np.zeros(1)})


def test_missing_data_key_and_forward_without_targets() -> None:
    backend = make_backend(NET, EXTERN, train=False)
    no_targets = batch({"data": [np.ones((4, 3), "f")]}, EXTERN)
    out, lens = backend.forward_step(no_targets, "fw")
    assert out.shape == (1, 4, 8) and list(lens) == [4]
    with pytest.raises(TrainingError, match="no data key 'classes'"):
        backend.eval_step(no_targets)
    with pytest.raises(TrainingError, match="without train=True"):
        backend.train_step(no_targets, 0.1)
