"""The first batch of each dataset against the network's data description: dims and sparse class ranges.

Checked once per epoch and dataset, on the padded arrays already built, so a mismatch stops with one line naming the
dataset (and its files) and the seq instead of a backend's shape or gather error deep inside a step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from returnn_core.errors import DatasetError


def _where(dataset: Any) -> str:
    files = [str(getattr(f, "path", f)) for f in getattr(dataset, "files", None) or ()]
    if files:
        return f"dataset {dataset.name} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})"
    return f"dataset {dataset.name}"


def network_keys(network: Any, *, targets: bool) -> set[str]:
    """The data keys the network reads: its inputs, and with ``targets`` the targets of its losses."""
    keys = {spec.opts.get("data_key") or "data" for spec in network if spec.layer_class == "source"}
    return keys | class_keys(network, targets=targets)


def class_keys(network: Any, *, targets: bool) -> set[str]:
    """The data keys whose sparse values the network uses as class indices: layer sources (embedded) and, with
    ``targets``, loss targets. A ``source`` layer's data (e.g. RETURNN's image ``sizes``) may hold other ints."""
    keys = {s.key for spec in network for s in spec.sources if hasattr(s, "key")}
    if targets:
        keys |= {spec.target for spec in network.loss_layers if spec.target}
    return keys


def check_keys(dataset: Any, needed: Iterable[str]) -> None:
    """Raise :class:`DatasetError` if the streams ``dataset`` declares lack a ``needed`` key (datasets that cannot
    say their streams before reading are checked at their first batch)."""
    try:
        have = set(dataset.output_specs())
    except Exception:  # noqa: BLE001 - checked by check_batch then
        return
    _raise_missing(dataset, sorted(k for k in needed if k not in have), have)


def _raise_missing(dataset: Any, missing: list[str], have: Iterable[str]) -> None:
    if missing:
        raise DatasetError(
            f"{_where(dataset)} has no data {', '.join(map(repr, missing))}, which the network reads; it has: "
            f"{', '.join(sorted(have)) or 'nothing'}"
        )


def check_batch(dataset: Any, data: Any, specs: Mapping[str, Any], needed: Iterable[str] = (),
                classes: Iterable[str] | None = None) -> None:
    """Raise :class:`DatasetError` if the batch lacks a ``needed`` key or its dims or values do not fit ``specs``
    (sparse values are checked as class indices for the keys in ``classes``, default all)."""
    classes = None if classes is None else set(classes)
    _raise_missing(dataset, sorted(k for k in needed if k not in data.data), data.data)
    try:
        declared = dataset.output_specs()
    except Exception:  # noqa: BLE001 - a dataset that cannot say its specs is checked by its values only
        declared = {}
    for key, spec in specs.items():
        own = declared.get(key)
        if own is not None and own.dim and spec.dim and (own.dim != spec.dim or own.sparse != spec.sparse):
            raise DatasetError(
                f"{_where(dataset)}: data {key!r} is {_describe(own)}, but the config says {_describe(spec)} "
                "(num_inputs/num_outputs/extern_data); make them agree or drop the config's entry"
            )
        arr = data.data.get(key)
        if arr is None or not spec.dim:
            continue
        lens = data.seq_lens[key]
        if not spec.sparse:
            if arr.ndim >= 3 and arr.shape[-1] != spec.dim:
                raise DatasetError(
                    f"{_where(dataset)}: seq {data.tags[0]!r}: data {key!r} has {arr.shape[-1]} features per frame, "
                    f"the network expects {spec.dim}"
                )
            continue
        if classes is not None and key not in classes:
            continue
        mask = np.arange(arr.shape[1])[None, :] < lens[:, None] if arr.ndim >= 2 else np.ones(arr.shape, bool)
        bad = mask & ((arr < 0) | (arr >= spec.dim)) if arr.ndim == 2 else None
        if bad is not None and bad.any():
            i, t = map(int, np.argwhere(bad)[0])
            raise DatasetError(
                f"{_where(dataset)}: seq {data.tags[i]!r}: class {int(arr[i, t])} of data {key!r} at frame {t} is "
                f"outside 0..{spec.dim - 1} ({key} has dim {spec.dim}); fix the data or its num_outputs"
            )


def _describe(spec: Any) -> str:
    return f"sparse with {spec.dim} class{'es' if spec.dim != 1 else ''}" if spec.sparse else f"dense with dim {spec.dim}"
