"""Entry point of the returnn-native plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl


@hookimpl
def returnn_register_native_ops(registry: Registrar) -> None:
    """NativeLstm bindings: ``native_lstm(z, w_re, mask, h0, c0, *, direction) -> (y, h_final, c_final)``."""
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


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """The ``nativelstm`` rec unit for the tf and theano backends."""
    registry.register(
        "nativelstm", "returnn_native.tf_unit:NativeLstmUnit", backend="tf", description="LSTM on the NativeLstm op"
    )
    registry.register(
        "nativelstm",
        "returnn_native.pytensor_unit:NativeLstmUnit",
        backend="theano",
        description="LSTM on the NativeLstm op",
    )


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """``returnn compile-native-op``."""
    registry.register(
        "compile-native-op",
        "returnn_native.cli:main",
        description="prebuild native ops into the cache (for nodes without a compiler)",
    )
