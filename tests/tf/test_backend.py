"""The Backend interface: training learns, checkpoints round-trip, params by canonical name, plugin hooks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from tf_helpers import ToyDataset, batches_of, make_backend, train_epochs

from returnn_core.errors import NetworkError, TrainingError
from returnn_core.plugin import get_plugin_manager

NET = {"l1": {"class": "rec", "unit": "lstmblockfused", "n_out": 8},
       "output": {"class": "softmax", "loss": "ce", "from": "l1"}}


def test_registered_as_tf_and_tensorflow() -> None:
    manager = get_plugin_manager()
    from returnn_tf.backend import TFBackend

    assert manager.backends.get("tf") is TFBackend and manager.backends.get("tensorflow") is TFBackend
    for name in ("linear", "forward", "rec", "conv", "subnetwork", "time_unchunking"):
        assert ("tf", name) in manager.layers
    for name in ("ce", "ctc", "mse", "via_layer"):
        assert ("tf", name) in manager.losses


def test_hooks_module_imports_no_tensorflow() -> None:
    code = "import sys, returnn_tf._hooks; print('tensorflow' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_training_learns_a_lagged_task() -> None:
    data = ToyDataset(60, lag=2)
    batches = batches_of(data)
    backend = make_backend(NET, adam=True)
    before = sum(backend.eval_step(b).errors["output"] for b in batches)
    scores = train_epochs(backend, batches, 12, 0.03)
    after = sum(backend.eval_step(b).errors["output"] for b in batches)
    frames = sum(b.num_frames("classes") for b in batches)
    assert scores[-1] < scores[0] * 0.7
    assert after / frames < 0.12 and after < before / 3


def test_step_result_sums_and_dropout_only_in_training() -> None:
    batches = batches_of(ToyDataset(8))
    backend = make_backend({**NET, "l1": {**NET["l1"], "dropout": 0.5}})
    r1, r2 = backend.eval_step(batches[0]), backend.eval_step(batches[0])
    assert r1.losses == r2.losses and r1.frames["output"] == batches[0].num_frames("classes")
    assert 0 <= r1.errors["output"] <= r1.frames["output"]


def test_checkpoint_roundtrip_with_optimizer_state(tmp_path) -> None:
    batches = batches_of(ToyDataset(16))
    a = make_backend(NET, adam=True)
    train_epochs(a, batches, 1, 0.01)
    files = a.save(str(tmp_path / "model.001"))
    assert files[-1].endswith(".index") and all(os.path.exists(f) for f in files)
    b = make_backend(NET, adam=True)
    b.load(str(tmp_path / "model.001"))
    for k, v in a.get_param_values().items():
        np.testing.assert_array_equal(b.get_param_values()[k], v)
    # same optimizer state -> identical next updates
    ra, rb = a.train_step(batches[0], 0.01), b.train_step(batches[0], 0.01)
    assert ra.losses == rb.losses
    for k, v in a.get_param_values().items():
        np.testing.assert_allclose(b.get_param_values()[k], v, rtol=1e-6)
    c = make_backend(NET, train=False)
    c.load(str(tmp_path / "model.001"), params_only=True)
    with pytest.raises(TrainingError, match="not found"):
        c.load(str(tmp_path / "model.999"))
    other = make_backend({"output": {"class": "softmax", "loss": "ce"}})
    with pytest.raises(TrainingError, match="output/W"):
        other.load(str(tmp_path / "model.001"))


def test_param_values_by_canonical_name() -> None:
    backend = make_backend(NET)
    values = backend.get_param_values()
    assert set(values) == {"l1/W", "l1/W_re", "l1/b", "output/W", "output/b"}
    new = {k: np.full_like(v, 0.01) for k, v in values.items()}
    backend.set_param_values(new)
    np.testing.assert_array_equal(backend.get_param_values()["l1/W_re"], new["l1/W_re"])
    with pytest.raises(NetworkError, match="nope"):
        backend.set_param_values({"nope/W": np.zeros(1)})


def test_forward_step_and_missing_layer() -> None:
    batches = batches_of(ToyDataset(8))
    backend = make_backend(NET, train=False)
    out, lens = backend.forward_step(batches[0], "output")
    assert out.shape[:2] == batches[0].data["data"].shape[:2] and out.shape[2] == 2
    np.testing.assert_array_equal(lens, batches[0].seq_lens["data"])
    with pytest.raises(NetworkError, match="nope"):
        backend.forward_step(batches[0], "nope")


def test_no_retrace_across_batch_shapes() -> None:
    batches = batches_of(ToyDataset(40, min_len=3, max_len=30), max_seqs=5)
    backend = make_backend(NET)
    for b in batches:
        backend.train_step(b, 0.01)
        backend.eval_step(b)
    assert backend._train_fn.function.experimental_get_tracing_count() == 1
    assert backend._eval_fn.function.experimental_get_tracing_count() == 1


def test_compiled_step_matches_the_ordinary_call_and_checks_shapes() -> None:
    import tensorflow as tf
    from returnn_tf.compiled import CompiledStep

    def f(d: dict, scale: tf.Tensor) -> dict:
        return {"sum": tf.reduce_sum(d["x"]) * scale, "n": tf.shape(d["y"])[0]}

    sig = ({"x": tf.TensorSpec([None, 3], tf.float32, name="x"), "y": tf.TensorSpec([None], tf.int32)},
           tf.TensorSpec([], tf.float32))
    step = CompiledStep(f, sig, name="test step")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = step({"x": x, "y": np.array([1, 2, 3], np.int32)}, np.float32(2.0))
    ref = step.function({"x": x, "y": np.array([1, 2, 3], np.int32)}, np.float32(2.0))
    assert float(out["sum"]) == float(ref["sum"]) == 30.0 and int(out["n"]) == int(ref["n"]) == 3
    with pytest.raises(NetworkError, match=r"test step: input x has shape \[2, 4\]"):
        step({"x": np.zeros((2, 4), np.float32), "y": np.zeros(1, np.int32)}, np.float32(1.0))


def test_loss_without_target_and_no_loss() -> None:
    with pytest.raises(NetworkError, match="no loss to train"):
        make_backend({"output": {"class": "linear", "n_out": 2}})
    with pytest.raises(NetworkError, match="needs target 'classes'"):
        make_backend({"output": {"class": "softmax", "loss": "ce", "n_out": 2}}, extern_data={"data": [3, 2]})


def test_l2_and_trainable_false() -> None:
    batches = batches_of(ToyDataset(8))
    net = {"fixed": {"class": "linear", "n_out": 4, "trainable": False},
           "output": {"class": "softmax", "loss": "ce", "from": "fixed", "L2": 0.1}}
    backend = make_backend(net)
    before = backend.get_param_values()
    backend.train_step(batches[0], 0.1)
    after = backend.get_param_values()
    np.testing.assert_array_equal(after["fixed/W"], before["fixed/W"])
    assert not np.allclose(after["output/W"], before["output/W"])
