"""Where RETURNN keeps caches (compiled native ops, backend compile caches)."""

from __future__ import annotations

import os

CACHE_ENV = "RETURNN_CACHE_DIR"


def cache_dir(*parts: str) -> str:
    """``$RETURNN_CACHE_DIR/<parts>``, else ``$XDG_CACHE_HOME/returnn/<parts>`` (``~/.cache``); created."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "returnn")
    path = os.path.join(base, *parts)
    os.makedirs(path, exist_ok=True)
    return path
