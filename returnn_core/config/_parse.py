"""Parsers for the three RETURNN config formats: Python (``#!``), JSON (``{``) and line-based ``key value``."""

from __future__ import annotations

import json
import os
import traceback
import types
from typing import Any

from returnn_core.errors import ConfigError


def detect_format(text: str) -> str:
    """``"python"``, ``"json"`` or ``"lines"`` from the first non-blank characters, as RETURNN does."""
    stripped = text.lstrip()
    if stripped.startswith("#!"):
        return "python"
    if stripped.startswith("{"):
        return "json"
    return "lines"


def parse_python(text: str, path: str) -> dict[str, Any]:
    """Execute a Python config and collect its public names (modules are skipped)."""
    try:
        code = compile(text, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    namespace: dict[str, Any] = {"__file__": os.path.abspath(path), "__name__": "__returnn_config__"}
    try:
        exec(code, namespace)  # noqa: S102 - a Python config is code the user asked us to run
    except Exception as exc:  # noqa: BLE001 - report any error in the config with its line
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        line = frames[-1].lineno if frames else "?"
        raise ConfigError(f"{path}:{line}: {type(exc).__name__}: {exc}") from None
    return {
        k: v for k, v in namespace.items() if not k.startswith("_") and not isinstance(v, types.ModuleType)
    }


def parse_json(text: str, path: str) -> dict[str, Any]:
    """Parse a JSON config object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:1: a JSON config must be an object")
    return value


def parse_lines(text: str, path: str) -> list[tuple[int, str, str]]:
    """Split a line-based config into ``(line number, key, raw value)``; ``#`` starts a comment."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        key, _, value = line.partition(" ")
        key, value = key.strip(), value.strip()
        if not key.replace("_", "").replace(".", "").replace("-", "").isalnum():
            raise ConfigError(f"{path}:{lineno}: expected 'key value', got {raw.strip()!r}")
        out.append((lineno, key, value))
    return out
