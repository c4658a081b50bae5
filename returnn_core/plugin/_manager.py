"""The plugin manager: finds plugins through entry points, isolates broken ones, fills the registries."""

from __future__ import annotations

import os
import sys
import time
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
#: a plugin module that takes longer than this to import gets a note in ``--list-plugins``
SLOW_IMPORT_SECONDS = 2.0


def _reraise_interrupt(exc: BaseException) -> None:
    """At a terminal a Ctrl-C during plugin loading is the user's: let it stop the command. Elsewhere (a batch job,
    a pipe) a KeyboardInterrupt at import is the plugin's own doing and only fails that plugin."""
    if isinstance(exc, KeyboardInterrupt) and sys.stdin is not None and sys.stdin.isatty():
        raise exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin called sys.exit"
    return f"{type(exc).__name__}: {exc}"


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
    #: seconds its entry-point module took to import
    import_seconds: float | None = None
    #: ``(kind, backend, name)`` a failed plugin tried to register before it failed
    attempted: set[tuple[str, str | None, str]] = field(default_factory=set)

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
            "import_seconds": self.import_seconds,
        }

    @property
    def slow_import_note(self) -> str | None:
        """A note when importing the plugin took longer than :data:`SLOW_IMPORT_SECONDS`."""
        if self.import_seconds is None or self.import_seconds <= SLOW_IMPORT_SECONDS:
            return None
        return (f"importing {self.module} took {self.import_seconds:.1f} s (over {SLOW_IMPORT_SECONDS:g} s, on every "
                "returnn command); keep its _hooks module cheap")


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
            kind: Registry(_spec.KIND_WORDS[kind], per_backend=per_backend, hint=self._hinter(kind),
                           note=self._failed_note)
            for kind, (_, per_backend) in _spec.EXTENSION_POINTS.items()
        }
        for registry in self.registries.values():
            registry.short_name = self._short_name
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

    @property
    def config_keys(self) -> Registry:
        """Config keys plugins declare (:class:`returnn_core.config.schema.Key`)."""
        return self.registries["config_keys"]

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
            t0 = time.monotonic()
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - even sys.exit() at import only isolates the plugin
                _reraise_interrupt(exc)
                info.import_seconds = time.monotonic() - t0
                self._fail(info, f"import of {ep.value} failed: {_describe(exc)}", exc)
                continue
            info.import_seconds = time.monotonic() - t0
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
        except BaseException as exc:  # noqa: BLE001 - pluggy validation errors isolate the plugin
            _reraise_interrupt(exc)
            self._fail(info, f"invalid hooks: {exc}", exc)
            return
        registrars: dict[str, Registrar] = {}
        try:
            unknown = [
                hc.name for hc in self.hooks.get_hookcallers(plugin) or () if not hc.has_spec()
            ]
            if unknown:
                raise PluginError(f"unknown hook(s) {', '.join(unknown)}; known: {', '.join(self._hook_names())}")
            self._run_registration(info, registrars)
            if self.strict:
                for kind, registrar in registrars.items():
                    self.registries[kind].check(registrar.pending)
        except BaseException as exc:  # noqa: BLE001 - a failing registration (even sys.exit) isolates the plugin
            _reraise_interrupt(exc)
            self.hooks.unregister(name=info.name)
            info.attempted = {(kind, e.backend, e.name) for kind, r in registrars.items() for e in r.pending}
            self._fail(info, _describe(exc) if not isinstance(exc, PluginError) else str(exc), exc)
            return
        for kind, registrar in registrars.items():
            # a name another plugin holds becomes ambiguous; neither plugin is disabled (Registry.entry)
            self.registries[kind].add(registrar.pending, ambiguous=True)
        info.status = LOADED
        info.provides = registries_summary(self.registries, info.label)
        self.plugins[info.name] = info

    def _run_registration(self, info: PluginInfo, registrars: dict[str, Registrar]) -> None:
        for kind, (hook_name, _) in _spec.EXTENSION_POINTS.items():
            caller = getattr(self.hooks.hook, hook_name)
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin_name == info.name]
            if not impls:
                continue
            registrar = Registrar(self.registries[kind], info.label)
            registrars[kind] = registrar
            for impl in impls:
                impl.function(registry=registrar)

    def _hook_names(self) -> list[str]:
        return [hook for hook, _ in _spec.EXTENSION_POINTS.values()]

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        info.status, info.error = FAILED, error
        # a second plugin with a taken name is recorded under a key of its own
        key = info.name if info.name not in self.plugins else f"{info.name} ({info.label})"
        self.plugins[key] = info
        if self.strict:
            raise PluginError(f"plugin {info.label} failed: {error}") from exc

    def prefer(self, plugins: Iterable[str]) -> None:
        """Let ``plugins`` (short names or distributions) win the names they share with others."""
        for registry in self.registries.values():
            registry.preferred = list(plugins)

    def conflicts(self) -> list[str]:
        """One line per ambiguous name: which plugins registered it."""
        return [
            f"{_spec.KIND_WORDS[kind]} {name}: registered by {' and by '.join(plugins)} (ambiguous until one is "
            f"preferred with prefer_plugins or disabled with {DISABLE_ENV})"
            for kind, registry in self.registries.items()
            for name, plugins in registry.conflicts()
        ]

    def _short_name(self, label: str) -> str:
        for info in self.plugins.values():
            if info.label == label:
                return info.name
        return label

    def _failed_note(self, name: str, backend: str | None) -> str:
        """For an unknown name: the failed plugins that might have provided it, with their recorded errors."""
        failed = [p for p in self.plugins.values() if p.status == FAILED and not p.attempted]
        if not failed:
            return ""
        return "; " + "; ".join(f"plugin {p.label} failed to load and may provide it: {p.error}" for p in failed)

    # -- lookups with helpful errors ----------------------------------------------------------
    def _hinter(self, kind: str):
        def hint(name: str, backend: str | None) -> Exception | None:
            key = (kind, backend if self.registries[kind].per_backend else None, name)
            for info in self.plugins.values():
                if info.status == FAILED and key in info.attempted:
                    what = f"{_spec.KIND_WORDS[kind]} {name!r}" + (f" for backend {backend!r}" if backend else "")
                    return PluginUnavailableError(f"{what} comes from plugin {info.label}, which failed: {info.error}")
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
