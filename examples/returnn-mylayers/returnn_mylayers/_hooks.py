"""Registrations only: importing this module must stay cheap (no TensorFlow, no PyTensor)."""

from returnn_core.plugin import Registrar, hookimpl

#: the layer is written on returnn_core.frontend, so it runs on every backend; register it for each
BACKENDS = ("tf", "theano")


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """The ``gated_linear`` layer (alias ``glu``) for every backend, imported on first use."""
    for backend in BACKENDS:
        registry.register("gated_linear", "returnn_mylayers.layers:GatedLinearLayer", backend=backend,
                          aliases=("glu",))
