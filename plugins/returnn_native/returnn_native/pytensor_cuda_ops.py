"""PyTensor NativeLstm ops that run the CUDA kernels, with host<->device copies in every call.

PyTensor has no GPU backend (it dropped Theano's gpuarray), so its tensors live in host memory. These ops are the
C ops of ``pytensor_ops`` with the kernel call swapped for the CUDA library's host front end, which copies the
inputs to the GPU, runs the same kernels as the TF GPU op and copies the outputs (and the gradient's workspace) back.
For one 500-unit layer at T=50, B=40 the copies are about 100 MB per forward and backward (an estimate of 10-20 ms
over PCIe, against ~140 ms for the CPU kernel on 2 cores); for small layers they cost more than they save, hence
opt-in: ``$RETURNN_NATIVE_CUDA=1`` (see ``cuda_kernels``).
"""

from __future__ import annotations

import os
from typing import Any

from returnn_native.cuda_kernels import build_cuda_kernels, check_cuda_runtime, cuda_mode, lstm_bwd, lstm_fwd
from returnn_native.errors import NativeOpError
from returnn_native.pytensor_ops import NativeLstmGradOp, NativeLstmOp


class _CudaLinking:
    """C code of the CPU op with the CUDA host function instead of the CPU one, linking the CUDA library too."""

    cpu_function = ""
    cuda_function = ""

    def c_headers(self, **kwargs: Any) -> list[str]:
        return [*super().c_headers(**kwargs), "lstm_cuda.h"]  # type: ignore[misc]

    def c_libraries(self, **kwargs: Any) -> list[str]:
        return [*super().c_libraries(**kwargs), os.path.basename(build_cuda_kernels().path)[3:-3]]  # type: ignore[misc]

    def c_lib_dirs(self, **kwargs: Any) -> list[str]:
        return [*super().c_lib_dirs(**kwargs), os.path.dirname(build_cuda_kernels().path)]  # type: ignore[misc]

    def c_compile_args(self, **kwargs: Any) -> list[str]:
        rpath = f"-Wl,-rpath,{os.path.dirname(build_cuda_kernels().path)}"
        return [*super().c_compile_args(**kwargs), rpath]  # type: ignore[misc]

    def c_code(self, node: Any, name: str, inp: list[str], out: list[str], sub: dict[str, str]) -> str:
        code = super().c_code(node, name, inp, out, sub)  # type: ignore[misc]
        if f"{self.cpu_function}(" not in code:
            raise NativeOpError(f"{type(self).__name__}: the CPU op's C code no longer calls {self.cpu_function}")
        code = code.replace(f"{self.cpu_function}(", f"{self.cuda_function}(")
        # the CUDA library's own account of a failure (e.g. which CUDA call, no GPU) goes into the Python error
        failed = 'kernel failed with code %d", rc_'
        return code.replace(failed, 'kernel failed with code %d on the GPU: %s", rc_, returnn_cuda_last_error()')

    def c_code_cache_version(self) -> tuple[Any, ...]:
        base = super().c_code_cache_version()  # type: ignore[misc]
        return (*base, "cuda", 1, os.path.basename(os.path.dirname(build_cuda_kernels().path)))


class NativeLstmCudaOp(_CudaLinking, NativeLstmOp):
    """NativeLstm forward on the GPU for host tensors: same inputs, outputs and gradient as ``NativeLstmOp``."""

    cpu_function = "returnn_lstm_fwd_cpu"
    cuda_function = "returnn_lstm_fwd_cuda_host"

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_fwd(*inputs, direction=self.direction)):
            storage[0] = value

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        grads = super().pullback(inputs, outputs, cotangents)
        cpu_grad = grads[0].owner  # the CPU gradient node; the same inputs go to the CUDA one
        if cpu_grad is None or not isinstance(cpu_grad.op, NativeLstmGradOp):
            raise NativeOpError("NativeLstmCudaOp: the CPU op's gradient is no longer one NativeLstmGradOp node")
        dz, dw_re, dh0, dc0 = NativeLstmCudaGradOp(self.direction)(*cpu_grad.inputs)
        return [dz, dw_re, grads[2], dh0, dc0]


class NativeLstmCudaGradOp(_CudaLinking, NativeLstmGradOp):
    """NativeLstm gradient on the GPU for host tensors."""

    cpu_function = "returnn_lstm_bwd_cpu"
    cuda_function = "returnn_lstm_bwd_cuda_host"

    def perform(self, node: Any, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        for storage, value in zip(output_storage, lstm_bwd(*inputs, direction=self.direction)):
            storage[0] = value


def cuda_op_for_pytensor(direction: int) -> NativeLstmCudaOp | None:
    """The CUDA forward op when ``$RETURNN_NATIVE_CUDA=1``, else None; a clear error when the GPU cannot be used."""
    if cuda_mode() != "on":
        return None
    try:
        check_cuda_runtime()
        build_cuda_kernels()
    except NativeOpError as exc:
        raise NativeOpError(f"$RETURNN_NATIVE_CUDA=1 asks for NativeLstm on the GPU, but {exc}") from exc
    return NativeLstmCudaOp(direction)
