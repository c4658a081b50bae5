"""TFOps against numpy and against the core's generic composites: primitives, scan, the BlockLSTM fast path, CTC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from returnn_tf.ops import TF_OPS

from returnn_core.frontend import Ops, ops_for

RNG = np.random.RandomState(7)
X = RNG.normal(size=(3, 5, 4)).astype(np.float32)
LENS = np.array([5, 3, 1], np.int32)
MASK = (np.arange(5)[None] < LENS[:, None]).astype(np.float32)
OPS = TF_OPS


def generic(name: str):
    """The core's default implementation of composite ``name`` bound to the TF primitives."""
    return getattr(Ops, name).__get__(OPS)


def np_(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_dispatch_covers_eager_symbolic_and_variables() -> None:
    assert ops_for(tf.constant(1.0)) is OPS and ops_for(tf.Variable(1.0)) is OPS
    seen = []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def f(x):
        seen.append(ops_for(x))
        return x

    f(tf.zeros(2))
    assert seen == [OPS] and OPS.backend == "tf" and tf.errors.InvalidArgumentError.__mro__[1] in OPS.error_types


def test_meta_and_creation() -> None:
    x = tf.constant(X)
    assert OPS.dtype(x) == "float32" and OPS.ndim(x) == 3 and OPS.static_shape(x) == (3, 5, 4)
    assert OPS.dtype(OPS.constant([1, 2], "int64")) == "int64" and OPS.dtype(OPS.cast(x, "bool")) == "bool"
    assert OPS.dtype(OPS.convert(np.arange(3))) == "float32" and OPS.convert(x) is x
    assert int(OPS.dynamic_dim(x, 1)) == 5
    np.testing.assert_array_equal(np_(OPS.fill([2, OPS.dynamic_dim(x, 0)], 1.5)), np.full((2, 3), 1.5))
    np.testing.assert_array_equal(np_(OPS.arange(OPS.dynamic_dim(x, 1), "int64")), np.arange(5))
    assert OPS.dtype(OPS.zeros([2], "int32")) == "int32" and np_(OPS.ones_like(OPS.cast(x, "int32"))).dtype == np.float32
    assert [d if isinstance(d, int) else int(d) for d in OPS.shape(x)] == [3, 5, 4]


def test_elementwise_and_comparisons() -> None:
    x = tf.constant(X)
    pos = np.abs(X) + 0.1
    for name, ref in [("exp", np.exp(X)), ("tanh", np.tanh(X)), ("sigmoid", sig(X)), ("abs", np.abs(X)),
                      ("sin", np.sin(X)), ("cos", np.cos(X)), ("relu", np.maximum(X, 0)),
                      ("softplus", np.log1p(np.exp(X))), ("square", X * X)]:
        np.testing.assert_allclose(np_(getattr(OPS, name)(x)), ref, rtol=1e-5, atol=1e-6, err_msg=name)
    for name, ref in [("log", np.log(pos)), ("log1p", np.log1p(pos)), ("sqrt", np.sqrt(pos)),
                      ("rsqrt", 1 / np.sqrt(pos))]:
        np.testing.assert_allclose(np_(getattr(OPS, name)(tf.constant(pos))), ref, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(np_(OPS.maximum(x, np.float64(0.5))), np.maximum(X, 0.5))
    np.testing.assert_allclose(np_(OPS.minimum(x, 0.5)), np.minimum(X, 0.5))
    np.testing.assert_allclose(np_(OPS.clip(x, -0.2, 0.3)), np.clip(X, -0.2, 0.3))
    np.testing.assert_allclose(np_(OPS.where(x > 0.0, x, -1e30)), np.where(X > 0, X, -1e30))
    np.testing.assert_allclose(np_(OPS.where(x > 0.0, 1.0, x)), np.where(X > 0, 1.0, X))
    ints = tf.constant([[1, 2], [3, 2]])
    np.testing.assert_array_equal(np_(OPS.equal(ints, 2)), [[False, True], [False, True]])
    np.testing.assert_array_equal(np_(OPS.not_equal(ints, 2)), [[True, False], [True, False]])
    np.testing.assert_array_equal(np_(OPS.less(ints, 2)), [[True, False], [False, False]])
    np.testing.assert_array_equal(np_(OPS.greater(ints, 2)), [[False, False], [True, False]])


def test_reductions_matmul_dot() -> None:
    x = tf.constant(X)
    refs = {"sum": X.sum, "mean": X.mean, "max": X.max, "min": X.min, "prod": X.prod}
    for mode, fn in refs.items():
        np.testing.assert_allclose(np_(OPS.reduce(x, mode, 1)), fn(1), rtol=1e-5, err_msg=mode)
        np.testing.assert_allclose(np_(OPS.reduce(x, mode, (0, 2), keepdims=True)), fn((0, 2), keepdims=True),
                                   rtol=1e-5, err_msg=mode)
    np.testing.assert_allclose(np_(OPS.reduce(x, "logsumexp", -1)), np.log(np.exp(X).sum(-1)), rtol=1e-5)
    np.testing.assert_allclose(np_(OPS.reduce(x, "sum")), X.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="median"):
        OPS.reduce(x, "median")
    assert np_(OPS.argmax(x)).dtype == np.int32
    np.testing.assert_array_equal(np_(OPS.argmax(x, 1)), X.argmax(1))
    w = RNG.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(np_(OPS.matmul(x[0], w)), X[0] @ w, rtol=1e-5)
    np.testing.assert_allclose(np_(OPS.dot(x, w)), X @ w, rtol=1e-5, atol=1e-6)
    x4 = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(np_(OPS.dot(tf.constant(x4), tf.Variable(w))), x4 @ w, rtol=1e-5, atol=1e-6)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4])])
    def f(x):
        out = OPS.dot(x, w)
        assert out.shape.as_list() == [None, None, 6]  # the feature dim stays static
        return out

    np.testing.assert_allclose(np_(f(x)), X @ w, rtol=1e-5, atol=1e-6)


