"""Registrations only: importing this module must stay cheap (no TensorFlow)."""

from returnn_core.plugin import Registrar, hookimpl


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """The ``gated_linear`` layer for the TF backend, imported on first use."""
    registry.register("gated_linear", "returnn_mylayers.layers:GatedLinearLayer", backend="tf", aliases=("glu",))
