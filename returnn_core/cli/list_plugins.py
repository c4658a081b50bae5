"""``returnn --list-plugins``: what is installed, whether it loaded, what it provides (no backend imported)."""

from __future__ import annotations

import json
from typing import IO

from returnn_core.plugin import PluginManager


def _provides_text(provides: dict[str, list[str]]) -> str:
    parts = []
    for kind, names in provides.items():
        shown = ", ".join(names) if len(names) <= 4 else f"{len(names)} ({', '.join(names[:3])}, ...)"
        parts.append(f"{kind}: {shown}")
    return "; ".join(parts) or "-"


def render_table(manager: PluginManager) -> str:
    """The plugin table, then the recorded cause of each plugin that is not loaded."""
    header = ("name", "distribution", "version", "status", "provides")
    rows = [
        (p.name, p.distribution or "-", p.version or "-", p.status, _provides_text(p.provides))
        for p in manager.plugins.values()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    problems = [p for p in manager.plugins.values() if p.error]
    if problems:
        lines.append("")
        for p in problems:
            lines.append(f"{p.name} ({p.status}): {p.error}")
    return "\n".join(lines)


def list_plugins(manager: PluginManager, out: IO[str], *, as_json: bool) -> int:
    """Print the table (or JSON list); exit status 0."""
    if as_json:
        json.dump([p.as_dict() for p in manager.plugins.values()], out, indent=2)
        out.write("\n")
    else:
        out.write(render_table(manager) + "\n")
    return 0
