"""``returnn --list-plugins``: what is installed, whether it loaded, what it provides (no backend imported)."""

from __future__ import annotations

import json
import shutil
import textwrap
from typing import IO

from returnn_core.plugin import PluginManager

#: a kind with more names than this shows only their number unless ``-v`` asks for all
NAMES_SHOWN = 3
#: the provides column never gets narrower than this, however narrow the terminal
MIN_PROVIDES_WIDTH = 30
#: indent of the names a row lists below itself when one name is too long for the provides column
BLOCK_INDENT = 4


def _provides_items(provides: dict[str, list[str]], verbose: bool) -> list[str]:
    items = []
    for kind, names in provides.items():
        if verbose or len(names) <= NAMES_SHOWN:
            items.append(f"{kind}: {', '.join(names)}")
        else:
            items.append(f"{kind}: {len(names)}")
    return items


def _wrap(items: list[str], width: int) -> list[str]:
    """``kind: names`` items wrapped to ``width``, continuation lines indented; names are never split."""
    lines: list[str] = []
    for item in items:
        lines += textwrap.wrap(item, width, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)
    return lines


def render_table(manager: PluginManager, *, width: int | None = None, verbose: bool = False) -> str:
    """The plugin table fitted to ``width`` columns (default: the terminal's), then each problem plugin's cause.

    The provides column wraps; without ``verbose`` a kind with many names shows their number (``-v``: all names).
    """
    width = width or shutil.get_terminal_size(fallback=(100, 24)).columns
    header = ("name", "distribution", "version", "status")
    plugins = list(manager.plugins.values())
    rows = [(p.name, p.distribution or "-", p.version or "-", p.status) for p in plugins]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    indent = sum(widths) + 2 * len(widths)
    provides_width = max(width - indent, MIN_PROVIDES_WIDTH)
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)) + "  provides"]
    for row, plugin in zip(rows, plugins):
        items = _provides_items(plugin.provides, verbose) or ["-"]
        first = "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  "
        longest = max(len(word) for item in items for word in item.split())
        if longest + 2 > provides_width and width - BLOCK_INDENT > provides_width:
            # a name would not fit the column: the names go below the row, never split inside a name
            lines.append(first.rstrip())
            lines += [" " * BLOCK_INDENT + line for line in _wrap(items, width - BLOCK_INDENT)]
            continue
        wrapped = _wrap(items, provides_width)
        lines.append(first + wrapped[0])
        lines += [" " * indent + more for more in wrapped[1:]]
    problems = [p for p in plugins if p.error]
    notes = [(p, p.slow_import_note) for p in plugins if p.slow_import_note]
    conflicts = manager.conflicts()
    if problems or notes or conflicts:
        lines.append("")
        for p in problems:
            lines += textwrap.wrap(f"{p.name} ({p.status}): {p.error}", width, subsequent_indent="    ")
        for p, note in notes:
            lines += textwrap.wrap(f"{p.name} (slow): {note}", width, subsequent_indent="    ")
        for line in conflicts:
            lines += textwrap.wrap(f"conflict: {line}", width, subsequent_indent="    ")
    return "\n".join(line.rstrip() for line in lines)


def list_plugins(manager: PluginManager, out: IO[str], *, as_json: bool, verbose: bool = False) -> int:
    """Print the table (or JSON list, which always holds every name); exit status 0."""
    if as_json:
        conflicts = manager.conflicts()
        json.dump([{**p.as_dict(), "conflicts": [c for c in conflicts if f" {p.label} " in f"{c} "]}
                   for p in manager.plugins.values()], out, indent=2)
        out.write("\n")
    else:
        out.write(render_table(manager, verbose=verbose) + "\n")
    return 0
