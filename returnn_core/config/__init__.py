"""The RETURNN config: loaded from files in any of the three formats, overridden by ``++key value``."""

from __future__ import annotations

import os
import types
from collections.abc import Iterable, Iterator
from typing import Any

from returnn_core.config._literal import parse_literal
from returnn_core.config._parse import detect_format, exec_python, loaded_names, parse_json, parse_lines
from returnn_core.errors import ConfigError

__all__ = ["Config", "ConfigError", "parse_literal"]

_MISSING = object()
#: RETURNN's command-line options (its ``Config.parse_cmd_args``) that set a config key: option -> key
CMD_OPTIONS = {"-x": "task", "--task": "task", "-t": "train", "--train": "train", "--dev": "dev", "--eval": "eval",
               "-b": "batch_size", "--batch_size": "batch_size", "-r": "learning_rate",
               "--learning_rate": "learning_rate", "-n": "num_epochs", "--num_epochs": "num_epochs",
               "-L": "load", "--load": "load", "-l": "log", "--log": "log", "-u": "device", "--device": "device"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", "none", ""}


def _literal_or_text(text: str) -> Any:
    """A value given as text: a RETURNN literal if it parses as one, else the text itself."""
    try:
        return parse_literal(text)
    except ValueError:
        return text


class _ReadValues(dict):
    """The config's values, remembering which keys were looked up (for the unread-key warnings)."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        super().__init__(values or {})
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


class Config:
    """Key/value settings of one run, with RETURNN's typed getters.

    Values from JSON, Python configs and :meth:`set` are *typed*; values from line-based configs and ``++key value``
    for keys no file types are text (RETURNN's untyped values): see :meth:`is_typed`.
    """

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self._values = _ReadValues(dict(values or {}))
        self._untyped: set[str] = set()
        #: names the Python configs' own code reads: helper variables, never reported as unread keys
        self._helpers: set[str] = set()
        #: globals of the Python configs (one namespace for all, as RETURNN): later changes are seen by their functions
        self._namespace: dict[str, Any] | None = None
        self.files: list[str] = []

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, args: Iterable[str]) -> Config:
        """Build from a RETURNN command line: config files, ``++key value`` overrides and RETURNN's options that
        set one key (``--task search``, ``-x search``, ``--task=search``; see :data:`CMD_OPTIONS`).

        The overrides are set before the files load (so a Python config's own ``config.value(...)`` calls see
        them) and applied again afterwards, converted to the type the files gave each key.
        """
        files: list[str] = []
        overrides: list[tuple[str, str]] = []
        args = list(args)
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("++"):
                if i + 1 >= len(args):
                    raise ConfigError(f"command line: {arg} needs a value")
                value = args[i + 1]
                overrides.append((arg[2:], value[1:] if value.startswith("+-") else value))  # "+-0.1": RETURNN's escape
                i += 2
                continue
            if arg.startswith("-"):
                option, eq, value = arg.partition("=")
                if option not in CMD_OPTIONS:
                    raise ConfigError(f"command line: unknown option {arg!r} (overrides are written ++key value; "
                                      f"RETURNN's options: {', '.join(sorted(CMD_OPTIONS))})")
                if not eq:
                    if i + 1 >= len(args):
                        raise ConfigError(f"command line: {arg} needs a value")
                    value = args[i + 1]
                    i += 1
                overrides.append((CMD_OPTIONS[option], value))
                i += 1
                continue
            files.append(arg)
            i += 1
        config = cls()
        for key, text in overrides:
            config.override(key, text)
        for path in files:
            config.load_file(path)
        for key, text in overrides:
            config.override(key, text)
        return config

    def load_file(self, path: str) -> None:
        """Read one config file (format from its first characters or a ``.py`` name) into this config."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        self.files.append(path)
        fmt = detect_format(text, path)
        if fmt == "python":
            if self._namespace is None:
                self._namespace = dict(self._values)
            self._namespace["config"] = self
            self._helpers |= loaded_names(text)
            self._update(exec_python(text, path, self._namespace), typed=True)
        elif fmt == "json":
            self._update(parse_json(text, path), typed=True)
        else:
            for lineno, key, value in parse_lines(text, path):
                if key == "include":
                    target = os.path.join(os.path.dirname(path), value)
                    if os.path.abspath(target) in map(os.path.abspath, self.files):
                        raise ConfigError(f"{path}:{lineno}: include cycle through {value}")
                    self.load_file(target)
                else:
                    self._update({key: value}, typed=False)
        include = self._values.pop("include", None) if fmt != "lines" else None
        for inc in [include] if isinstance(include, str) else include or []:
            self.load_file(os.path.join(os.path.dirname(path), inc))

    def override(self, key: str, text: str) -> None:
        """Apply ``++key text``, converting ``text`` to the type of the existing value (RETURNN's ``add_line``)."""
        old = dict.get(self._values, key, _MISSING)  # not a read: the key is only being set
        try:
            if old is _MISSING or old is None:
                value = _literal_or_text(text)
            elif isinstance(old, str):
                value = text
            elif isinstance(old, bool):
                value = self._to_bool(key, text)
            elif isinstance(old, (int, float)):
                value = self._cast(key, text, type(old))
            else:
                # RETURNN evaluates the text and keeps whatever type it gives (++max_seq_length 0 over a dict is 0)
                value = parse_literal(text)
        except (ValueError, ConfigError) as exc:
            reason = f"expected {type(old).__name__}" if isinstance(exc, ConfigError) else exc
            raise ConfigError(
                f"command line: ++{key} {text!r} does not fit the config's {type(old).__name__} value: {reason}"
            ) from None
        self._update({key: value}, typed=old is not _MISSING and key not in self._untyped)

    def _update(self, values: dict[str, Any], *, typed: bool) -> None:
        for key, value in values.items():
            self._values[key] = value
            if typed:
                self._untyped.discard(key)
            else:
                self._untyped.add(key)
            if self._namespace is not None:
                self._namespace[key] = value

    # -- access -------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return key in self._values

    __contains__ = has

    def is_typed(self, key: str) -> bool:
        """Whether ``key`` holds a typed value (from JSON, Python or :meth:`set`), not text from a line or ``++``."""
        return key in self._values and key not in self._untyped

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to a Python value (typed)."""
        self._update({key: value}, typed=True)

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys to Python values (typed)."""
        self._update(dict(values), typed=True)

    def typed_value(self, key: str, default: Any = None, index: int | None = None) -> Any:
        """The raw value of ``key`` (any Python object; text for untyped values), or ``default``."""
        value = self._values.get(key, default)
        if index is None:
            return value
        return self._item(key, self._items(key, value), index)

    def is_of_type(self, key: str, types: type | tuple[type, ...]) -> bool:
        """Whether ``key`` is typed and its value an instance of ``types``."""
        return self.is_typed(key) and isinstance(self._values[key], types)

    def get_of_type(self, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
        """The value of ``key`` if :meth:`is_of_type`, else ``default``."""
        return self._values[key] if self.is_of_type(key, types) else default

    def is_true(self, key: str, default: bool = False) -> bool:
        """``bool(value)`` of a typed value, else :meth:`bool` of the text, else ``default``."""
        if self.is_typed(key):
            return bool(self._values[key])
        return bool(self.bool(key, default))

    def value(
        self, key: str, default: str | None = None, index: int | None = None, list_join_str: str = ","
    ) -> str | None:
        """The value of ``key`` as text (lists joined by ``list_join_str``), or item ``index`` of a list / text list."""
        v = self._values.get(key)
        if v is None:
            return default
        if index is not None:
            return str(self._item(key, self._items(key, v), index))
        if isinstance(v, (list, tuple)):
            return list_join_str.join(str(x) for x in v)
        return str(v)

    def int(self, key: str, default: int | None = None, index: int = 0) -> int | None:
        """The value of ``key`` as an int (item ``index`` of a list, as RETURNN)."""
        return self._convert(key, default, int, index)

    def float(self, key: str, default: float | None = None, index: int = 0) -> float | None:
        """The value of ``key`` as a float (item ``index`` of a list, as RETURNN)."""
        return self._convert(key, default, float, index)

    def bool(self, key: str, default: bool | None = None, index: int = 0) -> bool | None:
        """The value of ``key`` as a bool (``1/true/yes/on`` or ``0/false/no/off``)."""
        v = self._values.get(key)
        if v is None:
            return default
        v = self._item(key, self._items(key, v), index)
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return bool(v)
        if isinstance(v, str) and not v.strip() and key in self._untyped:
            return default  # RETURNN: an empty untyped value means "not set"
        return self._to_bool(key, str(v))

    def bool_or_other(self, key: str, default: Any = None, index: int = 0) -> Any:
        """A typed value as it is; text as a bool if it reads as one, else the text."""
        if self.is_typed(key):
            return self.typed_value(key, default, index=index)
        try:
            return self.bool(key, default, index=index)
        except ConfigError:
            return self.value(key, default, index=index)

    def int_pair(self, key: str, default: tuple[int, int] | None = None) -> tuple[int, int]:
        """``"a:b"`` as ``(a, b)``, a single number ``a`` as ``(a, a)``; ``default`` or ``(0, 0)`` if unset."""
        v = self._values.get(key)
        if v is None:
            return (0, 0) if default is None else default
        if isinstance(v, (list, tuple)) and len(v) == 2:
            return self._cast(key, v[0], int), self._cast(key, v[1], int)
        text = str(v)
        first, _, second = text.partition(":")
        return self._cast(key, first, int), self._cast(key, second if second else first, int)

    def list(self, key: str, default: list[Any] | None = None) -> list[Any]:
        """The value of ``key`` as a list (comma-separated text is split); ``default`` or ``[]`` if unset."""
        v = self._values.get(key)
        if v is None:
            return [] if default is None else default
        if isinstance(v, str) and v.strip().startswith("["):
            parsed = _literal_or_text(v)
            if isinstance(parsed, list):
                return parsed
        return self._items(key, v)

    def int_list(self, key: str, default: list[int] | None = None) -> list[int]:
        """The value of ``key`` as a list of ints."""
        return [self._cast(key, x, int) for x in self.list(key, default)]

    def float_list(self, key: str, default: list[float] | None = None) -> list[float]:
        """The value of ``key`` as a list of floats."""
        return [self._cast(key, x, float) for x in self.list(key, default)]

    def dict(self, key: str, default: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The value of ``key`` as a dict (text is parsed as a RETURNN literal)."""
        v = self._values.get(key)
        if v is None:
            return default
        if isinstance(v, str):
            v = _literal_or_text(v)
        if not isinstance(v, dict):
            raise ConfigError(f"config key {key!r}: expected a dict, got {v!r}")
        return v

    def keys(self) -> Iterator[str]:
        """All set keys."""
        return iter(list(self._values))

    def read_keys(self) -> set[str]:
        """Keys some code looked up so far (set or not)."""
        return set(self._values.read)

    def helper_names(self) -> set[str]:
        """Names that are the Python configs' own helpers: read by their code, or functions, classes, modules."""
        kinds = (types.FunctionType, types.ModuleType, type, types.BuiltinFunctionType)
        return self._helpers | {k for k, v in dict.items(self._values) if isinstance(v, kinds)}

    # -- helpers ------------------------------------------------------------------------------
    def _items(self, key: str, v: Any) -> list[Any]:
        """A value as RETURNN's list of items: a list as is, untyped text split at commas, anything else alone."""
        if isinstance(v, (list, tuple)):
            return list(v)
        if isinstance(v, str) and key in self._untyped and "," in v:
            return [x.strip() for x in v.split(",") if x.strip()]
        return [v]

    @staticmethod
    def _item(key: str, items: list[Any], index: int) -> Any:
        try:
            return items[index]
        except IndexError:
            raise ConfigError(f"config key {key!r}: no item {index} in {items!r}") from None

    def _convert(self, key: str, default: Any, typ: type, index: int) -> Any:
        v = self._values.get(key)
        if v is None:
            return default
        return self._cast(key, self._item(key, self._items(key, v), index), typ)

    @staticmethod
    def _cast(key: str, v: Any, typ: type) -> Any:
        if not isinstance(v, (int, float, str)):
            raise ConfigError(f"config key {key!r}: expected {typ.__name__}, got {v!r}")
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
