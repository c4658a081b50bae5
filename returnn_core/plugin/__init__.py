"""The plugin system: hook specs, registries and the manager that loads ``returnn.plugins`` entry points."""

from returnn_core.plugin._manager import (
    DISABLE_ENV,
    DISABLED,
    ENTRY_POINT_GROUP,
    FAILED,
    INCOMPATIBLE,
    LOADED,
    STRICT_ENV,
    PluginInfo,
    PluginManager,
    get_plugin_manager,
    set_plugin_manager,
)
from returnn_core.plugin._providers import FIRST_PARTY, KNOWN_PROVIDERS
from returnn_core.plugin._registry import Entry, Registrar, Registry, resolve_target
from returnn_core.plugin._spec import EXTENSION_POINTS, KIND_WORDS, hookimpl, hookspec

__all__ = [
    "DISABLE_ENV",
    "DISABLED",
    "ENTRY_POINT_GROUP",
    "EXTENSION_POINTS",
    "FAILED",
    "FIRST_PARTY",
    "INCOMPATIBLE",
    "KIND_WORDS",
    "KNOWN_PROVIDERS",
    "LOADED",
    "STRICT_ENV",
    "Entry",
    "PluginInfo",
    "PluginManager",
    "Registrar",
    "Registry",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "resolve_target",
    "set_plugin_manager",
]
