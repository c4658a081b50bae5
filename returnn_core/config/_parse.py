"""Parsers for the three RETURNN config formats: Python (``#!`` or ``.py``), JSON (``{``) and line-based ``key value``."""

from __future__ import annotations

import ast
import json
import os
import tokenize
import traceback
import types
from typing import Any

from returnn_core.compat import legacy_modules
from returnn_core.config.python2_print import is_python2_print_error, rewrite_print_statements
from returnn_core.errors import ConfigError

_OPENING = {"{": "}", "[": "]", "(": ")"}


def detect_format(text: str, path: str = "") -> str:
    """``"python"``, ``"json"`` or ``"lines"`` from the first non-blank characters (or a ``.py`` name), as RETURNN."""
    stripped = text.lstrip()
    if stripped.startswith("#!") or path.endswith(".py"):
        return "python"
    if stripped.startswith("{"):
        return "json"
    return "lines"


def _bound_names(tree: ast.Module) -> set[str]:
    """Names the module-level code of ``tree`` binds (assignments, defs, imports), not those inside functions."""
    names: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        stack.extend(ast.iter_child_nodes(node))
    return names


def loaded_names(text: str) -> set[str]:
    """Names a Python config's code reads anywhere (its helper variables), for the unread-key warnings."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def exec_python(text: str, path: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute a Python config in ``namespace`` (its globals); return the public names it set."""
    try:
        tree = ast.parse(text, path)
    except SyntaxError as exc:
        if not is_python2_print_error(exc):
            raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
        try:  # a config of RETURNN's Python 2 days: its print statements become calls
            tree = ast.parse(rewrite_print_statements(text), path)
        except (SyntaxError, tokenize.TokenError):
            raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    code = compile(tree, path, "exec")
    before = dict(namespace)
    bound = _bound_names(tree)
    namespace.update({"__file__": os.path.abspath(path), "__name__": "__returnn_config__"})
    try:
        with legacy_modules():  # `from Util import get_login_username`, as configs of RETURNN 1.0 do
            exec(code, namespace)  # noqa: S102 - a Python config is code the user asked us to run
    except Exception as exc:  # noqa: BLE001 - report any error in the config with its line
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        line = frames[-1].lineno if frames else "?"
        raise ConfigError(f"{path}:{line}: {type(exc).__name__}: {exc}") from None
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k != "config"
        and not isinstance(v, types.ModuleType)
        and (k in bound or k not in before or v is not before[k])
    }


def strip_json_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments outside strings blanked out (newlines kept for line numbers)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_json(text: str, path: str) -> dict[str, Any]:
    """Parse a JSON config object; ``//`` and ``/* */`` comments are allowed, as RETURNN's ``load_json``."""
    try:
        value = json.loads(strip_json_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:1: a JSON config must be an object")
    return value


def _open_brackets(text: str, stack: list[str]) -> None:
    """Push/pop the brackets of ``text`` (outside quotes) on ``stack``, which holds the closers still expected."""
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in _OPENING:
            stack.append(_OPENING[c])
        elif stack and c == stack[-1]:
            stack.pop()
        i += 1


def parse_lines(text: str, path: str) -> list[tuple[int, str, str]]:
    """Split a line-based config into ``(line number, key, raw value)``; ``#`` starts a comment.

    A value that opens a bracket (``network {...}``) continues over the following lines until it is closed.
    """
    out: list[tuple[int, str, str]] = []
    pending: tuple[int, str, list[str]] | None = None
    stack: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if pending is not None:
            if line:
                pending[2].append(line)
                _open_brackets(line, stack)
            if not stack:
                out.append((pending[0], pending[1], "\n".join(pending[2])))
                pending = None
            continue
        if not line:
            continue
        key, _, value = line.partition(" ")
        key, value = key.strip(), value.strip()
        if not key.replace("_", "").replace(".", "").replace("-", "").isalnum():
            raise ConfigError(f"{path}:{lineno}: expected 'key value', got {raw.strip()!r}")
        _open_brackets(value, stack)
        if stack:
            pending = (lineno, key, [value])
        else:
            out.append((lineno, key, value))
    if pending is not None:
        raise ConfigError(
            f"{path}:{pending[0]}: the value of {pending[1]!r} is never closed (missing {''.join(reversed(stack))!r})"
        )
    return out
