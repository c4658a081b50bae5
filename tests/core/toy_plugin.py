"""A real, tiny plugin for core tests: a numpy softmax-regression backend and a synthetic dataset.

It exercises the driver without any deep-learning framework: the backend trains by gradient descent on
frame-wise cross entropy, saves ``.npz`` checkpoints and implements the whole Backend interface.
"""

from __future__ import annotations

import time

import numpy as np

from returnn_core.datasets import Dataset, DataSpec
from returnn_core.engine import Backend, StepResult
from returnn_core.errors import DatasetError, NetworkError
from returnn_core.plugin import Registrar, hookimpl


class ToyDataset(Dataset):
    """Seqs of 2-d points; the class of a frame is whether x0 + x1 > 0. Optional NaN seqs and slowness."""

    instances: list[ToyDataset] = []

    def __init__(self, num_seqs: int = 20, seq_len: int = 7, nan_in_epoch: int | None = None,
                 sleep_per_seq: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        for option, value, least in (("num_seqs", num_seqs, 0), ("seq_len", seq_len, 1)):
            if value < least:  # as a real dataset checks its options
                raise DatasetError(f"{self.name}: {option} must be >= {least}, got {value}")
        self._n, self._len, self._nan_epoch, self._sleep = num_seqs, seq_len, nan_in_epoch, sleep_per_seq
        self._data: list[np.ndarray] = []
        self.closed = False
        ToyDataset.instances.append(self)

    def data_specs(self) -> dict[str, DataSpec]:
        return {"data": DataSpec(2), "classes": DataSpec(2, sparse=True)}

    def _prepare_epoch(self, epoch: int) -> None:
        rng = np.random.RandomState(self.random_seed(epoch))
        self._data = [rng.randn(self._len + i % 3, 2).astype("float32") for i in range(self._n)]
        if self._nan_epoch == epoch:
            self._data[self._n // 2][0, 0] = np.nan

    def _num_total_seqs(self) -> int:
        return self._n

    def _seq_length(self, corpus_idx: int) -> int:
        return self._len + corpus_idx % 3

    def close(self) -> None:
        self.closed = True

    def _load_seq(self, corpus_idx: int) -> dict[str, np.ndarray]:
        if self._sleep:
            time.sleep(self._sleep)
        x = self._data[corpus_idx]
        return {"data": x, "classes": (x.sum(axis=1) > 0).astype("int32")}


class NumpyBackend(Backend):
    """Softmax regression over frames: one ``softmax`` layer with ``ce`` loss."""

    name = "toy"
    checkpoint_marker = ".npz"

    def build(self, network, extern_data, *, train: bool) -> None:
        (out,) = network.output_layers
        spec = network[out]
        if spec.layer_class != "softmax":
            raise NetworkError(f"layer {out!r}: the toy backend knows only 'softmax', not {spec.layer_class!r}")
        self.layer = out
        self.in_key = spec.sources[0].key
        n_in = extern_data[self.in_key].dim
        rng = np.random.RandomState(self.config.int("random_seed", 42))
        if (spec.target or "classes") not in extern_data:
            raise NetworkError(f"layer {out!r}: target {spec.target or 'classes'!r} is not in the data "
                               f"({', '.join(sorted(extern_data))})")
        classes = extern_data[spec.target or "classes"].dim
        n_out = spec.n_out or classes  # as RETURNN: no n_out, the target's dim
        if n_out != classes:  # the check the frontend's Network makes for ce (docs/plugins.md 6.3)
            raise NetworkError(f"layer {out!r}: n_out {n_out} must equal the {classes} classes of its ce target")
        self.params = {f"{out}/W": rng.randn(n_in, n_out).astype("float64") * 0.1,
                       f"{out}/b": np.zeros(n_out)}
        self.target = spec.target
        self.steps = 0

    def _forward(self, batch):
        x = batch.data[self.in_key].astype("float64")
        logits = x @ self.params[f"{self.layer}/W"] + self.params[f"{self.layer}/b"]
        logits -= logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=-1, keepdims=True)
        mask = np.arange(x.shape[1])[None, :] < batch.seq_lens[self.in_key][:, None]
        return x, probs, mask

    def _step(self, batch, lr):
        x, probs, mask = self._forward(batch)
        y = batch.data[self.target]
        if not np.array_equal(batch.seq_lens[self.target], batch.seq_lens[self.in_key]):
            raise NetworkError(f"layer {self.layer!r}: frame-wise ce needs target {self.target!r} as long as its input "
                               f"{self.in_key!r} (seqs {', '.join(batch.tags[:3])})")
        p_true = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = float(-(np.log(p_true) * mask).sum())
        err = float(((probs.argmax(-1) != y) & mask).sum())
        frames = float(mask.sum())
        if lr is not None:
            grad = probs.copy()
            np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], -1) - 1, -1)
            grad *= mask[..., None] / frames
            self.params[f"{self.layer}/W"] -= lr * np.einsum("btd,btk->dk", x, grad)
            self.params[f"{self.layer}/b"] -= lr * grad.sum(axis=(0, 1))
            self.steps += 1
        return StepResult({self.layer: loss}, {self.layer: err}, {self.layer: frames})

    def train_step(self, batch, learning_rate):
        return self._step(batch, learning_rate)

    def eval_step(self, batch):
        return self._step(batch, None)

    def forward_step(self, batch, layer):
        _, probs, _ = self._forward(batch)
        return probs.astype("float32"), batch.seq_lens[self.in_key]

    def save(self, prefix):
        np.savez(prefix + ".npz", steps=self.steps, **self.params)
        return [prefix + ".npz"]

    def load(self, prefix, *, params_only=False):
        path = prefix if prefix.endswith(".npz") else prefix + ".npz"
        with np.load(path) as f:
            for k in self.params:
                self.params[k] = f[k]
            if not params_only:
                self.steps = int(f["steps"])

    def get_param_values(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_param_values(self, values):
        for k, v in values.items():
            if self.params[k].shape != v.shape:
                raise ValueError(f"param {k}: shape {v.shape} != {self.params[k].shape}")
            self.params[k] = np.array(v, dtype="float64")


class ToyWriter:
    """Output writer ``npz``: collects seqs, writes one file on close."""

    def __init__(self, path: str, *, dim: int, sparse: bool, labels=None) -> None:
        self.path, self.seqs = path, {}

    def write_batch(self, outputs, seq_lens, tags):
        for o, n, t in zip(outputs, seq_lens, tags):
            self.seqs[t] = o[:n]

    def close(self):
        with open(self.path, "wb") as f:
            np.savez(f, **self.seqs)

    def abort(self):
        self.seqs = {}


class ToyPlugin:
    """Registers the toy backend, dataset and writer like an installed plugin would."""

    @hookimpl
    def returnn_register_backends(self, registry: Registrar) -> None:
        registry.register("toy", NumpyBackend)

    @hookimpl
    def returnn_register_datasets(self, registry: Registrar) -> None:
        registry.register("ToyDataset", "toy_plugin:ToyDataset")  # lazy import string, like a real plugin

    @hookimpl
    def returnn_register_output_writers(self, registry: Registrar) -> None:
        registry.register("npz", ToyWriter)


# module-level hooks so this file can also be the target of a real entry point
_plugin = ToyPlugin()
returnn_register_backends = _plugin.returnn_register_backends
returnn_register_datasets = _plugin.returnn_register_datasets
returnn_register_output_writers = _plugin.returnn_register_output_writers
