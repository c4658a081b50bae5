"""Entry point of the returnn-native plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl


@hookimpl
def returnn_register_native_ops(registry: Registrar) -> None:
    """NativeLstm bindings: ``native_lstm(z, w_re, mask, h0, c0, *, direction) -> (y, h_final, c_final)``; NativeMatMul
    bindings: ``native_matmul(a, b, *, transpose_a, transpose_b) -> op(a) op(b)`` (the input projection's GEMM)."""
    registry.register(
        "NativeLstm",
        "returnn_native.tf_ops:native_lstm",
        backend="tf",
        description="fused LSTM fwd+bwd, TF custom op (C++/BLAS, CUDA where TF has it)",
    )
    registry.register(
        "NativeLstm",
        "returnn_native.pytensor_ops:native_lstm",
        backend="theano",
        description="fused LSTM fwd+bwd, PyTensor C op (C++/BLAS)",
    )
    for backend, module, kind in (("tf", "tf_ops", "TF custom op"), ("theano", "pytensor_ops", "PyTensor C op")):
        registry.register(
            "NativeMatMul",
            f"returnn_native.{module}:native_matmul",
            backend=backend,
            description=f"input-projection GEMM, split-bf16 on AMX tiles (else BLAS), {kind}",
        )


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """The ``nativelstm``, ``nativelstm2`` and ``nativelstmlowmem`` rec units for the tf and theano backends (one
    LSTM on the NativeLstm op; see :mod:`returnn_native.lstm_layouts` for how they differ)."""
    units = {
        "nativelstm": ("NativeLstmUnit", "LSTM on the NativeLstm op"),
        "nativelstm2": ("NativeLstm2Unit", "nativelstm's LSTM under RETURNN's NativeLstm2 name"),
        "nativelstmlowmem": ("NativeLstmLowMemUnit", "LSTM on the NativeLstm op, LstmLowMem's stacked W"),
    }
    for name, (cls, description) in units.items():
        registry.register(name, f"returnn_native.tf_unit:{cls}", backend="tf", description=description)
        registry.register(name, f"returnn_native.pytensor_unit:{cls}", backend="theano", description=description)


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """``returnn compile-native-op``."""
    registry.register(
        "compile-native-op",
        "returnn_native.cli:main",
        description="prebuild native ops into the cache (for nodes without a compiler)",
    )
