"""Throughput of Sprint cache archives (write/read, raw and compressed) and of ExternSprintDataset's pipe."""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from returnn_sprint.archive import FileArchive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_cache(tmp: str, num_seqs: int = 500, frames: int = 300, dim: int = 40) -> None:
    rng = np.random.RandomState(0)
    feats = [rng.randn(frames, dim).astype(np.float32) for _ in range(num_seqs)]
    mb = num_seqs * frames * dim * 4 / 1e6
    for compress in (False, True):
        path = os.path.join(tmp, f"bench-{compress}.cache")
        t0 = time.perf_counter()
        with FileArchive(path, "w", compress=compress) as a:
            for i, x in enumerate(feats):
                a.add_features(f"c/r/{i}", x)
        t1 = time.perf_counter()
        with FileArchive(path) as r:
            for name in r.names():
                r.read_features(name)
        t2 = time.perf_counter()
        print(f"features compress={compress}: write {mb / (t1 - t0):.1f} MB/s, read {mb / (t2 - t1):.1f} MB/s "
              f"({num_seqs} seqs x {frames} frames x {dim} dims, file {os.path.getsize(path) / 1e6:.1f} MB)")
    items = [(t, t // 7 % 50, t % 3) for t in range(frames)]
    path = os.path.join(tmp, "align.cache")
    t0 = time.perf_counter()
    with FileArchive(path, "w") as a:
        for i in range(num_seqs):
            a.add_alignment(f"c/r/{i}", items)
    t1 = time.perf_counter()
    with FileArchive(path) as r:
        for name in r.names():
            r.read_alignment(name)
    t2 = time.perf_counter()
    n = num_seqs * frames
    print(f"alignments: write {n / (t1 - t0) / 1e3:.0f} kframes/s, read {n / (t2 - t1) / 1e3:.0f} kframes/s")


def bench_extern(tmp: str, num_seqs: int = 300, frames: int = 300, dim: int = 40) -> None:
    sys.path.insert(0, os.path.join(REPO, "tests", "sprint"))
    from returnn_sprint.extern_dataset import ExternSprintDataset

    rng = np.random.RandomState(0)
    arrays = {"names": np.array([f"c/r/{i}" for i in range(num_seqs)]), "num_classes": 10}
    for i in range(num_seqs):
        arrays[f"feat_{i}"] = rng.randn(frames, dim).astype(np.float32)
        arrays[f"align_{i}"] = rng.randint(10, size=frames).astype(np.int32)
    corpus = os.path.join(tmp, "corpus.npz")
    np.savez(corpus, **arrays)
    ds = ExternSprintDataset([sys.executable, os.path.join(REPO, "tests", "sprint", "fake_sprint.py")], f"--*.corpus.file={corpus}")
    t0 = time.perf_counter()
    ds.init_seq_order(1)
    t1 = time.perf_counter()
    count = sum(1 for _ in ds.iter_seqs())
    t2 = time.perf_counter()
    ds.finish_epoch()
    ds.close()
    print(f"ExternSprintDataset: child start + init {t1 - t0:.2f} s, {count / (t2 - t1):.0f} seqs/s "
          f"({count * frames * dim * 4 / 1e6 / (t2 - t1):.1f} MB/s of features)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        bench_cache(tmp)
        bench_extern(tmp)
