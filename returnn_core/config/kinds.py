"""Value kinds of config keys: each checks one value and says in words what it allows."""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from returnn_core.config._literal import parse_literal


class Invalid(ValueError):
    """A value does not fit its kind; the message says what is allowed."""


def literal(value: Any) -> Any:
    """Text from a line-based config or ``++`` as the RETURNN literal it spells, else the text."""
    if isinstance(value, str):
        try:
            return parse_literal(value.strip())
        except ValueError:
            return value
    return value


class Kind:
    """Base: ``check`` raises :class:`Invalid` (or returns nothing); ``allowed`` is the text for docs and errors."""

    allowed = "any value"

    def check(self, value: Any) -> None:
        """Raise :class:`Invalid` if ``value`` does not fit."""


class AnyValue(Kind):
    """Anything (checked where it is used)."""

    def __init__(self, allowed: str = "any value") -> None:
        self.allowed = allowed


class Number(Kind):
    """An int or float within bounds; ``special`` values are allowed besides the range."""

    def __init__(self, typ: type, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 special: Mapping[int, str] | None = None) -> None:
        self.typ, self.lo, self.hi, self.lo_open, self.special = typ, lo, hi, lo_open, dict(special or {})
        word = "an int" if typ is int else "a number"
        if lo is not None and hi is not None:
            bound = f" from {lo:g} to {hi:g}"
        elif lo is not None:
            bound = f" {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            bound = f" <= {hi:g}"
        else:
            bound = ""
        extra = "".join(f", or {k} ({v})" for k, v in self.special.items())
        self.allowed = f"{word}{bound}{extra}"

    def convert(self, value: Any) -> float:
        """``value`` as a number of this kind, or :class:`Invalid`."""
        v = literal(value)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(self.allowed)
        if self.typ is int and (isinstance(v, float) and not v.is_integer()):
            raise Invalid(self.allowed)
        if not math.isfinite(v):
            raise Invalid(self.allowed)
        return v

    def check(self, value: Any) -> None:
        v = self.convert(value)
        if v in self.special:
            return
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            raise Invalid(self.allowed)
        if self.hi is not None and v > self.hi:
            raise Invalid(self.allowed)


class Bool(Kind):
    """True/False (text: 1/0, true/false, yes/no, on/off)."""

    allowed = "a bool (True/False, 1/0, yes/no, on/off)"
    _TEXT = {"1", "0", "true", "false", "yes", "no", "on", "off", "none", ""}

    def check(self, value: Any) -> None:
        if isinstance(value, (bool, int)) and value in (0, 1):
            return
        if value is None or (isinstance(value, str) and value.strip().lower() in self._TEXT):
            return
        raise Invalid(self.allowed)


class Text(Kind):
    """A string."""

    def __init__(self, allowed: str = "a string") -> None:
        self.allowed = allowed

    def check(self, value: Any) -> None:
        if not isinstance(value, str):
            raise Invalid(self.allowed)


class Choice(Kind):
    """One of fixed names, or of the names a registry holds (looked up at check time)."""

    def __init__(self, values: tuple[str, ...] = (), *, names: Callable[[], list[str]] | None = None,
                 what: str = "") -> None:
        self.values, self.names = values, names
        self.allowed = f"one of {', '.join(values)}" if values else f"a registered {what} name"

    def known(self) -> list[str]:
        """The allowed names now."""
        return list(self.values) if self.names is None else self.names()

    def check(self, value: Any) -> None:
        known = self.known()
        if not isinstance(value, str) or value not in known:
            raise Invalid(f"one of {', '.join(known)}")


class Pattern(Kind):
    """A string matching a regular expression."""

    def __init__(self, regex: str, allowed: str) -> None:
        self.regex, self.allowed = re.compile(regex), allowed

    def check(self, value: Any) -> None:
        if not isinstance(value, str) or not self.regex.fullmatch(value.strip()):
            raise Invalid(self.allowed)


class WritablePath(Kind):
    """A file path (or prefix) whose folder exists and is writable, or can be created."""

    allowed = "a path in a writable folder"

    def check(self, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise Invalid("a non-empty path")
        folder = os.path.dirname(os.path.abspath(value))
        probe = folder
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe):
            raise Invalid(f"a path in a folder; {probe} is a file")
        try:  # a real probe: os.access says yes to root on read-only and virtual file systems
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as exc:
            where = "its folder" if probe == folder else f"{folder} cannot be created: {probe}"
            raise Invalid(f"a path in a writable folder ({where} is not writable: {exc.strerror or exc})") from None


class Dims(Kind):
    """``num_outputs``: a dim, or ``{key: dim or [dim, ndim]}``."""

    allowed = "a dim >= 1, or a non-empty dict {key: dim or [dim, ndim]} (dim >= 1, ndim 1 sparse, 2 dense)"
    _dim = Number(int, lo=1)

    def check(self, value: Any) -> None:
        try:
            self._check(literal(value))
        except Invalid:
            raise Invalid(self.allowed) from None

    def _check(self, v: Any) -> None:
        if not isinstance(v, Mapping):
            self._dim.check(v)
            return
        if not v:
            raise Invalid(self.allowed)
        for item in v.values():
            if isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise Invalid(self.allowed)
                self._dim.check(item[0])
                Number(int, lo=0, hi=3).check(item[1])
            elif isinstance(item, Mapping):
                continue  # an extern_data-style spec: checked by DataSpec
            else:
                self._dim.check(item)


class Container(Kind):
    """A dict or list (text is parsed as a literal), each item checked by ``item``."""

    def __init__(self, types: tuple[type, ...], allowed: str, item: Kind | None = None) -> None:
        self.types, self.allowed, self.item = types, allowed, item

    def check(self, value: Any) -> None:
        v = literal(value)
        if not isinstance(v, self.types):
            raise Invalid(self.allowed)
        if self.item is not None:
            for item in v.values() if isinstance(v, Mapping) else v:
                try:
                    self.item.check(item)
                except Invalid:
                    raise Invalid(self.allowed) from None


class OneOf(Kind):
    """Fits if any of ``kinds`` fits."""

    def __init__(self, *kinds: Kind, allowed: str | None = None) -> None:
        self.kinds = kinds
        self.allowed = allowed or " or ".join(k.allowed for k in kinds)

    def check(self, value: Any) -> None:
        for kind in self.kinds:
            try:
                kind.check(value)
                return
            except Invalid:
                continue
        raise Invalid(self.allowed)
