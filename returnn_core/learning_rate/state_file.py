"""The ``learning_rate_file``: RETURNN's ``{epoch: EpochData(learningRate=..., error={...}), ...}`` text."""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, field

from returnn_core.atomic_write import atomic_write_text
from returnn_core.errors import ConfigError


@dataclass
class EpochData:
    """Learning rate used in an epoch and the scores measured there."""

    learning_rate: float | None
    error: dict[str, float] = field(default_factory=dict)


def _num(v: float) -> str:
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    return repr(float(v))


def format_state(data: dict[int, EpochData]) -> str:
    """Serialise in RETURNN's layout (readable by RETURNN's own parser)."""
    lines = ["{"]
    for epoch in sorted(data):
        d = data[epoch]
        lr = "None" if d.learning_rate is None else _num(d.learning_rate)
        lines.append(f"{epoch}: EpochData(learningRate={lr}, error={{")
        for key in sorted(d.error):
            lines.append(f"{key!r}: {_num(d.error[key])},")
        lines.append("}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _value(node: ast.AST, path: str) -> float | None:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (int, float))):
        return None if node.value is None else float(node.value)
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)  # RETURNN writes repr(float): a diverged epoch's score is a bare nan or inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, path)
        return None if inner is None else -inner
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return float(node.args[0].value)
    raise ConfigError(f"{path}:{getattr(node, 'lineno', '?')}: expected a number in the learning-rate file")


def parse_state(text: str, path: str) -> dict[int, EpochData]:
    """Parse the state file without executing it; errors name the file and line."""
    try:
        tree = ast.parse(text.strip() or "{}", path, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: learning-rate file is corrupt ({exc.msg}); fix or delete it to start fresh"
        ) from None
    if not isinstance(tree.body, ast.Dict):
        raise ConfigError(f"{path}: learning-rate file must hold a dict of epochs")
    out: dict[int, EpochData] = {}
    for k, v in zip(tree.body.keys, tree.body.values):
        if not (isinstance(k, ast.Constant) and isinstance(k.value, int)):
            raise ConfigError(f"{path}:{getattr(k, 'lineno', '?')}: epoch keys must be integers")
        if not (isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "EpochData"):
            raise ConfigError(f"{path}:{v.lineno}: expected EpochData(...) for epoch {k.value}")
        kw = {a.arg: a.value for a in v.keywords}
        lr_node = kw.get("learningRate", kw.get("learning_rate", v.args[0] if v.args else None))
        lr = _value(lr_node, path) if lr_node is not None else None
        errors: dict[str, float] = {}
        err_node = kw.get("error", v.args[1] if len(v.args) > 1 else None)
        if err_node is not None and not isinstance(err_node, ast.Dict):
            # files of RETURNN's first versions hold one number per epoch, which it reads as this key
            score = _value(err_node, path)
            if score is not None:
                errors["old_format_score"] = score
        elif err_node is not None:
            for ek, ev in zip(err_node.keys, err_node.values):
                if not (isinstance(ek, ast.Constant) and isinstance(ek.value, str)):
                    raise ConfigError(f"{path}:{ev.lineno}: error keys must be strings")
                val = _value(ev, path)
                if val is not None:
                    errors[ek.value] = val
        out[k.value] = EpochData(lr, errors)
    return out


def load_state(path: str) -> dict[int, EpochData]:
    """Read the state file; a missing file is an empty state."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return parse_state(f.read(), path)


def save_state(path: str, data: dict[int, EpochData]) -> None:
    """Write the state file atomically (a crash leaves the old file intact)."""
    atomic_write_text(path, format_state(data))
