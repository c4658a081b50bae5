"""TF checkpoints keyed by canonical names (``<layer>/<param>``, ``optimizer/...``): ``<prefix>.index`` + data."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from returnn_core.errors import TrainingError

INDEX_SUFFIX = ".index"
DATA_SUFFIX = ".data-00000-of-00001"


def save_variables(prefix: str, variables: Mapping[str, tf.Variable]) -> list[str]:
    """Write ``variables`` as one TF checkpoint bundle; returns the data file and the index file (last)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[variables[n].read_value() for n in names],
    )
    return [prefix + DATA_SUFFIX, prefix + INDEX_SUFFIX]


def read_values(prefix: str) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint by name."""
    if not os.path.exists(prefix + INDEX_SUFFIX):
        raise TrainingError(f"checkpoint {prefix} not found (no {prefix + INDEX_SUFFIX})")
    try:
        reader = tf.train.load_checkpoint(prefix)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except (tf.errors.OpError, ValueError) as exc:
        raise TrainingError(f"checkpoint {prefix} is unreadable: {exc}") from None


def assign_values(variables: Mapping[str, tf.Variable], values: Mapping[str, np.ndarray], *, source: str,
                  required: bool = True) -> None:
    """Assign ``values`` to the variables of the same name; shapes must match; missing ones are an error if
    ``required``."""
    missing = [n for n in variables if n not in values]
    if missing and required:
        raise TrainingError(f"{source} lacks parameter(s) {', '.join(missing[:5])}"
                            f"{' ...' if len(missing) > 5 else ''} (was it written for another network?)")
    for name, var in variables.items():
        if name not in values:
            continue
        value = np.asarray(values[name])
        if tuple(value.shape) != tuple(var.shape):
            raise TrainingError(f"{source}: parameter {name!r} has shape {tuple(value.shape)}, "
                                f"the network needs {tuple(var.shape)}")
        var.assign(value.astype(var.dtype.as_numpy_dtype, copy=False))
