"""PyTensorOps (the core frontend's Ops on PyTensor): primitives and composites against NumPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from returnn_theano._pt import floatX, pt, pytensor, shared_rng
from returnn_theano.ops import OPS, PyTensorOps, RandomSource
from theano_helpers import ctc_brute_force

from returnn_core.errors import NetworkError
from returnn_core.frontend import Ops, ops_for

RNG = np.random.RandomState(0)


def _run(inputs: list, outputs, *values, updates=()) -> list[np.ndarray]:
    single = not isinstance(outputs, (list, tuple))
    fn = pytensor.function(inputs, [outputs] if single else list(outputs), updates=list(updates),
                           on_unused_input="ignore")
    res = fn(*values)
    return res[0] if single else res


def _f32(*shape: int) -> np.ndarray:
    return RNG.randn(*shape).astype("float32")


ops = PyTensorOps()


def test_dispatch_on_every_pytensor_tensor() -> None:
    x = pt.matrix("x", dtype="float32")
    shared = pytensor.shared(np.zeros(3, "float32"), name="s")
    for tensor in (x, shared, pt.constant(np.float32(1.0)), x * 2.0, pt.ivector("lens"), shared[0]):
        assert ops_for(tensor) is OPS
    assert isinstance(OPS, Ops) and OPS.backend == "theano"
    with pytest.raises(NetworkError, match="no backend ops registered"):
        ops_for(np.zeros(3))


def test_creation_and_meta() -> None:
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 4))
    assert ops.dtype(ops.constant([1, 2], "int32")) == "int32"
    assert ops.dtype(ops.constant(1.5)) == "float32"
    assert ops.dtype(ops.convert(2)) == "float32" and ops.convert(x) is x
    assert ops.dtype(ops.cast(x, "int32")) == "int32" and ops.cast(x, "float32") is x
    assert ops.dtype(ops.cast(ops.equal(x, 0.0), "bool")) == "bool"
    assert ops.ndim(x) == 3 and ops.static_shape(x) == (None, None, 4)
    shape = ops.shape(x)
    assert shape[2] == 4 and not isinstance(shape[0], int)
    filled = ops.fill([ops.dynamic_dim(x, 0), 2], 7.0)
    assert ops.static_shape(filled) == (None, 2) and ops.dtype(filled) == "float32"
    assert ops.dtype(ops.zeros([2], "int32")) == "int32"
    value = _f32(3, 5, 4)
    got = _run([x], [filled, ops.arange(ops.dynamic_dim(x, 1)), ops.ones_like(x), ops.zeros_like(x)], value)
    np.testing.assert_array_equal(got[0], np.full((3, 2), 7.0))
    np.testing.assert_array_equal(got[1], np.arange(5))
    assert got[1].dtype == np.int32
    np.testing.assert_array_equal(got[2], np.ones_like(value))
    np.testing.assert_array_equal(got[3], np.zeros_like(value))


def test_elementwise() -> None:
    x = pt.matrix("x", dtype="float32")
    value = np.abs(_f32(3, 4)) + 0.1
    cases = {
        "exp": (ops.exp(x), np.exp(value)), "log": (ops.log(x), np.log(value)),
        "log1p": (ops.log1p(x), np.log1p(value)), "sqrt": (ops.sqrt(x), np.sqrt(value)),
        "abs": (ops.abs(-x), value), "tanh": (ops.tanh(x), np.tanh(value)),
        "sigmoid": (ops.sigmoid(x), 1 / (1 + np.exp(-value))), "sin": (ops.sin(x), np.sin(value)),
        "cos": (ops.cos(x), np.cos(value)), "square": (ops.square(x), value**2),
        "rsqrt": (ops.rsqrt(x), 1 / np.sqrt(value)), "max": (ops.maximum(x, 0.5), np.maximum(value, 0.5)),
        "min": (ops.minimum(x, 0.5), np.minimum(value, 0.5)), "clip": (ops.clip(x, 0.3, 0.6), np.clip(value, 0.3, 0.6)),
        "relu": (ops.relu(x - 0.5), np.maximum(value - 0.5, 0)),
        "softplus": (ops.softplus(x), np.log1p(np.exp(value))),
        "where": (ops.where(ops.greater(x, 0.5), x, -1.0), np.where(value > 0.5, value, -1.0)),
        "where2": (ops.where(ops.less(x, 0.5), 1.0, 2.0), np.where(value < 0.5, 1.0, 2.0)),
        "eq": (ops.cast(ops.equal(x, x[0]), "float32"), (value == value[0]).astype("f")),
        "ne": (ops.cast(ops.not_equal(x, x[0]), "float32"), (value != value[0]).astype("f")),
    }
    for name, (expr, _) in cases.items():
        assert ops.dtype(expr) == "float32", name
    got = _run([x], [e for e, _ in cases.values()], value)
    for (name, (_, want)), g in zip(cases.items(), got):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=name)
    lens = pt.ivector("lens")
    assert ops.dtype(ops.maximum(lens - 1, 0)) == "int32"


def test_stop_gradient() -> None:
    x = pt.vector("x", dtype="float32")
    y = ops.reduce(x * ops.stop_gradient(x), "sum")
    (g,) = _run([x], [pytensor.grad(y, x)], np.array([1.0, 2.0], "f"))
    np.testing.assert_allclose(g, [1.0, 2.0])


def test_matmul_dot_and_reductions() -> None:
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 4))
    w = pytensor.shared(_f32(4, 3), name="w", shape=(4, 3))
    value = _f32(2, 5, 4)
    value[1, 2, 1] = 9.0
    dot = ops.dot(x, w)
    assert ops.static_shape(dot) == (None, None, 3)
    exprs = [
        ops.matmul(x[0], w), dot, ops.reduce(x, "sum"), ops.reduce(x, "mean", 1), ops.reduce(x, "max", [1, 2]),
        ops.reduce(x, "min", -1, keepdims=True), ops.reduce(x, "prod", (0,)), ops.reduce(x, "logsumexp", -1),
        ops.reduce(x, "logsumexp", [0, 2], keepdims=True), ops.argmax(x, -1), ops.argmax(x, 1),
    ]
    got = _run([x], exprs, value)
    wv = w.get_value()
    x64 = value.astype("float64")

    def lse(a, axis, keepdims=False):
        m = a.max(axis=axis, keepdims=True)
        out = np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axis)

    wants = [value[0] @ wv, value @ wv, x64.sum(), x64.mean(1), x64.max((1, 2)), x64.min(-1, keepdims=True),
             x64.prod(0), lse(x64, -1), lse(x64, (0, 2), keepdims=True), value.argmax(-1), value.argmax(1)]
    for i, (g, want) in enumerate(zip(got, wants)):
        assert g.shape == np.shape(want), i
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5, err_msg=str(i))
    assert got[-1].dtype == np.int32
    with pytest.raises(ValueError, match="unknown reduce mode"):
        ops.reduce(x, "median")


def test_logsumexp_of_all_masked_is_finite_and_has_gradient() -> None:
    x = pt.matrix("x", dtype="float32")
    out = ops.reduce(x, "logsumexp", -1)
    value = np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]], "f")
    got = _run([x], out, value)
    assert got[0] == -np.inf
    np.testing.assert_allclose(got[1], np.log(4.0), rtol=1e-6)
    (g,) = _run([x], [pytensor.grad(out[1], x)], value)
    np.testing.assert_allclose(g[1], [0.25, 0.75], rtol=1e-6)


def test_shape_ops() -> None:
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 4))
    value = _f32(2, 3, 4)
    b, t = ops.dynamic_dim(x, 0), ops.dynamic_dim(x, 1)
    reshaped = ops.reshape(x, (b, t, 2, 2))
    assert ops.static_shape(reshaped) == (None, None, 2, 2)
    assert ops.static_shape(ops.reshape(x, (-1, 4))) == (None, 4)
    idx = pt.imatrix("idx")
    exprs = [
        reshaped, ops.transpose(x, (1, 0, 2)), ops.expand_dims(x, 1), ops.squeeze(ops.expand_dims(x, -1), -1),
        ops.squeeze(x[:, :1], 1), ops.concat([x, x * 2.0], -1), ops.stack([x, x], 1), ops.tile(x, [1, b, 2]),
        ops.pad(x, [(0, 0), (1, 2), (0, 1)], value=5.0), ops.pad(x, [(0, 0), (2, 1), (0, 0)], mode="reflect"),
        ops.pad(x, [(0, 0), (2, 1), (1, 0)], mode="symmetric"), ops.gather(x, idx[0], axis=1), ops.gather(x[0], idx),
        ops.take_along_axis(x, pt.tile(idx[:, :, None], (1, 1, 4)), axis=1),
    ]
    assert ops.static_shape(exprs[8]) == (None, None, 5)
    iv = np.array([[2, 0, 1], [1, 1, 0]], "int32")
    got = _run([x, idx], exprs, value, iv)
    wants = [
        value.reshape(2, 3, 2, 2), value.transpose(1, 0, 2), value[:, None], value, value[:, 0],
        np.concatenate([value, 2 * value], -1), np.stack([value, value], 1), np.tile(value, (1, 2, 2)),
        np.pad(value, [(0, 0), (1, 2), (0, 1)], constant_values=5.0), np.pad(value, [(0, 0), (2, 1), (0, 0)], "reflect"),
        np.pad(value, [(0, 0), (2, 1), (1, 0)], "symmetric"), value[:, iv[0]], value[0][iv],
        np.take_along_axis(value, np.tile(iv[:, :, None], (1, 1, 4)), axis=1),
    ]
    for i, (g, want) in enumerate(zip(got, wants)):
        np.testing.assert_array_equal(g, want, err_msg=str(i))
    parts = ops.split(x, (1, 3), axis=-1)
    got = _run([x], parts, value)
    np.testing.assert_array_equal(got[0], value[..., :1])
    np.testing.assert_array_equal(got[1], value[..., 1:])


def test_masks_one_hot_and_masked_statistics() -> None:
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 3))
    lens = pt.ivector("lens")
    labels = pt.imatrix("labels")
    mask = ops.sequence_mask(lens, ops.dynamic_dim(x, 1))
    m3 = ops.expand_dims(mask, -1)
    mean, var = ops.moments(x, [0, 1], mask=m3)
    exprs = [
        mask, ops.one_hot(labels, 4), ops.masked_reduce(x, m3, "mean", 1), ops.masked_reduce(x, m3, "max", 1),
        ops.masked_reduce(x, m3, "sum", 1), mean, var, ops.moments(x, -1, keepdims=True)[1],
        ops.softmax(x), ops.log_softmax(x), ops.cross_entropy_sparse(ops.log_softmax(x), labels),
        ops.last_frame(x, lens, ops.zeros([ops.dynamic_dim(x, 0), 3]) - 1.0),
    ]
    value = _f32(3, 4, 3)
    lv = np.array([4, 2, 0], "int32")
    yv = RNG.randint(0, 3, (3, 4)).astype("int32")
    got = _run([x, lens, labels], exprs, value, lv, yv)
    mv = (np.arange(4)[None] < lv[:, None]).astype("f")
    np.testing.assert_array_equal(got[0], mv)
    np.testing.assert_array_equal(got[1], np.eye(4)[yv])
    for b, n in enumerate(lv):
        if n:
            np.testing.assert_allclose(got[2][b], value[b, :n].mean(0), rtol=1e-5)
            np.testing.assert_allclose(got[3][b], value[b, :n].max(0), rtol=1e-6)
        np.testing.assert_allclose(got[4][b], value[b, :n].sum(0), rtol=1e-5, atol=1e-6)
    frames = np.concatenate([value[b, :n] for b, n in enumerate(lv)])
    np.testing.assert_allclose(got[5], frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(got[6], frames.var(0), rtol=1e-4)
    np.testing.assert_allclose(got[7], value.var(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    e = np.exp(value - value.max(-1, keepdims=True))
    sm = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(got[8], sm, rtol=1e-5)
    np.testing.assert_allclose(got[9], np.log(sm), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[10], -np.log(np.take_along_axis(sm, yv[..., None], -1)[..., 0]), rtol=1e-4)
    np.testing.assert_allclose(got[11], [value[0, 3], value[1, 1], [-1, -1, -1]], rtol=1e-6)


def test_reverse_sequence_matches_the_generic_composite() -> None:
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 2))
    lens = pt.ivector("lens")
    value = _f32(3, 5, 2)
    lv = np.array([5, 3, 0], "int32")
    fast, generic = _run([x, lens], [ops.reverse_sequence(x, lens), Ops.reverse_sequence(ops, x, lens)], value, lv)
    for b, n in enumerate(lv):
        want = np.concatenate([value[b, :n][::-1], value[b, n:]])
        np.testing.assert_array_equal(fast[b], want)
        np.testing.assert_array_equal(generic[b], want)


def test_scan_with_several_states_and_non_sequences() -> None:
    xs = pt.matrix("xs", dtype="float32")  # (T, B)
    w = pt.scalar("w", dtype="float32")

    def step(x_t, total, count, scale):
        total = total + scale * x_t
        return total * 2.0, (total, count + 1.0)

    init = ops.zeros([ops.dynamic_dim(xs, 1)])
    out, (total, count) = ops.scan(step, [xs], [init, init], non_sequences=[w])
    value = _f32(4, 3)
    got = _run([xs, w], [out, total, count], value, np.float32(0.5))
    cum = np.cumsum(0.5 * value, 0)
    np.testing.assert_allclose(got[0], 2 * cum, rtol=1e-5)
    np.testing.assert_allclose(got[1], cum[-1], rtol=1e-5)
    np.testing.assert_allclose(got[2], [4.0] * 3)
    (g,) = _run([xs, w], [pytensor.grad(ops.reduce(total, "sum"), w)], value, np.float32(0.5))
    np.testing.assert_allclose(g, value.sum(), rtol=1e-4)


def _np_sig(x):
    return 1 / (1 + np.exp(-x))


def test_lstm_composite() -> None:
    n = 3
    x = pt.tensor3("x", dtype="float32", shape=(None, None, 4 * n))
    mask = pt.matrix("mask", dtype="float32")
    w_re = pytensor.shared(_f32(n, 4 * n) * 0.5, name="W_re", shape=(n, 4 * n))
    h0, c0 = pt.matrix("h0", dtype="float32"), pt.matrix("c0", dtype="float32")
    # an identity input projection, so the reference below can take x as the gates' input
    w_in = pytensor.shared(np.eye(4 * n, dtype="float32"), name="W", shape=(4 * n, 4 * n))
    bias = pytensor.shared(np.zeros(4 * n, dtype="float32"), name="b", shape=(4 * n,))
    y, h, c = ops.lstm(x, w_in, bias, w_re, mask, h0, c0)
    zv, lens = _f32(2, 4, 4 * n), [4, 2]
    mv = (np.arange(4)[None] < np.array(lens)[:, None]).astype("f")
    hv, cv = _f32(2, n), _f32(2, n)
    got_y, got_h, got_c = _run([x, mask, h0, c0], [y, h, c], zv, mv, hv, cv)
    w = w_re.get_value()
    for b, length in enumerate(lens):
        hh, cc = hv[b].astype("float64"), cv[b].astype("float64")
        for t in range(4):
            if t < length:
                zz = zv[b, t] + hh @ w
                cc = _np_sig(zz[2 * n : 3 * n]) * cc + _np_sig(zz[n : 2 * n]) * np.tanh(zz[:n])
                hh = _np_sig(zz[3 * n :]) * np.tanh(cc)
                np.testing.assert_allclose(got_y[b, t], hh, rtol=1e-4, atol=1e-5)
            else:
                assert not got_y[b, t].any()
        np.testing.assert_allclose(got_h[b], hh, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_c[b], cc, rtol=1e-4, atol=1e-5)
    grads = pytensor.grad(ops.reduce(y, "sum") + ops.reduce(c, "sum"), [x, w_re])
    assert all(np.isfinite(g).all() for g in _run([x, mask, h0, c0], grads, zv, mv, hv, cv))


def _np_windows(x: np.ndarray, size, strides, dilation, padding, pad_value):
    """(offset, view) pairs like TensorFlow's padding, for the NumPy references."""
    n = len(size)
    pads, outs = [], []
    for i in range(n):
        length, eff = x.shape[1 + i], (size[i] - 1) * dilation[i] + 1
        if padding == "SAME":
            out = -(-length // strides[i])
            total = max((out - 1) * strides[i] + eff - length, 0)
            pads.append((total // 2, total - total // 2))
        else:
            out = max((length - eff) // strides[i] + 1, 0)
            pads.append((0, 0))
        outs.append(out)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    views = []
    for offset in itertools.product(*[range(k) for k in size]):
        index = [slice(None)]
        for i, k in enumerate(offset):
            start = k * dilation[i]
            index.append(slice(start, start + (outs[i] - 1) * strides[i] + 1, strides[i]))
        views.append((offset, xp[tuple(index)]))
    return views


@pytest.mark.parametrize(("size", "strides", "dilation", "padding"), [
    ((3,), (1,), (1,), "SAME"), ((2,), (2,), (1,), "VALID"), ((3,), (2,), (2,), "SAME"), ((2, 3), (1, 2), (1, 1), "SAME"),
    ((2, 2), (2, 1), (1, 2), "VALID"),
])
def test_conv_and_pool(size, strides, dilation, padding) -> None:
    n = len(size)
    x = pt.tensor(dtype="float32", shape=(None, None, *([5] * (n - 1)), 2), name="x")
    filters = pytensor.shared(_f32(*size, 2, 3), name="W", shape=(*size, 2, 3))
    geo = {"strides": strides, "dilation": dilation, "padding": padding}
    exprs = [ops.conv(x, filters, **geo), ops.pool(x, mode="max", size=size, **geo),
             ops.pool(x, mode="avg", size=size, **geo)]
    assert ops.static_shape(exprs[0])[-1] == 3 and ops.static_shape(exprs[1])[-1] == 2
    value = _f32(2, 7, *([5] * (n - 1)), 2)
    got = _run([x], exprs, value)
    w = filters.get_value()
    conv = sum(v @ w[o] for o, v in _np_windows(value, size, strides, dilation, padding, 0.0))
    maxp = np.max([v for _, v in _np_windows(value, size, strides, dilation, padding, -np.inf)], axis=0)
    total = sum(v for _, v in _np_windows(value, size, strides, dilation, padding, 0.0))
    count = sum(v for _, v in _np_windows(np.ones_like(value[..., :1]), size, strides, dilation, padding, 0.0))
    for g, want, name in zip(got, [conv, maxp, total / count], ["conv", "max", "avg"]):
        assert g.shape == want.shape, name
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5, err_msg=name)
    for i, dim in enumerate(ops.static_shape(exprs[0])[2:-1], start=2):
        assert dim == got[0].shape[i]


def test_ctc_loss_against_brute_force() -> None:
    logits = pt.tensor3("logits", dtype="float32", shape=(None, None, 3))
    lens, labels, label_lens = pt.ivector("lens"), pt.imatrix("labels"), pt.ivector("label_lens")
    loss = ops.ctc_loss(logits, lens, labels, label_lens)
    lv, yv, ylv = np.array([5, 3, 4], "int32"), np.array([[0, 0, 1], [1, 0, 0], [1, 0, 0]], "int32"), np.array([3, 1, 2], "int32")
    zv = _f32(3, 5, 3)
    got, grad = _run([logits, lens, labels, label_lens], [loss, pytensor.grad(loss.sum(), logits)], zv, lv, yv, ylv)
    assert got.shape == (3,)
    for b in range(3):
        z = zv[b, : lv[b]].astype("float64")
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        np.testing.assert_allclose(got[b], ctc_brute_force(probs, list(yv[b, : ylv[b]]), blank=2), rtol=1e-4)
    assert np.isfinite(grad).all() and not grad[1, 3:].any()  # padded frames get no gradient


def test_ctc_greedy_decode_and_edit_distance() -> None:
    logits = pt.tensor3("logits", dtype="float32")  # class dim not static: the blank index is symbolic
    lens, ref, ref_lens = pt.ivector("lens"), pt.imatrix("ref"), pt.ivector("ref_lens")
    hyp, hyp_lens = ops.ctc_greedy_decode(logits, lens)
    dist = ops.edit_distance(hyp, hyp_lens, ref, ref_lens)
    assert ops.dtype(hyp) == "int32" and ops.dtype(dist) == "float32"
    best = np.array([[0, 0, 2, 0, 1, 1, 2], [2, 1, 2, 1, 1, 0, 0], [2, 2, 2, 2, 2, 2, 2]])
    zv = np.eye(3, dtype="f")[best] * 5.0
    lv = np.array([7, 5, 3], "int32")
    rv = np.array([[0, 0, 1], [1, 0, 0], [1, 1, 0]], "int32")
    rlv = np.array([3, 1, 2], "int32")
    got_hyp, got_lens, got_dist = _run([logits, lens, ref, ref_lens], [hyp, hyp_lens, dist], zv, lv, rv, rlv)
    np.testing.assert_array_equal(got_lens, [3, 2, 0])
    np.testing.assert_array_equal(got_hyp, [[0, 0, 1], [1, 1, 0], [0, 0, 0]])
    assert got_dist == 0 + 1 + 2
    empty = _run([logits, lens], list(ops.ctc_greedy_decode(logits, lens)), zv[:, :0], np.zeros(3, "int32"))
    assert empty[0].shape == (3, 0) and not empty[1].any()
    # no gradient flows into labels, but the graph around the host ops is differentiable
    total = ops.reduce(logits, "sum") + dist
    (g,) = _run([logits, lens, ref, ref_lens], [pytensor.grad(total, logits)], zv, lv, rv, rlv)
    np.testing.assert_array_equal(g, np.ones_like(zv))


def test_random_draws_and_dropout_advance_the_shared_generator() -> None:
    rng = shared_rng(seed=3, name="rng")
    graph_ops = PyTensorOps(RandomSource(rng))
    x = pt.matrix("x", dtype="float32")
    dropped = graph_ops.dropout(x, 0.5)
    uniform = graph_ops.random_uniform([ops.dynamic_dim(x, 0), 4])
    normal = graph_ops.random_normal([2000], stddev=2.0)
    assert graph_ops.dtype(uniform) == graph_ops.dtype(normal) == "float32"
    assert graph_ops.dropout(x, 0.0) is x
    fn = pytensor.function([x], [dropped, uniform, normal], updates=graph_ops.random.updates())
    ones = np.ones((100, 50), "f")
    d1, u1, n1 = fn(ones)
    d2, u2, _ = fn(ones)
    assert set(np.unique(d1)) == {0.0, 2.0} and 0.4 < (d1 > 0).mean() < 0.6
    assert not np.array_equal(d1, d2) and not np.array_equal(u1, u2)
    assert u1.shape == (100, 4) and ((u1 >= 0) & (u1 < 1)).all()
    assert abs(n1.std() - 2.0) < 0.2
    with pytest.raises(NetworkError, match="random draws need"):
        OPS.random_uniform([3])


def test_assign_collects_updates() -> None:
    var = pytensor.shared(np.zeros(3, "float32"), name="running", shape=(3,))
    graph_ops = PyTensorOps()
    x = pt.matrix("x", dtype="float32")
    graph_ops.assign(var, ops.reduce(x, "mean", 0) * 0.5 + var * 0.5)
    assert len(graph_ops.updates) == 1 and graph_ops.updates[0][0] is var
    fn = pytensor.function([x], [], updates=graph_ops.updates)
    fn(np.full((2, 3), 4.0, "f"))
    np.testing.assert_allclose(var.get_value(), [2.0, 2.0, 2.0])
    with pytest.raises(NetworkError, match="assign needs"):
        OPS.assign(var, var)


def test_float32_throughout() -> None:
    assert floatX == "float32"
    x = pt.matrix("x", dtype="float32")
    for expr in (ops.masked_reduce(x, x, "max", 1), ops.softplus(x), ops.clip(x, -1.0, 1.0),
                 ops.where(x > 0.0, x, 0.0), ops.minimum(1.0, x), ops.reduce(x, "logsumexp")):
        assert ops.dtype(expr) == "float32"
