"""Entry point of the returnn-theano plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl

BACKEND = "theano"


def _register_core(kind: str, registry: Registrar) -> None:
    # imported on use (as in returnn-tf): loading the entry point must stay free of NumPy and PyTensor
    from returnn_core.frontend.catalogue import register

    register(kind, registry, BACKEND)


@hookimpl
def returnn_register_backends(registry: Registrar) -> None:
    """The PyTensor backend, selected by ``backend = "theano"``."""
    registry.register(
        BACKEND, "returnn_theano.backend:TheanoBackend", aliases=("pytensor",),
        description="Theano-API backend on PyTensor",
    )


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """The core's layers (written once on :class:`~returnn_core.frontend.Ops`), run on PyTensorOps."""
    _register_core("layers", registry)


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """The core's rec units (``lstm`` switches to the registered ``nativelstm`` when there is one)."""
    _register_core("rec_units", registry)


@hookimpl
def returnn_register_losses(registry: Registrar) -> None:
    """The core's losses."""
    _register_core("losses", registry)


@hookimpl
def returnn_register_updaters(registry: Registrar) -> None:
    """The core's optimizers, driven with PyTensor shared slot variables."""
    _register_core("updaters", registry)
