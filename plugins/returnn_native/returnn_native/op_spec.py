"""Descriptions of the native ops: kernel sources, inputs and outputs with shapes, and the gradient op."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name and shape in terms of named dims (``B``, ``T``, ``n``, ``4n``)."""

    name: str
    shape: tuple[str, ...]
    doc: str = ""


@dataclass(frozen=True)
class NativeOpSpec:
    """A native op: C++ (CPU) and CUDA kernel sources, their C entry points, and what goes in and out."""

    name: str
    cpu_source: str
    cuda_source: str
    header: str
    cpu_function: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    attrs: tuple[str, ...] = ()
    grad: NativeOpSpec | None = None
    doc: str = ""

    def describe(self) -> str:
        """One line per op: signature with shapes."""
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in self.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in self.outputs)
        return f"{self.name}({ins}; {', '.join(self.attrs)}) -> ({outs})"


NATIVE_LSTM_GRAD = NativeOpSpec(
    name="NativeLstmGrad",
    cpu_source="lstm_cpu.cc",
    cuda_source="lstm_cuda.cu",
    header="lstm.h",
    cpu_function="returnn_lstm_bwd_cpu",
    inputs=(
        TensorSpec("w_re", ("n", "4n")),
        TensorSpec("mask", ("B", "T")),
        TensorSpec("h0", ("B", "n")),
        TensorSpec("c0", ("B", "n")),
        TensorSpec("gates", ("B", "T", "4n")),
        TensorSpec("cells", ("B", "T", "n")),
        TensorSpec("h_prev", ("B", "T", "n")),
        TensorSpec("dy", ("B", "T", "n")),
        TensorSpec("dh_final", ("B", "n")),
        TensorSpec("dc_final", ("B", "n")),
    ),
    outputs=(
        TensorSpec("dz", ("B", "T", "4n")),
        TensorSpec("dw_re", ("n", "4n")),
        TensorSpec("dh0", ("B", "n")),
        TensorSpec("dc0", ("B", "n")),
    ),
    attrs=("direction: +1|-1",),
    doc="Backward pass of NativeLstm over the whole sequence.",
)

NATIVE_LSTM = NativeOpSpec(
    name="NativeLstm",
    cpu_source="lstm_cpu.cc",
    cuda_source="lstm_cuda.cu",
    header="lstm.h",
    cpu_function="returnn_lstm_fwd_cpu",
    inputs=(
        TensorSpec("z", ("B", "T", "4n"), "input projection x W + b, blocks [cell in, input, forget, output]"),
        TensorSpec("w_re", ("n", "4n"), "recurrent weights"),
        TensorSpec("mask", ("B", "T"), "1 = frame present"),
        TensorSpec("h0", ("B", "n")),
        TensorSpec("c0", ("B", "n")),
    ),
    outputs=(
        TensorSpec("y", ("B", "T", "n")),
        TensorSpec("h_final", ("B", "n")),
        TensorSpec("c_final", ("B", "n")),
        TensorSpec("gates", ("B", "T", "4n"), "workspace for the gradient"),
        TensorSpec("cells", ("B", "T", "n"), "workspace for the gradient"),
        TensorSpec("h_prev", ("B", "T", "n"), "workspace for the gradient"),
    ),
    attrs=("direction: +1|-1",),
    grad=NATIVE_LSTM_GRAD,
    doc="Fused LSTM over a whole padded batch, one direction, masked frames keep the state.",
)

NATIVE_MATMUL = NativeOpSpec(
    name="NativeMatMul",
    cpu_source="lstm_cpu.cc",
    cuda_source="",  # CPU only: on a GPU the framework's matmul serves
    header="lstm.h",
    cpu_function="returnn_matmul_cpu",
    inputs=(TensorSpec("a", ("M", "K"), "(K, M) with transpose_a"), TensorSpec("b", ("K", "N"), "(N, K) with transpose_b")),
    outputs=(TensorSpec("product", ("M", "N")),),
    attrs=("transpose_a: bool", "transpose_b: bool"),
    doc="An input projection's GEMM op(a) op(b) (split-bf16 AMX tiles under ISA amx); its gradient is two more.",
)

#: All ops by name.
OPS: dict[str, NativeOpSpec] = {NATIVE_LSTM.name: NATIVE_LSTM, NATIVE_MATMUL.name: NATIVE_MATMUL}
