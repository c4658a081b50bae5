"""Build a dataset from a config value: ``{"class": ...}`` dict, ``"a.hdf,b.hdf"`` string or callable."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from typing import Any

from returnn_core.datasets.dataset import Dataset
from returnn_core.errors import ConfigError, DatasetError


def init_dataset(spec: Any, *, defaults: Mapping[str, Any] | None = None, manager: Any = None) -> Dataset:
    """Construct the dataset ``spec`` describes, resolving ``class`` through the dataset registry."""
    if isinstance(spec, Dataset):
        return spec
    if callable(spec) and not isinstance(spec, type):
        return init_dataset(spec(), defaults=defaults, manager=manager)
    if isinstance(spec, str):
        spec = _from_string(spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"dataset: expected a dict with 'class', a file list or a callable, got {spec!r}")
    opts = dict(spec)
    class_name = opts.pop("class", None)
    if not class_name:
        raise ConfigError(f"dataset {dict(spec)!r} has no 'class'")
    if manager is None:
        from returnn_core.plugin import get_plugin_manager

        manager = get_plugin_manager()
    cls = manager.datasets.get(class_name) if isinstance(class_name, str) else class_name
    for key, value in (defaults or {}).items():
        if key not in opts and _accepts(cls, key):
            opts[key] = value
    try:
        return cls(**opts)
    except TypeError as exc:
        raise ConfigError(f"dataset {class_name}: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"dataset {class_name}: {exc}") from None


def _accepts(cls: type, key: str) -> bool:
    params = inspect.signature(cls).parameters
    return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _from_string(text: str) -> Mapping[str, Any]:
    text = text.strip()
    if text.startswith("{"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(f"dataset {text!r}: not a dict literal: {exc}") from None
        return value
    if text.startswith("sprint:"):
        return {"class": "ExternSprintDataset", "sprintConfigStr": text[len("sprint:") :]}
    files = [f for f in text.split(",") if f]
    if files and all(f.endswith((".hdf", ".h5")) for f in files):
        return {"class": "HDFDataset", "files": files}
    raise ConfigError(f"dataset {text!r}: expected 'a.hdf,b.hdf', 'sprint:...' or a dict")
