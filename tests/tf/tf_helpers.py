"""Helpers for the TF backend tests: a tiny learnable dataset and a built backend from a network dict."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.config import Config
from returnn_core.datasets import BatchData, Dataset, DataSpec, ExternData, generate_batches
from returnn_core.log import Log
from returnn_core.network import resolve_network
from returnn_core.plugin import get_plugin_manager


class ToyDataset(Dataset):
    """Seqs of 3-dim features; class per frame = which of the first two features is larger, lagged by ``lag``."""

    def __init__(self, num_seqs: int = 40, *, seed: int = 0, min_len: int = 5, max_len: int = 20, lag: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        rng = np.random.RandomState(seed)
        self.seqs = []
        for _ in range(num_seqs):
            t = rng.randint(min_len, max_len + 1)
            x = rng.normal(size=(t, 3)).astype(np.float32)
            cls = (x[:, 0] > x[:, 1]).astype(np.int32)
            if lag:
                cls = np.concatenate([np.zeros(lag, np.int32), cls[:-lag]])
            self.seqs.append({"data": x, "classes": cls})

    def data_specs(self) -> dict[str, DataSpec]:
        """3 dense features, 2 classes."""
        return {"data": DataSpec(3), "classes": DataSpec(2, sparse=True)}

    def _num_total_seqs(self) -> int:
        return len(self.seqs)

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        return self.seqs[corpus_idx]


def batches_of(dataset: Dataset, *, batch_size: int = 200, max_seqs: int = 8, epoch: int = 1) -> list[BatchData]:
    """All padded batches of one epoch."""
    dataset.init_seq_order(epoch)
    specs = dataset.output_specs()
    return [b.to_data(specs) for b in generate_batches(dataset.iter_seqs(), batch_size=batch_size, max_seqs=max_seqs)]


def make_backend(network: dict, *, extern_data: dict | None = None, train: bool = True, **config: Any):
    """A built TF backend for ``network`` (extern data default: the toy dataset's)."""
    from returnn_tf.backend import TFBackend

    cfg = Config({"network": network, **config})
    if extern_data is None:
        ext = ExternData({"data": DataSpec(3), "classes": DataSpec(2, sparse=True)})
    else:
        ext = ExternData({k: DataSpec.from_config(k, v) for k, v in extern_data.items()})
    backend = TFBackend(cfg, get_plugin_manager(), Log(verbosity=0))
    backend.build(resolve_network(network, list(ext)), ext, train=train)
    return backend


def train_epochs(backend: Any, batches: list[BatchData], epochs: int, lr: float) -> list[float]:
    """Train ``epochs`` passes; returns the loss per frame of each pass."""
    scores = []
    for _ in range(epochs):
        loss = frames = 0.0
        for b in batches:
            res = backend.train_step(b, lr)
            loss += sum(res.losses.values())
            frames += sum(res.frames.values())
        scores.append(loss / frames)
    return scores
