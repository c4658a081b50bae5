"""The plugin manager: finds plugins through entry points, isolates broken ones, fills the registries."""

from __future__ import annotations

import os
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from returnn_core import __version__ as CORE_VERSION
from returnn_core.errors import PluginError, PluginUnavailableError, UnknownNameError
from returnn_core.plugin import _spec
from returnn_core.plugin._providers import BACKEND_PLUGINS, FIRST_PARTY, provider_of
from returnn_core.plugin._registry import Registrar, Registry, registries_summary

ENTRY_POINT_GROUP = "returnn.plugins"
DISABLE_ENV = "RETURNN_DISABLE_PLUGINS"
STRICT_ENV = "RETURNN_PLUGINS_STRICT"

LOADED, FAILED, DISABLED, INCOMPATIBLE = "loaded", "failed", "disabled", "incompatible"


@dataclass
class PluginInfo:
    """One plugin as the host sees it: where it comes from, whether it loaded, what it provides."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = LOADED
    error: str | None = None
    module: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name the plugin: its distribution if it has one."""
        return self.distribution or self.name

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``returnn --list-plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "module": self.module,
            "provides": self.provides,
        }


def _env_list(var: str) -> set[str]:
    return {p.strip() for p in os.environ.get(var, "").split(",") if p.strip()}


