"""Registries: one per extension point, filled by plugins, resolved lazily on first use."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from returnn_core.errors import PluginConflictError, PluginError, UnknownNameError


@dataclass
class Entry:
    """One registered name: what it points at and which plugin put it there."""

    kind: str
    name: str
    target: Any
    plugin: str
    backend: str | None = None
    alias_of: str | None = None
    description: str = ""
    _resolved: Any = field(default=None, repr=False)
    _is_resolved: bool = field(default=False, repr=False)

    def resolve(self) -> Any:
        """Import the target if it is an import string ``"module:attr"`` and return it."""
        if not self._is_resolved:
            self._resolved = resolve_target(self.target, what=f"{self.kind} {self.name!r} of plugin {self.plugin}")
            self._is_resolved = True
        return self._resolved

    def same_target(self, other: Entry) -> bool:
        """Whether two entries point at the same object (registering it twice is a no-op)."""
        return self.target == other.target and self.alias_of == other.alias_of


def resolve_target(target: Any, *, what: str) -> Any:
    """Resolve ``"pkg.module:attr.sub"`` to the object; other targets are returned as they are."""
    if not isinstance(target, str):
        return target
    module_name, sep, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split(".") if sep else ():
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot load {what}: target {target!r} failed: {type(exc).__name__}: {exc}") from exc
    return obj


Key = tuple[str | None, str]
HintFunc = Callable[[str, str | None], str | None]
NoteFunc = Callable[[str, str | None], str]


class Registry:
    """Names of one extension point (layers, datasets, ...); keyed by ``(backend, name)`` where per-backend."""

    def __init__(self, kind: str, *, per_backend: bool, hint: HintFunc | None = None,
                 note: NoteFunc | None = None) -> None:
        self.kind = kind
        self.per_backend = per_backend
        self._entries: dict[Key, Entry] = {}
        #: keys two plugins registered with different targets: the further entries (the first stays in _entries)
        self._rivals: dict[Key, list[Entry]] = {}
        self._hint = hint
        self._note = note
        #: plugins (short names or distributions) that win an ambiguous name (the config's ``prefer_plugins``)
        self.preferred: list[str] = []
        #: the short name of a plugin label, for the RETURNN_DISABLE_PLUGINS advice
        self.short_name: Callable[[str], str] = lambda label: label

    def _key(self, name: str, backend: str | None) -> Key:
        if self.per_backend and not backend:
            raise PluginError(f"{self.kind} {name!r} must be registered for a backend (backend='tf', ...)")
        return (backend if self.per_backend else None, name)

    def make_entries(
        self,
        name: str,
        target: Any,
        *,
        plugin: str,
        backend: str | None = None,
        aliases: Iterable[str] = (),
        description: str = "",
    ) -> list[Entry]:
        """Build the entries for ``name`` and its aliases without adding them."""
        if not name or not isinstance(name, str):
            raise PluginError(f"{self.kind} name must be a non-empty string, got {name!r}")
        self._key(name, backend)
        entries = [Entry(self.kind, name, target, plugin, backend if self.per_backend else None, None, description)]
        for alias in aliases:
            entries.append(Entry(self.kind, alias, target, plugin, entries[0].backend, name, description))
        return entries

    def check(self, entries: Iterable[Entry]) -> None:
        """Raise :class:`PluginConflictError` if any entry clashes with a different registered one."""
        for entry in entries:
            old = self._entries.get((entry.backend, entry.name))
            if old is not None and not old.same_target(entry):
                where = f" for backend {entry.backend!r}" if entry.backend else ""
                raise PluginConflictError(
                    f"{self.kind} {entry.name!r}{where} is registered by {old.plugin} and by {entry.plugin}"
                )

    def add(self, entries: Iterable[Entry], *, ambiguous: bool = False) -> None:
        """Add entries; an identical re-registration is a no-op. A different target under a taken key raises
        :class:`PluginConflictError`, or with ``ambiguous`` makes the key ambiguous (see :meth:`entry`)."""
        entries = list(entries)
        if not ambiguous:
            self.check(entries)
        for entry in entries:
            key = (entry.backend, entry.name)
            old = self._entries.setdefault(key, entry)
            rivals = self._rivals.setdefault(key, [])
            if old is not entry and not any(e.same_target(entry) for e in [old, *rivals]):
                rivals.append(entry)
            if not rivals:
                del self._rivals[key]

    def register(
        self,
        name: str,
        target: Any,
        *,
        backend: str | None = None,
        aliases: Iterable[str] = (),
        plugin: str = "<direct>",
        description: str = "",
    ) -> None:
        """Register ``target`` (object or ``"module:attr"`` import string) under ``name`` and ``aliases``."""
        self.add(
            self.make_entries(
                name, target, plugin=plugin, backend=backend, aliases=aliases, description=description
            )
        )

    def remove_plugin(self, plugin: str) -> None:
        """Drop every entry a plugin registered (a rival of an ambiguous name takes its place)."""
        for key in list(self._entries):
            candidates = [e for e in [self._entries[key], *self._rivals.pop(key, [])] if e.plugin != plugin]
            if candidates:
                self._entries[key] = candidates[0]
                if candidates[1:]:
                    self._rivals[key] = candidates[1:]
            else:
                del self._entries[key]

    def conflicts(self) -> list[tuple[str, list[str]]]:
        """Ambiguous names (``name`` or ``name@backend``) with the plugins that registered them."""
        return [
            (f"{name}@{backend}" if backend else name, [e.plugin for e in [self._entries[(backend, name)], *rivals]])
            for (backend, name), rivals in sorted(self._rivals.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        ]

    def __contains__(self, key: str | Key) -> bool:
        if isinstance(key, tuple):
            return key in self._entries
        return any(name == key for _, name in self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, backend: str | None = None) -> list[str]:
        """Sorted registered names (for one backend where per-backend; all backends if ``None``)."""
        return sorted(
            {name for b, name in self._entries if backend is None or not self.per_backend or b == backend}
        )

    def backends_for(self, name: str) -> list[str]:
        """Backends that have ``name`` registered."""
        return sorted(b for b, n in self._entries if n == name and b)

    def entry(self, name: str, *, backend: str | None = None) -> Entry:
        """The entry for ``name``, or :class:`UnknownNameError` listing known and close names."""
        key = (backend if self.per_backend else None, name)
        entry = self._entries.get(key)
        if entry is None:
            raise self.unknown(name, backend=backend)
        rivals = self._rivals.get(key)
        if not rivals:
            return entry
        candidates = [entry, *rivals]
        chosen = [e for e in candidates if e.plugin in self.preferred or self.short_name(e.plugin) in self.preferred]
        if len(chosen) == 1:
            return chosen[0]
        plugins = [e.plugin for e in candidates]
        where = f" for backend {backend!r}" if self.per_backend and backend else ""
        raise PluginConflictError(
            f"{self.kind} {name!r}{where} is ambiguous: registered by {' and by '.join(plugins)}; pick one with "
            f"prefer_plugins = [{self.short_name(plugins[0])!r}] in the config, or disable the other: "
            f"RETURNN_DISABLE_PLUGINS={self.short_name(plugins[-1])}"
        )

    def get(self, name: str, *, backend: str | None = None) -> Any:
        """The resolved target registered under ``name`` (importing it on first use)."""
        return self.entry(name, backend=backend).resolve()

    def unknown(self, name: str, *, backend: str | None = None) -> Exception:
        """Build the error for an unknown name: known names, close matches, the plugin that provides it."""
        if self._hint is not None:
            hinted = self._hint(name, backend)
            if hinted is not None:
                return UnknownNameError(hinted) if isinstance(hinted, str) else hinted
        known = self.names(backend)
        where = f" for backend {backend!r}" if self.per_backend and backend else ""
        msg = f"unknown {self.kind} {name!r}{where}"
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        others = [b for b in self.backends_for(name) if b != backend] if self.per_backend else []
        if others:
            msg += f"; only backend {', '.join(repr(b) for b in others)} has it"
        if close:
            msg += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        msg += f". Known: {', '.join(known) if known else '(none registered)'}"
        if self._note is not None:
            msg += self._note(name, backend)
        return UnknownNameError(msg)

    def provided_by(self, plugin: str) -> list[str]:
        """Names (not aliases) that one plugin registered, with their backend where per-backend."""
        out = []
        rivals = [e for more in self._rivals.values() for e in more]
        for e in [*self._entries.values(), *rivals]:
            if e.plugin == plugin and e.alias_of is None:
                out.append(f"{e.name}@{e.backend}" if e.backend else e.name)
        return sorted(out)


class Registrar:
    """What a registration hook gets: ``register(...)`` bound to one plugin, buffered until it succeeds."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self.kind = registry.kind
        self.per_backend = registry.per_backend
        self._registry = registry
        self._plugin = plugin
        self.pending: list[Entry] = []

    def register(
        self,
        name: str,
        target: Any,
        *,
        backend: str | None = None,
        aliases: Iterable[str] = (),
        description: str = "",
    ) -> None:
        """Register ``target`` (object or ``"module:attr"`` import string) under ``name`` and ``aliases``."""
        self.pending.extend(
            self._registry.make_entries(
                name, target, plugin=self._plugin, backend=backend, aliases=aliases, description=description
            )
        )


def registries_summary(registries: Mapping[str, Registry], plugin: str) -> dict[str, list[str]]:
    """What one plugin provides, per extension point (only non-empty ones)."""
    out = {}
    for kind, reg in registries.items():
        names = reg.provided_by(plugin)
        if names:
            out[kind] = names
    return out
