"""The ``top_k`` primitive on both backends against NumPy: values, indices (equal entries: lower index first) and
the gradient, which reaches exactly the chosen entries."""

from __future__ import annotations

import numpy as np
import pytest

X = np.array([[0.5, 2.0, -1.0, 2.0, 0.1],
              [3.0, 3.0, 3.0, -2.0, 0.0],
              [1.0, 5.0, 1.0, 1.0, 0.0]], dtype=np.float32)  # equal entries at the k-th place: the first ones
K = 3
WEIGHTS = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=np.float32)


def _expected() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.argsort(-X, axis=-1, kind="stable")[:, :K]
    grad = np.zeros_like(X)
    np.put_along_axis(grad, idx, WEIGHTS, axis=-1)
    return np.take_along_axis(X, idx, axis=-1), idx, grad


def _tf() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tf = pytest.importorskip("tensorflow")
    from returnn_tf.ops import TF_OPS

    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        values, indices = TF_OPS.top_k(x, K)
        total = tf.reduce_sum(values * WEIGHTS)
    return values.numpy(), indices.numpy(), tape.gradient(total, x).numpy()


def _theano() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pytest.importorskip("returnn_theano")
    import pytensor
    import pytensor.tensor as pt
    from returnn_theano.ops import OPS

    x = pt.matrix("x", dtype="float32")
    values, indices = OPS.top_k(x, K)
    grad = pytensor.grad(pt.sum(values * WEIGHTS), x)
    fn = pytensor.function([x], [values, indices, grad], mode=pytensor.compile.mode.Mode(linker="cvm"))
    return tuple(fn(X))  # type: ignore[return-value]


@pytest.mark.parametrize("run", [_tf, _theano], ids=["tf", "theano"])
def test_top_k_matches_numpy(run) -> None:
    values, indices, grad = run()
    want_values, want_indices, want_grad = _expected()
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(values, want_values)
    np.testing.assert_allclose(grad, want_grad)
