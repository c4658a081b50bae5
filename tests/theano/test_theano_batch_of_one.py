"""Training on a batch of exactly one sequence: the gradient of a row gather (sparse ``linear``, a sparse input in a
rec loop) takes one index per frame or per step, and PyTensor's ``AdvancedIncSubtensor1`` refused a single index
into a table of several rows as "runtime broadcasting" (fixed in ``returnn_theano.ops``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from theano_helpers import make_backend

from returnn_core.datasets import BatchData, DatasetSeq, DataSpec, ExternData, generate_batches
from returnn_core.plugin import get_plugin_manager

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}
LR = 0.5


def _batch(labels: list[int], copies: int = 1) -> BatchData:
    """One batch of ``copies`` identical seqs with these labels (and random features)."""
    feats = np.random.RandomState(len(labels)).randn(len(labels), 4).astype("f")
    seqs = [DatasetSeq(i, f"seq-{i}", {"data": feats, "classes": np.asarray(labels, dtype="int32")})
            for i in range(copies)]
    (only,) = list(generate_batches(seqs, batch_size=100, max_seqs=copies))
    out = only.to_data(ExternData(EXTERN))
    assert out.data["classes"].shape == (copies, len(labels))
    return out


def _step(backend: Any, batch: BatchData, start: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    """One SGD step from the parameters ``start``: the loss and each parameter's change."""
    backend.set_param_values(start)
    res = backend.train_step(batch, LR)
    (loss,) = res.losses.values()
    return loss, {k: v - start[k] for k, v in backend.get_param_values().items()}


def _check_trains(loss: float, delta: dict[str, np.ndarray]) -> None:
    assert np.isfinite(loss)
    for key, d in delta.items():
        assert np.all(np.isfinite(d)), key
        assert np.abs(d).max() > 0, f"{key} did not change"


@pytest.fixture
def fast_run_rewrites() -> Iterator[None]:
    """FAST_RUN's graph rewrites (they turn the gather's gradient into ``AdvancedIncSubtensor1``) on the Python
    linker: what RETURNN's default mode runs, without compiling C."""
    from returnn_theano.pytensor_setup import import_pytensor

    pytensor = import_pytensor()
    with pytensor.config.change_flags(mode=pytensor.compile.mode.Mode(linker="py", optimizer="fast_run")):
        yield


@pytest.mark.usefixtures("fast_run_rewrites")
@pytest.mark.parametrize("labels", [[2], [1, 0, 1, 1]], ids=["one-frame", "four-frames"])
def test_sparse_linear_trains_on_one_seq_with_numpy_gradient(labels: list[int]) -> None:
    """x = W[classes] (an embedding lookup), softmax ce on the classes; one frame was the failing case."""
    backend = make_backend({"emb": {"class": "linear", "activation": None, "with_bias": False, "n_out": 4,
                                    "from": "data:classes"},
                            "output": {"class": "softmax", "loss": "ce", "from": "emb", "target": "classes"}},
                           EXTERN, optimizer="sgd")
    start = backend.get_param_values()
    loss, delta = _step(backend, _batch(labels), start)
    _check_trains(loss, delta)
    # NumPy: objective = sum_t ce_t / T, so d/dW[r] = sum over frames t with classes[t] == r of dlogits_t Wo^T / T
    w, wo, bo = start["emb/W"], start["output/W"], start["output/b"]
    idx = np.asarray(labels)
    logits = w[idx] @ wo + bo
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    np.testing.assert_allclose(loss, -np.log(prob[np.arange(len(idx)), idx]).sum(), rtol=1e-5)
    dlogits = (prob - np.eye(3)[idx]) / len(idx)
    grad = np.zeros_like(w)
    np.add.at(grad, idx, dlogits @ wo.T)
    np.testing.assert_allclose(-delta["emb/W"] / LR, grad, rtol=1e-4, atol=1e-6)
    unused = sorted(set(range(3)) - set(labels))
    assert not np.any(delta["emb/W"][unused]), "rows of classes not in the batch must not move"


def _rec_net(unit: str) -> dict[str, Any]:
    """A rec loop whose step embeds the previous label (one index per seq and step) and runs ``unit``."""
    return {"output": {"class": "rec", "from": ["data"], "target": "classes", "unit": {
        "embed": {"class": "linear", "activation": None, "with_bias": False, "n_out": 3, "from": ["prev:output"]},
        "cell": {"class": "rnn_cell", "unit": unit, "n_out": 4, "from": ["data:source", "embed"]},
        "prob": {"class": "softmax", "from": ["cell"], "n_out": 3, "loss": "ce", "target": "classes"},
        "output": {"class": "choice", "beam_size": 2, "target": "classes", "from": ["prob"]},
    }}}


def test_rec_loop_with_sparse_step_input_trains_on_one_seq() -> None:
    """A batch of one seq (one step of it, and three) gives the update of a batch holding that seq twice.

    The gather in the loop fails alike whatever the cell; the reported case was the nativelstm unit, so it runs
    where that unit is installed and the scan lstm elsewhere (one compile either way)."""
    unit = "nativelstm" if ("theano", "nativelstm") in get_plugin_manager().rec_units else "lstm"
    backend = make_backend(_rec_net(unit), EXTERN, manager=get_plugin_manager(), optimizer="sgd")
    start = backend.get_param_values()
    for labels in ([1], [2, 0, 2]):
        loss, delta = _step(backend, _batch(labels), start)
        # in one step the recurrent weights meet only the zero initial state and get no gradient
        _check_trains(loss, {k: d for k, d in delta.items() if len(labels) > 1 or k.endswith(("embed/W", "prob/W"))})
        # the objective is the loss per frame: two copies of the seq give the same gradient
        loss2, delta2 = _step(backend, _batch(labels, copies=2), start)
        np.testing.assert_allclose(loss2, 2 * loss, rtol=1e-5)
        for key in delta:
            np.testing.assert_allclose(delta[key], delta2[key], rtol=1e-3, atol=1e-6, err_msg=key)
        # the embedding rows of the labels fed back (the initial prev:output is 0) are the only ones that move
        fed = {0, *labels[:-1]}
        moved = {r for r in range(3) if np.any(delta["output/rec/embed/W"][r])}
        assert moved <= fed


def test_inc_subtensor1_takes_one_index_and_still_refuses_runtime_broadcasting() -> None:
    """``x[idx] += y`` with one index into several rows works; a length-1 ``y`` for two indices is still refused."""
    from pytensor.tensor.subtensor import advanced_inc_subtensor1
    from returnn_theano.ops import pt, pytensor

    x, y, idx = pt.matrix(dtype="float32"), pt.matrix(dtype="float32"), pt.lvector()
    fn = pytensor.function([x, y, idx], advanced_inc_subtensor1(x, y, idx))
    out = fn(np.zeros((3, 2), "f"), np.ones((1, 2), "f"), np.array([1]))
    np.testing.assert_array_equal(out, [[0, 0], [1, 1], [0, 0]])
    for value, rows in (((1, 2), [0, 2]), ((2, 1), [0, 2])):
        with pytest.raises(ValueError, match="Runtime broadcasting not allowed"):
            fn(np.zeros((3, 2), "f"), np.ones(value, "f"), np.array(rows))
