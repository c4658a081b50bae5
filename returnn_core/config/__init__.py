"""The RETURNN config: loaded from files in any of the three formats, overridden by ``++key value``."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator
from typing import Any

from returnn_core.config._parse import detect_format, parse_json, parse_lines, parse_python
from returnn_core.errors import ConfigError

__all__ = ["Config", "ConfigError"]

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", "none", ""}


def _literal(text: str) -> Any:
    """A value given as text: a Python literal if it parses as one, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class Config:
    """Key/value settings of one run, with typed getters."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self.files: list[str] = []

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, args: Iterable[str]) -> Config:
        """Build from a RETURNN command line: config files, then ``++key value`` overrides."""
        config = cls()
        args = list(args)
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("++"):
                if i + 1 >= len(args):
                    raise ConfigError(f"command line: {arg} needs a value")
                config.override(arg[2:], args[i + 1])
                i += 2
                continue
            if arg.startswith("-"):
                raise ConfigError(f"command line: unknown option {arg!r} (overrides are written ++key value)")
            config.load_file(arg)
            i += 1
        return config

    def load_file(self, path: str) -> None:
        """Read one config file (format detected from its first characters) into this config."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        self.files.append(path)
        fmt = detect_format(text)
        if fmt == "python":
            self._values.update(parse_python(text, path))
        elif fmt == "json":
            self._values.update(parse_json(text, path))
        else:
            for lineno, key, value in parse_lines(text, path):
                if key == "include":
                    target = os.path.join(os.path.dirname(path), value)
                    if os.path.abspath(target) in map(os.path.abspath, self.files):
                        raise ConfigError(f"{path}:{lineno}: include cycle through {value}")
                    self.load_file(target)
                else:
                    self._values[key] = value
        include = self._values.pop("include", None) if fmt != "lines" else None
        for inc in [include] if isinstance(include, str) else include or []:
            self.load_file(os.path.join(os.path.dirname(path), inc))

    def override(self, key: str, text: str) -> None:
        """Apply ``++key text``, converting ``text`` to the type of the existing value."""
        old = self._values.get(key, _MISSING)
        try:
            if old is _MISSING or old is None or isinstance(old, str):
                value = _literal(text) if old is _MISSING or old is None else text
            elif isinstance(old, bool):
                value = self._to_bool(key, text)
            elif isinstance(old, int):
                value = int(text)
            elif isinstance(old, float):
                value = float(text)
            else:
                value = ast.literal_eval(text)
                if not isinstance(value, type(old)):
                    raise ValueError(f"expected {type(old).__name__}")
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(
                f"command line: ++{key} {text!r} does not fit the config's {type(old).__name__} value: {exc}"
            ) from None
        self._values[key] = value

    # -- access -------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return key in self._values

    __contains__ = has

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to a Python value."""
        self._values[key] = value

    def typed_value(self, key: str, default: Any = None) -> Any:
        """The raw value of ``key`` (any Python object), or ``default``."""
        return self._values.get(key, default)

    def value(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` as text (lists joined by commas), or ``default``."""
        if key not in self._values or self._values[key] is None:
            return default
        v = self._values[key]
        if isinstance(v, (list, tuple)):
            return ",".join(str(x) for x in v)
        return str(v)

    def int(self, key: str, default: int | None = None) -> int | None:
        """The value of ``key`` as an int."""
        return self._convert(key, default, int)

    def float(self, key: str, default: float | None = None) -> float | None:
        """The value of ``key`` as a float."""
        return self._convert(key, default, float)

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        """The value of ``key`` as a bool (``1/true/yes/on`` or ``0/false/no/off``)."""
        v = self._values.get(key, _MISSING)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return bool(v)
        return self._to_bool(key, str(v))

    def list(self, key: str, default: list[Any] | None = None) -> list[Any] | None:
        """The value of ``key`` as a list (comma-separated text is split)."""
        v = self._values.get(key, _MISSING)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, (list, tuple)):
            return list(v)
        if isinstance(v, str):
            parsed = _literal(v) if v.startswith("[") else None
            if isinstance(parsed, list):
                return parsed
            return [x.strip() for x in v.split(",") if x.strip()]
        return [v]

    def dict(self, key: str, default: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The value of ``key`` as a dict (text is parsed as a Python literal)."""
        v = self._values.get(key, _MISSING)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, str):
            v = _literal(v)
        if not isinstance(v, dict):
            raise ConfigError(f"config key {key!r}: expected a dict, got {v!r}")
        return v

    def keys(self) -> Iterator[str]:
        """All set keys."""
        return iter(list(self._values))

    def _convert(self, key: str, default: Any, typ: type) -> Any:
        v = self._values.get(key, _MISSING)
        if v is _MISSING or v is None:
            return default
        try:
            return typ(v)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected {typ.__name__}, got {v!r}") from None

    @staticmethod
    def _to_bool(key: str, text: str) -> bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"config key {key!r}: expected a bool, got {text!r}")