def test_shape_ops() -> None:
    x = tf.constant(X)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4])])
    def f(x):
        b, t = OPS.dynamic_dim(x, 0), OPS.dynamic_dim(x, 1)
        flat = OPS.reshape(x, [b * t, 4])
        assert flat.shape.as_list() == [None, 4]
        return OPS.reshape(flat, [b, -1, 2, 2])

    np.testing.assert_array_equal(np_(f(x)), X.reshape(3, 5, 2, 2))
    np.testing.assert_array_equal(np_(OPS.transpose(x, (1, 0, 2))), X.transpose(1, 0, 2))
    np.testing.assert_array_equal(np_(OPS.squeeze(OPS.expand_dims(x, 2), 2)), X)
    np.testing.assert_array_equal(np_(OPS.concat([x, x], -1)), np.concatenate([X, X], -1))
    np.testing.assert_array_equal(np_(OPS.stack([x, x], 1)), np.stack([X, X], 1))
    np.testing.assert_array_equal(np_(OPS.tile(x, [1, OPS.dynamic_dim(x, 0), 1])), np.tile(X, (1, 3, 1)))
    for mode in ("constant", "reflect", "symmetric"):
        np.testing.assert_array_equal(np_(OPS.pad(x, [(0, 0), (2, 1), (0, 0)], mode)),
                                      np.pad(X, [(0, 0), (2, 1), (0, 0)], mode), err_msg=mode)
    np.testing.assert_array_equal(np_(OPS.pad(x, [(0, 0), (1, 0), (0, 0)], value=9.0))[:, 0], 9.0)
    np.testing.assert_array_equal(np_(OPS.pad(tf.constant([1, 2]), [(1, 1)], value=0.0)), [0, 1, 2, 0])
    pieces = OPS.split(x, (1, 3), axis=-1)
    np.testing.assert_array_equal(np_(pieces[1]), X[..., 1:])
    np.testing.assert_array_equal(np_(OPS.gather(x, tf.constant([2, 0]), 1)), X[:, [2, 0]])
    idx = RNG.randint(0, 5, size=(3, 2, 4)).astype(np.int32)
    np.testing.assert_array_equal(np_(OPS.take_along_axis(x, tf.constant(idx), 1)), np.take_along_axis(X, idx, 1))
    idx = RNG.randint(0, 4, size=(3, 5, 1)).astype(np.int32)
    np.testing.assert_array_equal(np_(OPS.take_along_axis(x, tf.constant(idx), -1)), np.take_along_axis(X, idx, -1))
    idx = RNG.randint(0, 3, size=(1, 5, 4)).astype(np.int32)
    np.testing.assert_array_equal(np_(OPS.take_along_axis(x, tf.constant(idx), 0)), np.take_along_axis(X, idx, 0))


