"""Entry point of the returnn-tf plugin: registrations only (imports nothing but the standard library and the core).

Layers, rec units, losses and optimizers are the core's (:mod:`returnn_core.frontend.catalogue`), run on
:class:`returnn_tf.ops.TFOps`; the plugin adds only the TF-only ``eval`` layer.
"""

from returnn_core.plugin import Registrar, hookimpl

BACKEND = "tf"

#: layers only TF has: config class name -> (module:attr, aliases)
TF_LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "eval": ("returnn_tf.layers.eval:EvalLayer", ()),
}


def _register_core(kind: str, registry: Registrar) -> None:
    # imported here, not at the top: the catalogue's package pulls in numpy, which plugin discovery must not load
    from returnn_core.frontend.catalogue import register

    register(kind, registry, BACKEND)


@hookimpl
def returnn_register_backends(registry: Registrar) -> None:
    """The TensorFlow backend."""
    registry.register(BACKEND, "returnn_tf.backend:TFBackend", aliases=("tensorflow",),
                      description="TensorFlow 2 backend")


@hookimpl
def returnn_register_layers(registry: Registrar) -> None:
    """The core's layers, plus ``eval`` (TF expressions)."""
    _register_core("layers", registry)
    for name, (target, aliases) in TF_LAYERS.items():
        registry.register(name, target, backend=BACKEND, aliases=aliases)


@hookimpl
def returnn_register_rec_units(registry: Registrar) -> None:
    """The core's rec units (``lstm`` prefers a registered ``nativelstm``, see ``returnn_core.frontend.resolve_unit``)."""
    _register_core("rec_units", registry)


@hookimpl
def returnn_register_losses(registry: Registrar) -> None:
    """The core's losses."""
    _register_core("losses", registry)


@hookimpl
def returnn_register_updaters(registry: Registrar) -> None:
    """The core's optimizers (run on TF's fused kernels, see :mod:`returnn_tf.updates`)."""
    _register_core("updaters", registry)


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """``returnn tf-distributed``."""
    registry.register("tf-distributed", "returnn_tf.launcher:main",
                      description="train a config data-parallel on N local TF workers (MultiWorkerMirroredStrategy)")
