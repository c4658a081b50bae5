"""CUDA kernels: never built for CPU-only backends (the GPU build and GPU results: test_cuda_build, test_cuda_gpu)."""

from __future__ import annotations

import pytest
from returnn_native.cuda_kernels import cuda_build_enabled, gpu_count
from returnn_native.toolchain import find_nvcc


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
