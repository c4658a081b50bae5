"""The NativeLstm GPU libraries build with nvcc and register without a GPU; failures name nvcc and the CUDA version.

Runs on CPU-only machines: the TF GPU kernel library is built (once, cached) wherever nvcc and a CUDA build of
TensorFlow are installed, and must leave the CPU kernel in charge when no GPU is visible.
"""

from __future__ import annotations

import stat
import warnings

import numpy as np
import pytest
from returnn_native import cuda_kernels
from returnn_native.errors import NativeCompileError, NativeOpError
from returnn_native.toolchain import find_nvcc

from .lstm_cases import make_case

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="no CUDA toolkit: nvcc is not on PATH")
no_gpu = pytest.mark.skipif(cuda_kernels.gpu_count() > 0, reason="checks the behaviour without a GPU")


def _tf_with_cuda():
    tf = pytest.importorskip("tensorflow")
    if not tf.test.is_built_with_cuda():
        pytest.skip(f"TensorFlow {tf.__version__} is built without CUDA: it has no GPU kernels to register")
    return tf


@needs_nvcc
def test_tf_gpu_kernels_build_register_and_leave_the_cpu_kernel_in_charge() -> None:
    tf = _tf_with_cuda()
    from returnn_native import tf_gpu_op
    from returnn_native.tf_ops import load_tf_op_library

    module = load_tf_op_library()
    tf_gpu_op.load_tf_gpu_op_library()
    assert tf_gpu_op.registered_devices() == {
        "ReturnnNativeLstm": ["CPU", "GPU"],
        "ReturnnNativeLstmGrad": ["CPU", "GPU"],
    }
    # whatever TF picks, the results are the CPU kernel's (and on a CPU-only machine it must pick the CPU)
    from returnn_native.cpu_kernels import lstm_bwd, lstm_fwd

    case = make_case(3, -1)
    z = np.einsum("bti,ij->btj", case.x, case.W) + case.b
    with tf.device("/CPU:0"):
        outs = module.returnn_native_lstm(z, case.W_re, case.mask, case.h0, case.c0, direction=-1)
        grads = module.returnn_native_lstm_grad(
            case.W_re, case.mask, case.h0, case.c0, *outs[3:], case.dy, case.dh, case.dc, direction=-1
        )
    assert "CPU" in outs[0].device
    want = lstm_fwd(z, case.W_re, case.mask, case.h0, case.c0, direction=-1)
    for got, ref in zip(outs, want):
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    want_grads = lstm_bwd(case.W_re, case.mask, case.h0, case.c0, *want[3:], case.dy, case.dh, case.dc, direction=-1)
    for got, ref in zip(grads, want_grads):
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


