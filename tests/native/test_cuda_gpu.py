"""NativeLstm on a GPU against the CPU kernel, forward and backward within 1e-4: TF op, PyTensor CUDA op, NumPy.

Skipped without a GPU (TF: ``tf.config.list_physical_devices("GPU")``; PyTensor/NumPy: the driver's device count).
"""

from __future__ import annotations

import numpy as np
import pytest
from returnn_native import cuda_kernels

from .lstm_cases import LstmCase, make_case

TOL = 1e-4

pytestmark = pytest.mark.gpu


def _big_case(seed: int, direction: int) -> LstmCase:
    """A case big enough for several thread blocks per step and real cuBLAS tiles, with ragged lengths."""
    return make_case(seed, direction, sizes=(13, 17, 24, 96), weight_scales=(0.2, 0.1))


CASES = [(make_case, seed) for seed in range(3)] + [(_big_case, 7)]


def _z(case: LstmCase) -> np.ndarray:
    return (np.einsum("bti,ij->btj", case.x, case.W) + case.b).astype(np.float32)


@pytest.fixture(scope="module")
def tf_gpu():
    tf = pytest.importorskip("tensorflow")
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty)")
    from returnn_native.tf_gpu_op import load_tf_gpu_op_library, registered_devices
    from returnn_native.tf_ops import load_tf_op_library

    module = load_tf_op_library()  # loads the GPU kernels too when it can; the two calls below say why not
    cuda_kernels.check_cuda_runtime()
    load_tf_gpu_op_library()
    assert "GPU" in registered_devices()["ReturnnNativeLstm"]
    return tf, module


def _tf_run(tf, case: LstmCase, device: str):
    """Outputs and gradients (z, w_re, h0, c0) of sum(y*dy) + sum(h*dh) + sum(c*dc) through the registered gradient."""
    from returnn_native.tf_ops import native_lstm

    with tf.device(device):
        z, w_re, h0, c0 = (tf.constant(v) for v in (_z(case), case.W_re, case.h0, case.c0))
        mask = tf.constant(case.mask)
        with tf.GradientTape() as tape:
            tape.watch([z, w_re, h0, c0])
            y, h, c = native_lstm(z, w_re, mask, h0, c0, direction=case.direction)
            loss = tf.reduce_sum(y * case.dy) + tf.reduce_sum(h * case.dh) + tf.reduce_sum(c * case.dc)
        grads = tape.gradient(loss, [z, w_re, h0, c0])
    return y, [t.numpy() for t in (y, h, c, *grads)]


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("make, seed", CASES)
def test_tf_op_on_gpu_matches_cpu(tf_gpu, make, seed: int, direction: int) -> None:
    tf, _module = tf_gpu
    case = make(seed, direction)
    y_gpu, gpu = _tf_run(tf, case, "/GPU:0")
    _y_cpu, cpu = _tf_run(tf, case, "/CPU:0")
    assert "GPU" in y_gpu.device, f"NativeLstm was placed on {y_gpu.device}, not on the GPU"
    for what, got, want in zip(("y", "h", "c", "dz", "dw_re", "dh0", "dc0"), gpu, cpu):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL, err_msg=what)


def test_tf_op_on_gpu_in_a_tf_function(tf_gpu) -> None:
    tf, _module = tf_gpu
    from returnn_native.tf_ops import native_lstm

    case = _big_case(3, -1)
    fn = tf.function(lambda z, w, m, h0, c0: native_lstm(z, w, m, h0, c0, direction=-1))
    with tf.device("/GPU:0"):
        gpu = [t.numpy() for t in fn(_z(case), case.W_re, case.mask, case.h0, case.c0)]
    with tf.device("/CPU:0"):
        cpu = [t.numpy() for t in fn(_z(case), case.W_re, case.mask, case.h0, case.c0)]
    for got, want in zip(gpu, cpu):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


needs_gpu = pytest.mark.skipif(cuda_kernels.gpu_count() == 0, reason="no CUDA GPU (the driver reports none)")


@needs_gpu
@pytest.mark.parametrize("direction", [1, -1])
def test_pytensor_cuda_op_matches_cpu_op(direction: int) -> None:
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt
    from returnn_native.pytensor_cuda_ops import NativeLstmCudaOp
    from returnn_native.pytensor_ops import NativeLstmOp

    case = _big_case(5, direction)
    z, w = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
    m, h0, c0 = pt.matrix(dtype="float32"), pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    results = []
    for op in (NativeLstmCudaOp(direction), NativeLstmOp(direction)):
        y, h, c, *_ = op(z, w, m, h0, c0)
        loss = (y * case.dy).sum() + (h * case.dh).sum() + (c * case.dc).sum()
        f = pytensor.function([z, w, m, h0, c0], [y, h, c, *pytensor.grad(loss, [z, w, h0, c0])], mode="CVM")
        results.append(f(_z(case), case.W_re, case.mask, case.h0, case.c0))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


@needs_gpu
def test_numpy_front_end_big_case_matches_cpu() -> None:
    from returnn_native import cpu_kernels

    case = _big_case(11, 1)
    args = (_z(case), case.W_re, case.mask, case.h0, case.c0)
    cpu = cpu_kernels.lstm_fwd(*args)
    gpu = cuda_kernels.lstm_fwd(*args)
    for got, want in zip(gpu, cpu):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    grads = (case.W_re, case.mask, case.h0, case.c0, *cpu[3:], case.dy, case.dh, case.dc)
    for got, want in zip(cuda_kernels.lstm_bwd(*grads), cpu_kernels.lstm_bwd(*grads)):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
