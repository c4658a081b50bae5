"""Statistics over the seqs of a dataset: lengths per key, mean/std per feature dim, label counts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO

import numpy as np

from returnn_core.datasets import DataSpec


class _Moments:
    """Running count, mean and sum of squared deviations per feature dim (Chan et al.'s merge, stable)."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))


class DatasetStatistics:
    """Collects statistics seq by seq for the given data keys."""

    def __init__(self, specs: Mapping[str, DataSpec]) -> None:
        self.specs = dict(specs)
        self.num_seqs = 0
        self.frames = dict.fromkeys(self.specs, 0)
        self.min_len = dict.fromkeys(self.specs, None)
        self.max_len = dict.fromkeys(self.specs, 0)
        self.moments: dict[str, _Moments] = {}
        self.counts: dict[str, np.ndarray] = {}

    def add(self, features: Mapping[str, np.ndarray]) -> None:
        """Account for one seq."""
        self.num_seqs += 1
        for key, spec in self.specs.items():
            x = features[key]
            t = int(x.shape[0])
            self.frames[key] += t
            self.min_len[key] = t if self.min_len[key] is None else min(self.min_len[key], t)
            self.max_len[key] = max(self.max_len[key], t)
            if spec.sparse:
                dim = max(int(spec.dim or 0), int(x.max()) + 1 if x.size else 0)
                counts = np.bincount(np.asarray(x, dtype=np.int64).reshape(-1), minlength=dim)
                old = self.counts.get(key)
                if old is not None and len(old) < len(counts):
                    old = np.pad(old, (0, len(counts) - len(old)))
                self.counts[key] = counts if old is None else old + np.pad(counts, (0, len(old) - len(counts)))
            elif x.ndim >= 2:
                if key not in self.moments:
                    self.moments[key] = _Moments(int(np.prod(x.shape[1:])))
                self.moments[key].add(x)

    def mean(self, key: str = "data") -> np.ndarray:
        """Mean per feature dim of dense ``key``."""
        return self.moments[key].mean

    def std(self, key: str = "data") -> np.ndarray:
        """Standard deviation per feature dim of dense ``key``."""
        return self.moments[key].std

    def report(self, out: IO[str]) -> None:
        """Human-readable summary."""
        out.write(f"statistics over {self.num_seqs} seqs:\n")
        for key in self.specs:
            if not self.num_seqs:
                break
            avg = self.frames[key] / self.num_seqs
            out.write(f"  {key}: frames {self.frames[key]}, seq len min {self.min_len[key]} max {self.max_len[key]} "
                      f"avg {avg:.2f}\n")
            if key in self.moments:
                with np.printoptions(precision=4, threshold=20, edgeitems=4):
                    out.write(f"    mean {self.mean(key)}\n    std  {self.std(key)}\n")
            if key in self.counts:
                c = self.counts[key]
                top = np.argsort(-c)[:5]
                out.write("    most frequent labels " + ", ".join(f"{int(i)}:{int(c[i])}" for i in top if c[i]) + "\n")

    def write_files(self, prefix: str, key: str = "data") -> None:
        """``PREFIXmean.txt`` and ``PREFIXstd_dev.txt`` (one value per line) for dense ``key``."""
        if key not in self.moments:
            return
        os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
        np.savetxt(f"{prefix}mean.txt", self.mean(key))
        np.savetxt(f"{prefix}std_dev.txt", self.std(key))