def _core_requirement_problem(dist: metadata.Distribution) -> str | None:
    """Why ``dist`` cannot run on this core (its ``returnn-core`` requirement excludes us), else None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "returnn-core":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.specifier and not req.specifier.contains(CORE_VERSION, prereleases=True):
            return f"needs returnn-core{req.specifier}, but this is returnn-core {CORE_VERSION}"
    return None


class PluginManager:
    """Loads plugins and owns one :class:`Registry` per extension point."""

    def __init__(self, *, strict: bool | None = None, disabled: Iterable[str] | None = None) -> None:
        self.strict = bool(os.environ.get(STRICT_ENV)) if strict is None else strict
        self.disabled = _env_list(DISABLE_ENV) if disabled is None else set(disabled)
        self.hooks = pluggy.PluginManager(_spec.PROJECT)
        self.hooks.add_hookspecs(_spec)
        self.plugins: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {
            kind: Registry(_spec.KIND_WORDS[kind], per_backend=per_backend, hint=self._hinter(kind))
            for kind, (_, per_backend) in _spec.EXTENSION_POINTS.items()
        }
        from returnn_core import _builtin_plugin

        self.register(_builtin_plugin, "core", distribution="returnn-core", version=CORE_VERSION)

    # -- typed facade over the registries -------------------------------------------------------
    @property
    def backends(self) -> Registry:
        """Backends by config name."""
        return self.registries["backends"]

    @property
    def layers(self) -> Registry:
        """Layer classes per backend."""
        return self.registries["layers"]

    @property
    def rec_units(self) -> Registry:
        """Recurrent units per backend."""
        return self.registries["rec_units"]

    @property
    def losses(self) -> Registry:
        """Losses per backend."""
        return self.registries["losses"]

    @property
    def updaters(self) -> Registry:
        """Optimizers per backend."""
        return self.registries["updaters"]

    @property
    def datasets(self) -> Registry:
        """Dataset classes."""
        return self.registries["datasets"]

    @property
    def native_ops(self) -> Registry:
        """Native op bindings per backend."""
        return self.registries["native_ops"]

    @property
    def lr_controls(self) -> Registry:
        """Learning-rate controls."""
        return self.registries["lr_controls"]

    @property
    def output_writers(self) -> Registry:
        """Forward-output writers by format."""
        return self.registries["output_writers"]

    @property
    def cli_tools(self) -> Registry:
        """``returnn`` subcommands."""
        return self.registries["cli_tools"]

    # -- loading ------------------------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Discover and load every plugin installed under the entry-point ``group``."""
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                module=ep.value,
            )
            if ep.name in self.plugins:
                other = self.plugins[ep.name]
                self._fail(info, f"plugin name {ep.name!r} is already taken by {other.label}")
                continue
            if ep.name in self.disabled:
                info.status = DISABLED
                self.plugins[ep.name] = info
                continue
            problem = _core_requirement_problem(dist) if dist is not None else None
            if problem:
                info.status, info.error = INCOMPATIBLE, problem
                self.plugins[ep.name] = info
                if self.strict:
                    raise PluginError(f"plugin {info.label} is incompatible: {problem}")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure isolates the plugin
                self._fail(info, f"import of {ep.value} failed: {type(exc).__name__}: {exc}", exc)
                continue
            self._register_info(module, info)

    def register(
        self, plugin: object, name: str, *, distribution: str | None = None, version: str | None = None
    ) -> PluginInfo:
        """Register a plugin object or module directly (tests, embedding applications)."""
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__name__
        info = PluginInfo(name, distribution=distribution, version=version, module=module)
        if name in self.plugins and self.plugins[name].status == LOADED:
            raise PluginError(f"plugin name {name!r} is already taken by {self.plugins[name].label}")
        if name in self.disabled:
            info.status = DISABLED
            self.plugins[name] = info
            return info
        self._register_info(plugin, info)
        return info

    def _register_info(self, plugin: object, info: PluginInfo) -> None:
        try:
            self.hooks.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001 - pluggy validation errors isolate the plugin
            self._fail(info, f"invalid hooks: {exc}", exc)
            return
        try:
            unknown = [
                hc.name for hc in self.hooks.get_hookcallers(plugin) or () if not hc.has_spec()
            ]
            if unknown:
                raise PluginError(f"unknown hook(s) {', '.join(unknown)}; known: {', '.join(self._hook_names())}")
            registrars = self._run_registration(info)
            for kind, registrar in registrars.items():
                self.registries[kind].check(registrar.pending)
        except Exception as exc:  # noqa: BLE001 - a failing registration isolates the plugin
            self.hooks.unregister(name=info.name)
            self._fail(info, f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc), exc)
            return
        for kind, registrar in registrars.items():
            self.registries[kind].add(registrar.pending)
        info.status = LOADED
        info.provides = registries_summary(self.registries, info.label)
        self.plugins[info.name] = info

    def _run_registration(self, info: PluginInfo) -> dict[str, Registrar]:
        registrars: dict[str, Registrar] = {}
        for kind, (hook_name, _) in _spec.EXTENSION_POINTS.items():
            caller = getattr(self.hooks.hook, hook_name)
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin_name == info.name]
            if not impls:
                continue
            registrar = Registrar(self.registries[kind], info.label)
            for impl in impls:
                impl.function(registry=registrar)
            registrars[kind] = registrar
        return registrars

    def _hook_names(self) -> list[str]:
        return [hook for hook, _ in _spec.EXTENSION_POINTS.values()]

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        info.status, info.error = FAILED, error
        # a second plugin with a taken name is recorded under a key of its own
        key = info.name if info.name not in self.plugins else f"{info.name} ({info.label})"
        self.plugins[key] = info
        if self.strict:
            raise PluginError(f"plugin {info.label} failed: {error}") from exc

    # -- lookups with helpful errors ----------------------------------------------------------
    def _hinter(self, kind: str):
        def hint(name: str, backend: str | None) -> Exception | None:
            plugin = provider_of(kind, name, backend)
            if plugin is None:
                return None
            word = _spec.KIND_WORDS[kind]
            what = f"{word} {name!r}" + (f" for backend {backend!r}" if backend else "")
            dist = FIRST_PARTY.get(plugin, plugin)
            info = self.plugins.get(plugin)
            if info is None:
                if backend and plugin == BACKEND_PLUGINS.get(backend) and kind != "backends":
                    return UnknownNameError(f"{what} needs the backend plugin {plugin!r}: pip install {dist}")
                return UnknownNameError(f"{what} needs plugin {plugin!r}: pip install {dist}")
            if info.status == FAILED:
                return PluginUnavailableError(f"{what} comes from plugin {info.label}, which failed: {info.error}")
            if info.status == DISABLED:
                return PluginUnavailableError(
                    f"{what} comes from plugin {info.label}, which is disabled by {DISABLE_ENV}"
                )
            if info.status == INCOMPATIBLE:
                return PluginUnavailableError(f"{what} comes from plugin {info.label}, which is incompatible: {info.error}")
            return None

        return hint

    def get(self, kind: str, name: str, *, backend: str | None = None) -> Any:
        """Resolve ``name`` in the registry of ``kind`` (``"layers"``, ``"datasets"``, ...)."""
        return self.registries[kind].get(name, backend=backend)

    def loaded_backends(self) -> list[str]:
        """Names (not aliases) of registered backends."""
        return sorted(e.name for e in self.backends if e.alias_of is None)


_MANAGER: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, loading installed plugins on first call."""
    global _MANAGER
    if _MANAGER is None:
        manager = PluginManager()
        manager.load_entry_points()
        _MANAGER = manager
    return _MANAGER


def set_plugin_manager(manager: PluginManager | None) -> None:
    """Replace (or with ``None`` reset) the process-wide plugin manager."""
    global _MANAGER
    _MANAGER = manager
