"""Data-parallel training over worker processes with ``tf.distribute.MultiWorkerMirroredStrategy``.

Every worker runs the same config and so generates the same global batches; each takes the seqs
``rank::num_workers`` of every batch. Losses, frame counts and gradients are summed over the workers with the
strategy's collective all-reduce, so all workers apply the same update and the objective (loss per frame of the
global batch) equals that of a single process on the same batches. The cluster comes from ``TF_CONFIG``
(``returnn tf-distributed`` sets it up).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.datasets import BatchData
from returnn_core.errors import ConfigError

SUM = tf.distribute.ReduceOp.SUM


def cluster_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(rank, num_workers)`` from ``TF_CONFIG`` when it names more than one worker, else None."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return None
    try:
        spec = json.loads(text)
        workers = list(spec["cluster"]["worker"])
        task = spec["task"]
        kind, rank = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({exc}); expected "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}') from None
    if set(spec["cluster"]) - {"worker"} or kind != "worker":
        raise ConfigError("TF_CONFIG: returnn-tf runs MultiWorkerMirroredStrategy with 'worker' tasks only "
                          f"(got cluster roles {sorted(spec['cluster'])}, task type {kind!r})")
    if not 0 <= rank < len(workers):
        raise ConfigError(f"TF_CONFIG: task index {rank} is outside the {len(workers)} workers")
    return (rank, len(workers)) if len(workers) > 1 else None


class Workers:
    """This process's place among the workers and the collective operations between them."""

    def __init__(self, rank: int, num_workers: int, *, timeout: float | None = None) -> None:
        self.rank = rank
        self.num_workers = num_workers
        impl = tf.distribute.experimental.CommunicationImplementation
        # RING is the collective implementation that works on CPU; NCCL is only for GPUs. (Listing logical
        # devices would initialise the TF context, after which collectives can no longer be configured.)
        gpus = tf.config.get_visible_devices("GPU")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=impl.AUTO if gpus else impl.RING,
            timeout_seconds=timeout,
        )
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        if self.strategy.num_replicas_in_sync != num_workers:
            raise ConfigError(f"TF_CONFIG names {num_workers} workers but the strategy has "
                              f"{self.strategy.num_replicas_in_sync} replicas (one device per worker is supported)")

    @classmethod
    def from_env(cls, *, timeout: float | None = None) -> Workers | None:
        """The workers of ``TF_CONFIG``, or None for a single process. Call before any other TF op runs."""
        cluster = cluster_from_env()
        return None if cluster is None else cls(*cluster, timeout=timeout)

    @property
    def is_chief(self) -> bool:
        """Worker 0 writes checkpoints and summaries."""
        return self.rank == 0

    # -- data -------------------------------------------------------------------------------------------
    def shard(self, batch: BatchData) -> tuple[BatchData, float]:
        """This worker's seqs of ``batch`` (padding trimmed) and its weight: 0 when it got none and computes a
        stand-in seq whose results are discarded (every worker must take part in each collective step)."""
        idx = np.arange(self.rank, batch.num_seqs, self.num_workers)
        weight = 1.0
        if idx.size == 0:
            idx, weight = np.arange(1), 0.0
        data, lens = {}, {}
        for key, arr in batch.data.items():
            seq_lens = batch.seq_lens[key][idx]
            part = arr[idx]
            if part.ndim >= 2:
                part = part[:, : max(int(seq_lens.max(initial=0)), 1)]
            data[key], lens[key] = part, seq_lens
        return BatchData(data, lens, [batch.tags[i] for i in idx], [batch.seq_idx[i] for i in idx]), weight

    # -- collectives (inside a replica function) -----------------------------------------------------------
    def run(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        """Run ``fn`` in the replica context (inside a ``tf.function``)."""
        return self.strategy.run(fn, args=tuple(args))

    @staticmethod
    def all_sum(values: Any) -> Any:
        """Sum a tensor or a list of tensors over all workers."""
        return tf.distribute.get_replica_context().all_reduce(SUM, values)

    def all_sum_gradients(self, grads: list[Any]) -> list[Any]:
        """Sum the gradients over the workers (None stays None)."""
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = self.all_sum([tf.convert_to_tensor(grads[i]) for i in present]) if present else []
        out = list(grads)
        for i, g in zip(present, summed):
            out[i] = g
        return out

    def make_broadcast(self, variables: Sequence[tf.Variable]) -> Callable[[], Any]:
        """A compiled function that sets ``variables`` on every worker to the chief's values."""
        variables = list(variables)

        by_dtype: dict[tf.DType, list[tf.Variable]] = {}
        for var in variables:
            by_dtype.setdefault(var.dtype, []).append(var)

        def replica() -> tf.Tensor:
            # the collective packs its inputs into one buffer, so reduce each dtype on its own
            for group in by_dtype.values():
                values = [v.read_value() if self.is_chief else tf.zeros_like(v) for v in group]
                for var, value in zip(group, self.all_sum(values)):
                    var.assign(value)
            return tf.constant(len(variables))

        return tf.function(lambda: self.run(replica, ()))
