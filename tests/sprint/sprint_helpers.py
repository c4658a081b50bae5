"""Helpers for the Sprint tests: a corpus for the stand-in Sprint and process-leak checks."""

from __future__ import annotations

import glob
import os
import pathlib

import numpy as np

FAKE_SPRINT = str(pathlib.Path(__file__).resolve().parent / "fake_sprint.py")


def make_corpus(path: pathlib.Path, num_seqs: int = 12, dim: int = 5, num_classes: int = 4, seed: int = 0) -> str:
    """An npz corpus for fake_sprint.py: classes are learnable from the features (class k: feature k high)."""
    rng = np.random.RandomState(seed)
    arrays = {"names": np.array([f"corpus/rec{i}/seg{i}" for i in range(num_seqs)]), "num_classes": num_classes}
    for i in range(num_seqs):
        n = rng.randint(5, 25)
        align = rng.randint(num_classes, size=n).astype(np.int32)
        feats = rng.randn(n, dim).astype(np.float32) * 0.3
        feats[np.arange(n), align] += 2.0
        arrays[f"feat_{i}"] = feats
        arrays[f"align_{i}"] = align
    np.savez(path, **arrays)
    return str(path)


def live_children() -> set[int]:
    """Pids of this process's children that are still there (running or zombie)."""
    out: set[int] = set()
    for f in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            out |= {int(p) for p in open(f).read().split()}
        except OSError:
            pass
    return out


def assert_reaped(pid: int) -> None:
    """The process is gone: neither running nor a zombie (i.e. it was waited for)."""
    assert not os.path.exists(f"/proc/{pid}"), open(f"/proc/{pid}/stat").read() if os.path.exists(f"/proc/{pid}") else ""