@no_gpu
def test_no_gpu_means_cpu_kernel_without_a_warning_unless_the_gpu_is_required(monkeypatch) -> None:
    _tf_with_cuda()
    from returnn_native.tf_gpu_op import load_tf_gpu_kernels

    monkeypatch.delenv("RETURNN_NATIVE_CUDA", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_tf_gpu_kernels.__wrapped__() is False
    monkeypatch.setenv("RETURNN_NATIVE_CUDA", "1")
    with pytest.raises(NativeOpError, match=r"RETURNN_NATIVE_CUDA=1 but TensorFlow has no visible GPU"):
        load_tf_gpu_kernels.__wrapped__()


@needs_nvcc
@no_gpu
def test_cuda_library_hides_its_runtime_and_reports_a_missing_gpu() -> None:
    lib = cuda_kernels.cuda_library()
    # the static CUDA runtime is not exported, so TF's global cuda* stubs cannot replace it or be replaced by it
    assert not hasattr(lib, "cudaMalloc") and not hasattr(lib, "cudaLaunchKernel")
    assert hasattr(lib, "returnn_lstm_fwd_cuda") and hasattr(lib, "returnn_lstm_bwd_cuda")
    assert cuda_kernels.gemm_backend().startswith(("cuBLAS ", "tiled GEMM ("))
    assert lib.returnn_cuda_runtime_version() // 1000 == cuda_kernels.find_cuda_toolkit().version[0]
    case = make_case(1, 1)
    z = np.zeros((*case.mask.shape, 4 * case.n), np.float32)
    with pytest.raises(NativeOpError, match="on the GPU: .*cuda"):
        cuda_kernels.lstm_fwd(z, case.W_re, case.mask, case.h0, case.c0)
    with pytest.raises(NativeOpError, match="no CUDA GPU here"):
        cuda_kernels.check_cuda_runtime()


@needs_nvcc
@no_gpu
def test_pytensor_cuda_op_compiles_links_and_reports_a_missing_gpu() -> None:
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt
    from returnn_native.pytensor_cuda_ops import NativeLstmCudaGradOp, NativeLstmCudaOp

    z, w = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
    m, h0 = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    y, *_ = NativeLstmCudaOp(-1)(z, w, m, h0, h0)
    f = pytensor.function([z, w, m, h0], [y, *pytensor.grad(y.sum(), [z, w])], mode="CVM")
    ops = {type(node.op) for node in f.maker.fgraph.toposort()}
    assert {NativeLstmCudaOp, NativeLstmCudaGradOp} <= ops
    case = make_case(2, -1)
    z_val = np.zeros((*case.mask.shape, 4 * case.n), np.float32)
    with pytest.raises(RuntimeError, match="kernel failed with code 3 on the GPU: .*cuda"):
        f(z_val, case.W_re, case.mask, case.h0)


def _fake_nvcc(tmp_path, release: str) -> str:
    path = tmp_path / "nvcc"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "Cuda compilation tools, release {release}, V{release}.0"; exit 0; fi\n'
        'echo "nvcc fatal   : Unsupported gpu architecture" >&2; exit 1\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def fresh_toolkit(monkeypatch, tmp_path):
    """Toolkit lookups forget earlier results; the build cache is a fresh folder."""
    monkeypatch.setenv("RETURNN_CACHE_DIR", str(tmp_path / "cache"))
    cuda_kernels.find_cuda_toolkit.cache_clear()
    yield
    cuda_kernels.find_cuda_toolkit.cache_clear()


def test_failed_build_names_nvcc_and_its_cuda_version(monkeypatch, tmp_path, fresh_toolkit) -> None:
    nvcc = _fake_nvcc(tmp_path, "99.1")
    monkeypatch.setenv("RETURNN_NATIVE_NVCC", nvcc)
    toolkit = cuda_kernels.find_cuda_toolkit()
    assert toolkit.nvcc.path == nvcc and toolkit.version == (99, 1)
    with pytest.raises(NativeCompileError) as info:
        cuda_kernels.build_with_toolkit(cuda_kernels.cuda_kernel_spec(toolkit), toolkit, "the CUDA kernels")
    message = str(info.value)
    assert f"nvcc {nvcc} (CUDA 99.1)" in message and "Unsupported gpu architecture" in message


def test_driver_older_than_nvcc_is_named(monkeypatch, tmp_path, fresh_toolkit) -> None:
    monkeypatch.setenv("RETURNN_NATIVE_NVCC", _fake_nvcc(tmp_path, "13.0"))
    monkeypatch.setattr(cuda_kernels, "gpu_count", lambda: 1)
    monkeypatch.setattr(cuda_kernels, "driver_cuda_version", lambda: (12, 4))
    with pytest.raises(NativeOpError, match=r"driver supports CUDA up to 12\.4.*\(CUDA 13\.0\).*RETURNN_NATIVE_NVCC"):
        cuda_kernels.check_cuda_runtime()
    monkeypatch.setattr(cuda_kernels, "driver_cuda_version", lambda: (13, 1))
    cuda_kernels.check_cuda_runtime()


def test_switch_values(monkeypatch) -> None:
    for value, mode in (("", "auto"), ("auto", "auto"), ("1", "on"), ("0", "off"), ("Off", "off")):
        monkeypatch.setenv("RETURNN_NATIVE_CUDA", value)
        assert cuda_kernels.cuda_mode() == mode
    monkeypatch.setenv("RETURNN_NATIVE_CUDA", "gpu")
    with pytest.raises(NativeOpError, match=r"RETURNN_NATIVE_CUDA='gpu'.*auto.*1.*0"):
        cuda_kernels.cuda_mode()


@no_gpu
def test_pytensor_uses_the_cpu_op_unless_asked_and_says_why_it_cannot(monkeypatch) -> None:
    pytest.importorskip("pytensor")
    from returnn_native.pytensor_ops import NativeLstmOp, native_lstm_op

    monkeypatch.delenv("RETURNN_NATIVE_CUDA", raising=False)
    assert type(native_lstm_op(1)) is NativeLstmOp
    monkeypatch.setenv("RETURNN_NATIVE_CUDA", "1")
    with pytest.raises(NativeOpError, match="RETURNN_NATIVE_CUDA=1 asks for NativeLstm on the GPU, but"):
        native_lstm_op(1)


def test_arch_flags_machine_code_ptx_for_newer_gpus_and_error_for_older(monkeypatch, tmp_path, fresh_toolkit) -> None:
    monkeypatch.setenv("RETURNN_NATIVE_NVCC", _fake_nvcc(tmp_path, "13.0"))
    toolkit = cuda_kernels.find_cuda_toolkit()
    supported = (75, 80, 90, 120)
    assert cuda_kernels.arch_flags(("90", "90", "130", "86"), supported, toolkit) == [
        "-gencode",
        "arch=compute_90,code=[sm_90,compute_90]",
        "-gencode",
        "arch=compute_120,code=compute_120",  # newer than nvcc knows: PTX the driver compiles
        "-gencode",
        "arch=compute_80,code=compute_80",
    ]
    with pytest.raises(NativeOpError, match=r"sm_70 is older than any nvcc .*\(CUDA 13\.0\).*from sm_75"):
        cuda_kernels.arch_flags(("70",), supported, toolkit)
