"""Build a dataset from a config value: a ``{"class": ...}`` dict, one of RETURNN's dataset strings, or a callable.

The strings, as RETURNN's ``init_dataset_via_str`` reads them: ``"{...}"`` (a dict literal),
``"sprint:CONFIG"`` (an ``ExternSprintDataset`` running ``sprint_trainer_exec_path`` of the config),
``"Class:key=value,..."``, ``"Module::Class(key=value, ...)"`` and otherwise ``"a.hdf,b.hdf"`` (HDF files).
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Mapping
from typing import Any

from returnn_core.datasets.dataset import Dataset
from returnn_core.errors import ConfigError, DatasetError


def init_dataset(
    spec: Any, *, defaults: Mapping[str, Any] | None = None, manager: Any = None, config: Any = None
) -> Dataset:
    """Construct the dataset ``spec`` describes, resolving ``class`` through the dataset registry.

    ``config`` is only needed for ``"sprint:..."`` strings (for ``sprint_trainer_exec_path``).
    """
    if isinstance(spec, Dataset):
        return spec
    if callable(spec) and not isinstance(spec, type):
        return init_dataset(spec(), defaults=defaults, manager=manager, config=config)
    if isinstance(spec, str):
        spec = parse_dataset_str(spec, config=config)
        if config is not None and config.has("window") and "window" not in spec:
            spec["window"] = config.int("window", 1)  # RETURNN: a dataset string takes the config's window
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
    """Whether ``cls`` or a base class it passes ``**kwargs`` on to names the option ``key``."""
    for klass in getattr(cls, "__mro__", (cls,)):
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if key in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


def parse_dataset_str(text: str, *, config: Any = None) -> dict[str, Any]:
    """One of RETURNN's dataset strings -> the ``{"class": ...}`` dict it stands for."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(f"dataset {text!r}: not a dict literal: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"dataset {text!r}: expected a dict literal")
        return value
    if text.startswith("sprint:"):
        exec_path = config.value("sprint_trainer_exec_path", None) if config is not None else None
        if not exec_path:
            raise ConfigError(
                f"dataset {text!r}: a 'sprint:...' dataset runs the Sprint trainer; set sprint_trainer_exec_path "
                "in the config (or use {'class': 'ExternSprintDataset', 'sprintTrainerExecPath': ...})"
            )
        return {"class": "ExternSprintDataset", "sprintConfigStr": text[len("sprint:") :], "sprintTrainerExecPath": exec_path}
    if "::" in text:
        module, _, rest = text.partition("::")
        name, paren, args = rest.partition("(")
        if not (module.isidentifier() and name.isidentifier() and paren and args.endswith(")")):
            raise ConfigError(f"dataset {text!r}: expected 'Module::Class(key=value, ...)'")
        return {"class": name, **_kwargs(text, args[:-1])}
    if ":" in text:
        name, _, args = text.partition(":")
        if not name.isidentifier():
            raise ConfigError(f"dataset {text!r}: expected 'Class:key=value,...' with a dataset class name before ':'")
        return {"class": name, **_kwargs(text, args)}
    files = [f for f in text.split(",") if f]
    if not files:
        raise ConfigError("dataset '': give HDF files 'a.hdf,b.hdf', 'Class:key=value,...' or a dict")
    return {"class": "HDFDataset", "files": files}


def _kwargs(text: str, args: str) -> dict[str, Any]:
    """``key=value, ...`` with literal values (and ``inf``/``float('inf')``), as RETURNN's ``dict(...)``."""
    try:
        call = ast.parse(f"dict({args})", mode="eval").body
    except SyntaxError:
        raise ConfigError(f"dataset {text!r}: cannot read the options {args!r}; write key=value, ...") from None
    assert isinstance(call, ast.Call)
    if call.args or any(kw.arg is None for kw in call.keywords):
        raise ConfigError(f"dataset {text!r}: options must be key=value pairs")
    return {kw.arg: _literal(text, kw.arg, kw.value) for kw in call.keywords if kw.arg}


def _literal(text: str, key: str, node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    if (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
        and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    ):
        try:
            return float(node.args[0].value)
        except ValueError:
            pass
    raise ConfigError(f"dataset {text!r}: option {key!r} must be a literal (number, string, list, dict), got {ast.unparse(node)!r}")
