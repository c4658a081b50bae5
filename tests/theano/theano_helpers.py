"""Helpers for the Theano-backend tests: an isolated plugin manager (core + returnn-theano) and batches.

A module of its own name (not conftest) so that it does not clash with other test folders' conftest modules.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from returnn_core.config import Config
from returnn_core.datasets import BatchData, DatasetSeq, DataSpec, ExternData, generate_batches
from returnn_core.log import Log
from returnn_core.network import resolve_network
from returnn_core.plugin import PluginManager


def theano_manager() -> PluginManager:
    """A manager with only the core and this plugin, so tests do not depend on other installed plugins."""
    import returnn_theano._hooks as hooks

    manager = PluginManager(strict=True)
    manager.register(hooks, "theano", distribution="returnn-theano")
    return manager


def make_backend(net: dict[str, Any], extern: dict[str, DataSpec], *, train: bool = True,
                 manager: PluginManager | None = None, **config: Any) -> Any:
    """A built TheanoBackend for ``net``."""
    manager = manager or theano_manager()
    cls = manager.backends.get("theano")
    backend = cls(Config(dict(config)), manager, Log(0))
    ed = ExternData(extern)
    backend.build(resolve_network(net, ed.keys()), ed, train=train)
    return backend


def batch(arrays: dict[str, list[np.ndarray]], extern: dict[str, DataSpec]) -> BatchData:
    """One padded batch of the given seqs (``arrays[key][i]`` is seq i of ``key``)."""
    keys = list(arrays)
    n = len(arrays[keys[0]])
    seqs = [DatasetSeq(i, f"seq-{i}", {k: arrays[k][i] for k in keys}) for i in range(n)]
    (only,) = list(generate_batches(seqs, batch_size=0))
    return only.to_data(ExternData(extern))


def ctc_brute_force(probs: np.ndarray, labels: list[int], blank: int) -> float:
    """-log of the summed probability of every frame labelling that collapses to ``labels``."""
    total = 0.0
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        collapsed = [k for i, k in enumerate(path) if k != blank and (i == 0 or k != path[i - 1])]
        if collapsed == labels:
            total += np.prod([probs[t, k] for t, k in enumerate(path)])
    return -np.log(total)
