"""Fuzzing the ``returnn`` command over the three config formats and the validated keys (hypothesis, bounded).

Every run must end either with exit 0 having trained (a checkpoint exists), or with exactly one
``returnn: error:`` line and no traceback. An oracle written here, independently of the schema, says which
mutated values are wrong; a wrong value that trains counts as wrongly accepted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from typing import Any

import pytest
from toy_plugin import ToyPlugin

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from returnn_core.cli import main  # noqa: E402
from returnn_core.config import parse_literal  # noqa: E402
from returnn_core.engine import completed_epochs  # noqa: E402
from returnn_core.plugin import PluginManager, set_plugin_manager  # noqa: E402

BASE: dict[str, Any] = {
    "backend": "toy",
    "task": "train",
    "train": {"class": "ToyDataset", "num_seqs": 6, "seq_len": 4},
    "network": {"output": {"class": "softmax", "loss": "ce", "n_out": 2}},
    "num_epochs": 1,
    "batch_size": 20,
    "max_seqs": 3,
    "learning_rate": 0.5,
    "log_verbosity": 2,
}

ODD = [0, -1, 1, 2, 2.5, -0.5, 0.0, 1e-3, math.nan, math.inf, True, False, None, "many", "", "0", "1", "3", "5:3",
       "0:x", "train", "eval", "forward", "search", "cpu", "gpu", "xyz", [], [1, 2], {}, {"classes": 3},
       {"classes": [2, 1]}, {"classes": [2, 7]}, "newbob", "constant", "txt"]
KEYS = ["num_epochs", "batch_size", "max_seqs", "learning_rate", "log_verbosity", "task", "save_interval",
        "num_outputs", "chunking", "max_seq_length", "window", "learning_rate_control", "min_learning_rate",
        "newbob_learning_rate_decay", "stop_on_nonfinite_train_score", "device", "num_inputs", "model",
        "learning_rate_file", "train", "n_out", "log_interval", "gradient_clip", "load_epoch"]
DATASET_OPTIONS = ["num_seqs", "seq_len", "partition_epoch", "bogus", "seq_ordering", "fixed_random_seed"]

STATS = {"configs": 0, "tracebacks": 0, "wrongly_accepted": 0}


def _number(v: Any) -> Any:
    """A value as the config reads it: text spelling a number is that number."""
    if isinstance(v, str):
        try:
            return parse_literal(v)
        except ValueError:
            return v
    return v


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: which values must be refused (None: the key is unset, RETURNN's default applies)
ORACLE = {
    "num_epochs": lambda v: _int(v) and v >= 1,
    "batch_size": lambda v: _int(v) and v >= 1,
    "max_seqs": lambda v: _int(v) and (v == -1 or v >= 1),
    "learning_rate": lambda v: _num(v) and v > 0,
    "log_verbosity": lambda v: _int(v) and 0 <= v <= 5,
    "save_interval": lambda v: _int(v) and v >= 1,
    "task": lambda v: v == "train",  # the other tasks need a checkpoint or an output file this config lacks
    "num_outputs": lambda v: v == 2 or v in ({"classes": 2}, {"classes": [2, 1]}),
    "num_inputs": lambda v: v == 2,
    "window": lambda v: _int(v) and v >= 1,
    "learning_rate_control": lambda v: v in ("newbob", "constant"),
    "min_learning_rate": lambda v: _num(v) and v >= 0,
    "newbob_learning_rate_decay": lambda v: _num(v) and v > 0,
    "stop_on_nonfinite_train_score": lambda v: v in (True, False, 0, 1, "0", "1", "", None),
    "device": lambda v: v in ("cpu", "gpu"),
    "log_interval": lambda v: _num(v) and v >= 0,
    "gradient_clip": lambda v: _num(v) and v >= 0,
    "load_epoch": lambda v: False,  # a fresh model has no checkpoint to load
    "n_out": lambda v: v == 2,
    "dataset:num_seqs": lambda v: _int(v) and v >= 1,
    "dataset:seq_len": lambda v: _int(v) and v >= 1,
    "dataset:partition_epoch": lambda v: _int(v) and v >= 1,
    "dataset:bogus": lambda v: False,
}


def _render(values: dict[str, Any], fmt: str) -> str:
    if fmt == "python":
        return "#!python\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    if fmt == "json":
        return json.dumps(values)
    return "".join(f"{k} {v if isinstance(v, str) else repr(v)}\n" for k, v in values.items() if v != "")


@st.composite
def mutated_configs(draw):
    fmt = draw(st.sampled_from(["python", "json", "lines", "++"]))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    mutations = {}
    for key in keys:
        if key == "train":
            option = draw(st.sampled_from(DATASET_OPTIONS))
            mutations[f"dataset:{option}"] = draw(st.sampled_from(ODD))
        elif key in ("model", "learning_rate_file"):
            mutations[key] = draw(st.sampled_from(["<tmp>", "/proc/no/such/file", "", "<file>/sub/x"]))
        else:
            mutations[key] = draw(st.sampled_from(ODD))
    return fmt, mutations


def _build(tmp: str, mutations: dict[str, Any]) -> tuple[dict[str, Any], str]:
    values = json.loads(json.dumps(BASE))
    values["model"] = os.path.join(tmp, "out", "model")
    values["learning_rate_file"] = os.path.join(tmp, "out", "lr")
    blocker = os.path.join(tmp, "blocker")
    open(blocker, "w").close()
    for key, v in mutations.items():
        if key.startswith("dataset:"):
            values["train"][key.split(":", 1)[1]] = v
        elif key == "n_out":
            values["network"]["output"]["n_out"] = v
        elif key in ("model", "learning_rate_file"):
            values[key] = {"<tmp>": values[key], "<file>/sub/x": blocker + "/sub/x"}.get(v, v)
        else:
            values[key] = v
    return values, values["model"]


def _must_refuse(mutations: dict[str, Any], fmt: str) -> bool:
    for key, v in mutations.items():
        if key in ("model", "learning_rate_file"):
            if v != "<tmp>":
                return True
            continue
        v = _number(v) if (fmt in ("lines", "++") or isinstance(v, str)) else v
        if v is None or (fmt in ("lines", "++") and v == ""):
            continue  # unset: the default applies
        if key in ORACLE and not ORACLE[key](v):
            return True
    return False


@pytest.fixture(scope="module", autouse=True)
def toy_manager():
    pm = PluginManager(strict=False, disabled=())
    pm.register(ToyPlugin(), "toy", distribution="returnn-toy", version="0.1")
    set_plugin_manager(pm)
    yield pm
    set_plugin_manager(None)
    print(f"\nconfig fuzz: {STATS['configs']} configs, {STATS['tracebacks']} tracebacks, "
          f"{STATS['wrongly_accepted']} wrongly accepted")


@settings(max_examples=int(os.environ.get("RETURNN_FUZZ_EXAMPLES", "100")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_every_config_trains_or_gives_one_error_line(case):
    fmt, mutations = case
    with tempfile.TemporaryDirectory() as tmp:
        values, model = _build(tmp, mutations)
        path = os.path.join(tmp, {"python": "c.py", "json": "c.json", "lines": "c.config", "++": "c.py"}[fmt])
        overrides: list[str] = []
        if fmt == "++":  # the top-level mutations as command-line overrides of a Python config with good values
            good, _ = _build(tmp, {})
            for key in [k for k in mutations if k in values and not k.startswith("dataset:")]:
                overrides += [f"++{key}", values[key] if isinstance(values[key], str) else repr(values[key])]
                values[key] = good[key] if key in good else values.pop(key)
        with open(path, "w") as f:
            f.write(_render(values, "python" if fmt == "++" else fmt))
        out, err = io.StringIO(), io.StringIO()
        STATS["configs"] += 1
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main([path, *overrides])
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is a traceback for the user
            STATS["tracebacks"] += 1
            raise AssertionError(f"{fmt} config {mutations!r}: traceback {type(exc).__name__}: {exc}") from exc
        lines = err.getvalue().strip().splitlines()
        if status == 0:
            if _must_refuse(mutations, fmt):
                STATS["wrongly_accepted"] += 1
            assert not _must_refuse(mutations, fmt), f"{fmt} config {mutations!r} was accepted"
            assert completed_epochs(model, ".npz"), f"{fmt} config {mutations!r}: exit 0 without training"
        else:
            assert len(lines) == 1 and lines[0].startswith("returnn: error: "), (fmt, mutations, err.getvalue())
            assert "Traceback" not in err.getvalue() + out.getvalue()
