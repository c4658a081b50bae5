"""NativeMatMul, the input projection's GEMM: the kernel library's function, its TF ops and its PyTensor op against
float64 products, with gradients, under every ISA the library has; and the units' choice of it."""

from __future__ import annotations

import numpy as np
import pytest
from returnn_native import cpu_kernels
from returnn_native.errors import NativeOpError

#: split-bf16 keeps 16 mantissa bits per operand: about 1e-5 of the largest product term
TOL = 1e-4
#: (M, K, N): tiny (the BLAS), AMX-sized with ragged edges (rows not a multiple of 16, K of 32, N of 32), K < 32, and
#: more rows and depth than one block of the AMX product (512 rows, K 4096) with a ragged last block
SHAPES = [(5, 7, 9), (37, 45, 300), (100, 70, 129), (300, 16, 200), (64, 520, 160), (530, 4133, 130)]


@pytest.fixture(params=cpu_kernels.available_isas())
def isa(request):
    """Each ISA the kernel library runs on this CPU (AMX only where it has the tiles)."""
    cpu_kernels.set_isa(request.param)
    yield request.param
    cpu_kernels.set_isa("auto")


def _operands(M: int, K: int, N: int, ta: bool, tb: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(K, M) if ta else (M, K)).astype(np.float32)
    b = rng.normal(size=(N, K) if tb else (K, N)).astype(np.float32)
    return a, b


def _product(a: np.ndarray, b: np.ndarray, ta: bool, tb: bool) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a.T if ta else a) @ (b.T if tb else b)


def _assert_close(got, want, what: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, atol=TOL * scale, rtol=0, err_msg=what)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_matches_float64(isa: str, shape: tuple[int, int, int], ta: bool, tb: bool) -> None:
    a, b = _operands(*shape, ta, tb)
    _assert_close(cpu_kernels.matmul(a, b, ta, tb), _product(a, b, ta, tb), f"{isa} {shape} ta={ta} tb={tb}")


def test_reused_buffers_do_not_leak_into_a_smaller_product(isa: str) -> None:
    """The split rows are kept per thread between calls; a smaller K must not read the last call's columns."""
    a, b = _operands(64, 520, 160, False, False)
    cpu_kernels.matmul(np.full_like(a, np.nan), b)  # fills the buffers with NaN halves
    a, b = _operands(64, 45, 160, False, False, seed=1)
    got = cpu_kernels.matmul(a, b)
    assert np.isfinite(got).all()
    _assert_close(got, _product(a, b, False, False))


def test_calls_at_once_get_their_own_buffers(isa: str) -> None:
    """Calls running at the same time (TF runs a BLSTM's projections on two threads) each lease their own split
    buffers from the pool and match the same products run one by one."""
    from concurrent.futures import ThreadPoolExecutor

    problems = [(_operands(*shape, ta, False, seed=i), ta) for i, (shape, ta) in
                enumerate([((530, 4133, 130), False), ((100, 70, 129), True), ((64, 520, 160), False)] * 2)]
    threads = cpu_kernels.get_num_threads()
    cpu_kernels.set_num_threads(2)
    try:
        want = [cpu_kernels.matmul(a, b, ta) for (a, b), ta in problems]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda p: cpu_kernels.matmul(*p[0], p[1]), problems * 2))
    finally:
        cpu_kernels.set_num_threads(threads)
    for g, w in zip(got, want * 2):
        np.testing.assert_array_equal(g, w)


def test_empty_and_mismatched_shapes() -> None:
    assert cpu_kernels.matmul(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)).tolist() == [[0.0] * 4] * 3
    assert cpu_kernels.matmul(np.ones((0, 5), np.float32), np.ones((5, 4), np.float32)).shape == (0, 4)
    with pytest.raises(NativeOpError, match=r"inner dimensions differ.*\(3, 5\).*\(4, 2\)"):
        cpu_kernels.matmul(np.ones((3, 5)), np.ones((4, 2)))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_tf_op_values_and_gradients(isa: str, ta: bool, tb: bool) -> None:
    tf = pytest.importorskip("tensorflow")
    from returnn_native.tf_ops import native_matmul

    a, b = (tf.constant(v) for v in _operands(100, 70, 160, ta, tb))
    dc = tf.constant(np.random.default_rng(2).normal(size=(100, 160)).astype(np.float32))
    grads = []
    for fn in (native_matmul, tf.matmul):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            c = fn(a, b, transpose_a=ta, transpose_b=tb)
            loss = tf.reduce_sum(c * dc)
        grads.append((c, *tape.gradient(loss, [a, b])))
    for got, want, what in zip(grads[0], grads[1], ("c", "da", "db")):
        _assert_close(got, want, what)


def test_tf_op_shapes_and_errors() -> None:
    tf = pytest.importorskip("tensorflow")
    from returnn_native.tf_ops import native_matmul

    @tf.function
    def f(a, b):
        return native_matmul(a, b, transpose_b=True)

    out = f.get_concrete_function(tf.TensorSpec([None, 70]), tf.TensorSpec([30, 70])).outputs[0]
    assert out.shape.as_list() == [None, 30]
    with pytest.raises(tf.errors.InvalidArgumentError, match="inner dimensions differ"):
        native_matmul(tf.zeros([3, 5]), tf.zeros([4, 2]))
    with pytest.raises(NativeOpError, match="both operands"):
        native_matmul(tf.zeros([3, 5]), tf.zeros([4, 3]), transpose_a=True, transpose_b=True)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_pytensor_c_op_values_and_gradients(isa: str, ta: bool, tb: bool) -> None:
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt
    from returnn_native.pytensor_ops import NativeMatMulOp, native_matmul

    av, bv = _operands(100, 70, 160, ta, tb)
    dcv = np.random.default_rng(2).normal(size=(100, 160)).astype(np.float32)
    a, b = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    c = native_matmul(a, b, transpose_a=ta, transpose_b=tb)
    f = pytensor.function([a, b], [c, *pytensor.grad((c * dcv).sum(), [a, b])], mode="CVM")  # the C linker
    assert any(isinstance(n.op, NativeMatMulOp) for n in f.maker.fgraph.toposort())
    got = f(av, bv)
    da = dcv.astype(np.float64) @ (bv.T if tb else bv).T.astype(np.float64)
    db = (av.T if ta else av).T.astype(np.float64) @ dcv.astype(np.float64)
    want = [_product(av, bv, ta, tb), da.T if ta else da, db.T if tb else db]
    for g, w, what in zip(got, want, ("c", "da", "db")):
        _assert_close(g, w, what)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        f(av, av)


def test_units_project_with_it_only_where_it_is_faster(isa: str) -> None:
    """NativeMatMul for the input projection under AMX (it outruns a float32 GEMM there), the framework's matmul else."""
    tf = pytest.importorskip("tensorflow")
    from returnn_native.tf_ops import native_matmul, projection_matmul

    assert (projection_matmul(500, 500) is native_matmul) == (isa == "amx")
    if isa != "amx":
        assert projection_matmul(500, 500) is tf.matmul
    assert projection_matmul(500, 10) is tf.matmul  # too few units to fill the tiles
    assert projection_matmul(10, 500) is tf.matmul
