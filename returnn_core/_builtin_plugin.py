"""The core's own registrations: it uses the same extension points as any plugin."""

from returnn_core.plugin._registry import Registrar
from returnn_core.plugin._spec import hookimpl


@hookimpl
def returnn_register_lr_controls(registry: Registrar) -> None:
    """Learning-rate controls that ship with the core."""
    mod = "returnn_core.learning_rate.control"
    registry.register("constant", f"{mod}:ConstantLearningRate")
    registry.register("newbob", f"{mod}:NewbobRelative", aliases=("newbob_rel", "newbob_relative"))
    registry.register("newbob_abs", f"{mod}:NewbobAbs")
    registry.register("newbob_multi_epoch", f"{mod}:NewbobMultiEpoch")


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """Commands that ship with the core."""
    registry.register("plot", "returnn_core.cli.plot:main",
                      description="draw scores, errors and the learning rate per epoch from a learning_rate_file")
