"""CUDA kernels: never built for CPU-only backends; the source compiles with nvcc; GPU results match the CPU."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from returnn_native.build_cache import source_path
from returnn_native.cuda_kernels import cuda_build_enabled, gpu_count
from returnn_native.toolchain import find_nvcc

from .lstm_cases import make_case


def test_no_cuda_for_cpu_only_backends() -> None:
    """nvcc on the PATH is not enough: PyTensor never, TF only when built with CUDA and a GPU is present."""
    assert not cuda_build_enabled("theano")
    tf = pytest.importorskip("tensorflow")
    expected = bool(find_nvcc()) and gpu_count() > 0 and tf.test.is_built_with_cuda()
    assert cuda_build_enabled("tf") == expected
    if not expected:
        from returnn_native.tf_ops import tf_op_spec

        spec = tf_op_spec()
        assert not any(s.endswith(".cu") for s in spec.sources)
        assert "nvcc" not in spec.compiler.path


@pytest.mark.skipif(find_nvcc() is None, reason="no CUDA toolkit (nvcc)")
def test_cuda_source_compiles(tmp_path) -> None:
    """Device code compiles (to an object file; needs no GPU)."""
    nvcc = find_nvcc()
    assert nvcc is not None
    out = tmp_path / "lstm_cuda.o"
    proc = subprocess.run(
        [
            nvcc.path,
            "-c",
            "-std=c++17",
            "-Xcompiler",
            "-fPIC",
            f"-I{source_path()}",
            source_path("lstm_cuda.cu"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0 or find_nvcc() is None, reason="needs a CUDA GPU and nvcc")
@pytest.mark.parametrize("direction", [1, -1])
def test_cuda_matches_cpu(direction: int) -> None:
    from returnn_native import cpu_kernels, cuda_kernels

    for seed in range(3):
        case = make_case(seed, direction)
        z = np.einsum("bti,ij->btj", case.x, case.W) + case.b
        args = (z, case.W_re, case.mask, case.h0, case.c0)
        cpu = cpu_kernels.lstm_fwd(*args, direction=direction)
        gpu = cuda_kernels.lstm_fwd(*args, direction=direction)
        for a, b in zip(cpu[:3], gpu[:3]):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
        grads = (case.W_re, case.mask, case.h0, case.c0, *cpu[3:], case.dy, case.dh, case.dc)
        for a, b in zip(
            cpu_kernels.lstm_bwd(*grads, direction=direction), cuda_kernels.lstm_bwd(*grads, direction=direction)
        ):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
