"""Hook specifications: every extension point a plugin can fill, one ``returnn_register_*`` hook each.

Each hook gets a ``registry`` (:class:`returnn_core.plugin.Registrar`) bound to the calling plugin and calls
``registry.register(name, target, *, backend=None, aliases=(), description="")`` for each thing it provides.
``target`` should be an import string ``"pkg.module:Attr"`` so that registering imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from returnn_core.plugin._registry import Registrar

PROJECT = "returnn"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def returnn_register_backends(registry: Registrar) -> None:
    """Register backends by config name (``"tf"``) with a :class:`returnn_core.engine.Backend` subclass."""


@hookspec
def returnn_register_layers(registry: Registrar) -> None:
    """Register layer classes per backend (``backend="tf"``) under their config ``class`` name."""


@hookspec
def returnn_register_rec_units(registry: Registrar) -> None:
    """Register recurrent units per backend, implementing :class:`returnn_core.network.RecUnit`."""


@hookspec
def returnn_register_losses(registry: Registrar) -> None:
    """Register losses per backend under their config ``loss`` name (``"ce"``)."""


@hookspec
def returnn_register_updaters(registry: Registrar) -> None:
    """Register optimizers per backend under their config ``optimizer`` class name (``"adam"``)."""


@hookspec
def returnn_register_datasets(registry: Registrar) -> None:
    """Register :class:`returnn_core.datasets.Dataset` subclasses under their config ``class`` name."""


@hookspec
def returnn_register_native_ops(registry: Registrar) -> None:
    """Register native ops per backend (the binding a backend calls, e.g. ``"NativeLstm"``)."""


@hookspec
def returnn_register_lr_controls(registry: Registrar) -> None:
    """Register learning-rate controls under their ``learning_rate_control`` name (``"newbob"``)."""


@hookspec
def returnn_register_output_writers(registry: Registrar) -> None:
    """Register writers for the ``forward`` task's ``output_file`` by format name (``"hdf"``)."""


@hookspec
def returnn_register_cli_tools(registry: Registrar) -> None:
    """Register ``returnn`` subcommands: target ``main(argv: list[str]) -> int``, with a ``description``."""


@hookspec
def returnn_register_config_keys(registry: Registrar) -> None:
    """Register the config keys a plugin reads: target a :class:`returnn_core.config.schema.Key` (its kind is
    checked before the run; a declared key never gets the unread-key warning)."""


#: extension point name -> (hook name, keyed per backend)
EXTENSION_POINTS: dict[str, tuple[str, bool]] = {
    "backends": ("returnn_register_backends", False),
    "layers": ("returnn_register_layers", True),
    "rec_units": ("returnn_register_rec_units", True),
    "losses": ("returnn_register_losses", True),
    "updaters": ("returnn_register_updaters", True),
    "datasets": ("returnn_register_datasets", False),
    "native_ops": ("returnn_register_native_ops", True),
    "lr_controls": ("returnn_register_lr_controls", False),
    "output_writers": ("returnn_register_output_writers", False),
    "cli_tools": ("returnn_register_cli_tools", False),
    "config_keys": ("returnn_register_config_keys", False),
}

#: singular words used in messages
KIND_WORDS: dict[str, str] = {
    "backends": "backend",
    "layers": "layer class",
    "rec_units": "rec unit",
    "losses": "loss",
    "updaters": "optimizer",
    "datasets": "dataset class",
    "native_ops": "native op",
    "lr_controls": "learning-rate control",
    "output_writers": "output writer",
    "cli_tools": "command",
    "config_keys": "config key",
}