def test_composites_match_the_generic_defaults() -> None:
    x = tf.constant(X)
    lens = tf.constant(LENS)
    for name, args in [("softmax", (x,)), ("log_softmax", (x, 1)), ("sequence_mask", (lens, 5)),
                       ("reverse_sequence", (x, lens)), ("last_frame", (x, lens, tf.zeros((3, 4)))),
                       ("one_hot", (tf.constant([[0, 2], [1, 1]]), 3)), ("ones_like", (x,)), ("zeros_like", (x,)),
                       ("cross_entropy_sparse", (tf.nn.log_softmax(x), tf.constant(RNG.randint(0, 4, (3, 5))))),
                       ("relu", (x,)), ("softplus", (x,)), ("rsqrt", (tf.abs(x) + 1.0,)),
                       ("floordiv", (tf.constant([-7, -6, -1, 0, 5, 9]), 3))]:
        np.testing.assert_allclose(np_(getattr(OPS, name)(*args)), np_(generic(name)(*args)), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for a, b in zip(OPS.split(x, (3, 1)), generic("split")(x, (3, 1))):
        np.testing.assert_array_equal(np_(a), np_(b))
    np.testing.assert_allclose(np_(OPS.softmax(x)), softmax(X), rtol=1e-5)
    rev = np_(OPS.reverse_sequence(x, lens))
    np.testing.assert_array_equal(rev[1, :3], X[1, 2::-1])
    np.testing.assert_array_equal(rev[1, 3:], X[1, 3:])
    for axis, mask in [((0, 1), None), (-1, None), ((0, 1), tf.constant(MASK[..., None]))]:
        for got, ref in zip(OPS.moments(x, axis, mask), generic("moments")(x, axis, mask)):
            np.testing.assert_allclose(np_(got), np_(ref), rtol=1e-5, atol=1e-6)
    mean, var = OPS.moments(x, (0, 1), keepdims=True)
    assert mean.shape == (1, 1, 4) and var.shape == (1, 1, 4)
    np.testing.assert_allclose(np_(var)[0, 0], X.reshape(-1, 4).var(0), rtol=1e-5)


def test_dropout_random_and_assign() -> None:
    x = tf.ones((200, 50))
    assert OPS.dropout(x, 0.0) is x
    dropped = np_(OPS.dropout(x, 0.25))
    assert set(np.unique(dropped)) <= {0.0, np.float32(1 / 0.75)} and abs(dropped.mean() - 1.0) < 0.05
    u = np_(OPS.random_uniform([OPS.dynamic_dim(x, 0), 3]))
    assert u.shape == (200, 3) and u.min() >= 0 and u.max() < 1
    n = np_(OPS.random_normal([4000], stddev=2.0))
    assert abs(n.std() - 2.0) < 0.15
    var = tf.Variable(np.zeros(3, np.float32))
    OPS.assign(var, tf.constant([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(var.numpy(), [1, 2, 3])


def test_conv_and_pool() -> None:
    x = tf.constant(X)
    w = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    out = np_(OPS.conv(x, tf.constant(w), strides=(1,), dilation=(1,), padding="VALID"))
    ref = np.stack([np.einsum("bki,kio->bo", X[:, t : t + 3], w) for t in range(3)], 1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert OPS.conv(x, tf.constant(w), strides=(2,), dilation=(1,), padding="SAME").shape == (3, 3, 2)
    assert OPS.conv(x, tf.constant(w), strides=(1,), dilation=(2,), padding="VALID").shape == (3, 1, 2)
    img = tf.constant(RNG.normal(size=(2, 6, 5, 3)).astype(np.float32))
    w2 = tf.constant(RNG.normal(size=(3, 2, 3, 4)).astype(np.float32))
    assert OPS.conv(img, w2, strides=(1, 1), dilation=(1, 1), padding="SAME").shape == (2, 6, 5, 4)
    assert OPS.conv(img, w2, strides=(2, 1), dilation=(1, 1), padding="VALID").shape == (2, 2, 4, 4)
    mx = np_(OPS.pool(x, mode="max", size=(2,), strides=(2,), dilation=(1,), padding="VALID"))
    np.testing.assert_array_equal(mx, np.maximum(X[:, 0:4:2], X[:, 1:5:2]))
    avg = np_(OPS.pool(x, mode="avg", size=(3,), strides=(1,), dilation=(1,), padding="SAME"))
    np.testing.assert_allclose(avg[:, 0], X[:, :2].mean(1), rtol=1e-5)  # the padded frame is not counted
    np.testing.assert_allclose(avg[:, 2], X[:, 1:4].mean(1), rtol=1e-5)
    assert OPS.pool(img, mode="avg", size=(2, 2), strides=(2, 2), dilation=(1, 1), padding="SAME").shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match="pooling mode"):
        OPS.pool(x, mode="median", size=(2,), strides=(1,), dilation=(1,), padding="SAME")


def test_scan_cumsum_with_non_sequences_in_eager_and_graph() -> None:
    w = tf.Variable(RNG.normal(size=(4, 4)).astype(np.float32))

    def run(xs, m):
        def step(x_t, m_t, acc, count, w_):
            new = acc + OPS.matmul(x_t, w_)
            return new * m_t, (new, count + OPS.cast(m_t[:, 0], "int32"))

        batch = OPS.dynamic_dim(xs, 1)
        return OPS.scan(step, [xs, m], [OPS.zeros([batch, 4]), OPS.zeros([batch], "int32")], non_sequences=[w])

    xs = np.transpose(X, (1, 0, 2))
    m = np.transpose(MASK)[:, :, None]
    ref = np.cumsum(xs @ w.numpy(), axis=0)
    ys, (acc, count) = run(tf.constant(xs), tf.constant(m))
    np.testing.assert_allclose(np_(ys), ref * m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np_(acc), ref[-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np_(count), LENS)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None, 1])])
    def graph(xs, m):
        with tf.GradientTape() as tape:
            ys, final = run(xs, m)
            assert ys.shape.as_list() == [None, None, 4] and final[0].shape.as_list() == [None, 4]
            loss = tf.reduce_sum(ys)
        return ys, tape.gradient(loss, w)

    ys2, grad = graph(tf.constant(xs), tf.constant(m))
    np.testing.assert_allclose(np_(ys2), ref * m, rtol=1e-5, atol=1e-5)
    assert np.abs(np_(grad)).sum() > 0


def test_scan_int_outputs() -> None:
    def step(x_t, prev):
        out = OPS.argmax(x_t)
        return out, (prev + out,)

    ys, (total,) = OPS.scan(step, [tf.constant(np.transpose(X, (1, 0, 2)))], [tf.zeros([3], tf.int32)])
    assert OPS.dtype(ys) == "int32"
    np.testing.assert_array_equal(np_(ys), X.argmax(-1).T)
    np.testing.assert_array_equal(np_(total), X.argmax(-1).sum(1))


def np_lstm(z, lens, w_re, h0, c0):
    """Reference LSTM on the projected input (gates [cell in, input, forget, output])."""
    bsz, t_max, _ = z.shape
    y = np.zeros((bsz, t_max, w_re.shape[0]))
    hs, cs = h0.copy(), c0.copy()
    for i in range(bsz):
        h, c = h0[i].copy(), c0[i].copy()
        for t in range(lens[i]):
            ci, ig, fg, og = np.split(z[i, t] + h @ w_re, 4)
            c = sig(fg) * c + sig(ig) * np.tanh(ci)
            h = sig(og) * np.tanh(c)
            y[i, t] = h
        hs[i], cs[i] = h, c
    return y, hs, cs


def _lstm_paths(monkeypatch: pytest.MonkeyPatch) -> tuple:
    """TFOps.lstm on BlockLSTM and on the generic step loop."""
    def run(fused: bool):
        def fn(*args):
            monkeypatch.setattr(OPS, "fused_lstm", fused)
            return OPS.lstm(*args)
        return fn
    return run(True), run(False)


@pytest.mark.parametrize("n", [4, 40])
def test_lstm_fast_path_matches_scan_and_numpy(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.RandomState(n)
    x = rng.normal(size=(3, 5, 6)).astype(np.float32)
    w = rng.normal(scale=0.3, size=(6, 4 * n)).astype(np.float32)
    b = rng.normal(scale=0.3, size=(4 * n,)).astype(np.float32)
    w_re = rng.normal(scale=0.3, size=(n, 4 * n)).astype(np.float32)
    h0, c0 = rng.normal(size=(2, 3, n)).astype(np.float32)
    ref = np_lstm(x @ w + b, LENS, w_re, h0, c0)
    params = [tf.Variable(w), tf.Variable(b), tf.Variable(w_re)]
    fused, scanned = _lstm_paths(monkeypatch)
    for fn in (fused, scanned, generic("lstm")):
        got = fn(tf.constant(x), *params, tf.constant(MASK), tf.constant(h0), tf.constant(c0))
        for a, r in zip(got, ref):
            np.testing.assert_allclose(np_(a), r, atol=1e-5)

    def grads(fn):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 6]), tf.TensorSpec([None, None])])
        def run(xx, m):
            with tf.GradientTape() as tape:
                tape.watch(xx)
                h_init = tf.constant(h0) + 0.0
                tape.watch(h_init)
                y, h, c = fn(xx, *params, m, h_init, tf.constant(c0))
                loss = tf.reduce_sum(y * y) + tf.reduce_sum(h) + 2 * tf.reduce_sum(c)
            assert y.shape.as_list() == [None, None, n]
            return tape.gradient(loss, [xx, *params, h_init])
        return run(tf.constant(x), tf.constant(MASK))

    for a, r in zip(grads(fused), grads(scanned)):
        np.testing.assert_allclose(np_(a), np_(r), rtol=1e-4, atol=1e-5)
        assert np.abs(np_(a)).sum() > 0


