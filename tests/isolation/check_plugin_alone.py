"""Check one plugin installed alone with the core: it loads, and every target it registered imports.

Run by the nox session of each plugin, where no other plugin is installed: a plugin that imports another
one fails here. Usage: ``python tests/isolation/check_plugin_alone.py NAME``.
"""

from __future__ import annotations

import sys

from returnn_core.plugin import FIRST_PARTY, KNOWN_PROVIDERS, PluginManager


def main(name: str) -> int:
    """Exit 0 if plugin ``name`` loaded alone and all its targets resolve."""
    pm = PluginManager(strict=True, disabled=())
    pm.load_entry_points()
    others = [p for p in pm.plugins.values() if p.name not in ("core", name) and p.distribution in FIRST_PARTY.values()]
    if others:
        print(f"other first-party plugins are installed: {[p.name for p in others]}")
        return 1
    info = pm.plugins.get(name)
    if info is None or info.status != "loaded":
        print(f"plugin {name!r} did not load: {info}")
        return 1
    count = 0
    for kind, registry in pm.registries.items():
        for entry in registry:
            if entry.plugin == info.label and entry.alias_of is None:
                if kind == "backends" or entry.backend is None or entry.backend in ("tf", "theano"):
                    try:
                        entry.resolve()
                    except Exception as exc:  # noqa: BLE001 - report every broken target
                        # a unit for another backend may need that backend's framework, which is fine to lack here
                        framework_missing = isinstance(exc.__cause__, ImportError) and entry.backend is not None
                        if not framework_missing:
                            print(f"{kind} {entry.name}: {exc}")
                            return 1
                    count += 1
    expected = {n for kind, names in KNOWN_PROVIDERS.items() for n, p in names.items() if p == name}
    provided = {e.name for reg in pm.registries.values() for e in reg if e.plugin == info.label}
    missing = expected - provided
    if missing:
        print(f"plugin {name!r} does not register what the core tells users it provides: {sorted(missing)}")
        return 1
    print(f"plugin {name}: loaded alone, {count} targets resolve, provides {info.provides}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
