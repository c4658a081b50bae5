"""Which backend a config runs on: the one it names, else RETURNN 2017's default (theano), else what is installed."""

from __future__ import annotations

from returnn_core.config import Config
from returnn_core.errors import ConfigError
from returnn_core.log import Log
from returnn_core.plugin import PluginManager

#: RETURNN's default engine when a config names none (``Util.BackendEngine.Default`` is Theano)
DEFAULT_BACKEND = "theano"

_HOW_TO_CHOOSE = 'choose one with backend = "tf" (or use_tensorflow = True) or backend = "theano"'


def named_backend(config: Config) -> str | None:
    """The backend the config names through ``backend``, ``use_tensorflow`` or ``use_theano``, if any."""
    name = config.value("backend", None)
    if name:
        return name
    if config.bool("use_tensorflow", False):
        return "tf"
    if config.has("use_tensorflow") or config.bool("use_theano", False):
        return "theano"  # use_tensorflow = False is RETURNN's explicit way to ask for Theano
    return None


def select_backend(config: Config, manager: PluginManager, log: Log | None = None) -> str:
    """The backend to run ``config`` on; when the config names none, one log line says which and how to choose."""
    name = named_backend(config)
    if name:
        entry = manager.backends.entry(name)
        return entry.alias_of or entry.name
    installed = manager.loaded_backends()
    if DEFAULT_BACKEND in installed:
        chosen, why = DEFAULT_BACKEND, "RETURNN's default when a config names no backend"
    elif len(installed) == 1:
        chosen, why = installed[0], f"the only backend installed; {DEFAULT_BACKEND}, the default, is not available"
    elif "tf" in installed:
        chosen, why = "tf", f"{DEFAULT_BACKEND}, the default, is not available; of {', '.join(installed)} tf is taken"
    elif not installed:
        raise manager.backends.unknown(DEFAULT_BACKEND)
    else:
        raise ConfigError(
            f"the config names no backend, {DEFAULT_BACKEND} (the default) is not available and several backends are: "
            f"{', '.join(installed)}; set backend = \"NAME\" in the config"
        )
    if log is not None:
        log.v2(f"backend: {chosen} ({why}); {_HOW_TO_CHOOSE}")
    return chosen