def brute_ctc(logits: np.ndarray, labels: list[int]) -> float:
    """-log P(labels) by summing over all alignments (blank = last class)."""
    t_len, dim = logits.shape
    logp = np.log(softmax(logits))
    total = 0.0
    for path in itertools.product(range(dim), repeat=t_len):
        if [k for k, _ in itertools.groupby(path) if k != dim - 1] == labels:
            total += np.exp(sum(logp[t, k] for t, k in enumerate(path)))
    return -np.log(total)


def test_ctc_loss_and_greedy_decode() -> None:
    logits = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    labels = np.array([[0, 1], [1, 0]], np.int32)
    per_seq = np_(OPS.ctc_loss(tf.constant(logits), tf.constant([4, 3]), tf.constant(labels), tf.constant([2, 1])))
    np.testing.assert_allclose(per_seq, [brute_ctc(logits[0], [0, 1]), brute_ctc(logits[1, :3], [1])], rtol=1e-4)
    # best path per frame: b=blank(2)
    best = np.array([[0, 0, 2, 1, 1, 1], [2, 2, 2, 2, 2, 2], [1, 2, 1, 0, 2, 0]])
    hot = np.eye(3, dtype=np.float32)[best] * 5.0
    labels, lens = OPS.ctc_greedy_decode(tf.constant(hot), tf.constant([5, 6, 6]))
    assert OPS.dtype(labels) == "int32" and np_(labels).shape[0] == 3
    np.testing.assert_array_equal(np_(lens), [2, 0, 4])
    np.testing.assert_array_equal(np_(labels)[0, :2], [0, 1])
    np.testing.assert_array_equal(np_(labels)[2, :4], [1, 1, 0, 0])


def test_edit_distance_keeps_label_zero() -> None:
    hyp = tf.constant([[0, 2, 2, 1], [2, 0, 0, 0], [0, 0, 0, 0]])
    ref = tf.constant([[0, 2, 1, 1], [2, 0, 5, 5], [0, 0, 9, 9]])
    dist = OPS.edit_distance(hyp, tf.constant([4, 2, 0]), ref, tf.constant([4, 2, 2]))
    assert OPS.dtype(dist) == "float32" and float(dist) == 3.0  # 1 substitution + 0 + 2 insertions of label 0
