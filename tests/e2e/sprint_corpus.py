"""A learnable corpus for the stand-in Sprint program, shared by the Sprint end-to-end tests."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
FAKE_SPRINT = str(REPO / "tests" / "sprint" / "fake_sprint.py")
NUM_CLASSES, DIM = 4, 6


def _load_archive_bytes():
    spec = importlib.util.spec_from_file_location("archive_bytes", REPO / "tests" / "sprint" / "archive_bytes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("archive_bytes", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: archives laid out byte by byte from RASR's format, independent of returnn_sprint
archive_bytes = _load_archive_bytes()


def make_corpus(path: pathlib.Path, num_seqs: int, seed: int) -> str:
    """npz corpus for the stand-in Sprint; class k makes feature k high, so it is learnable."""
    rng = np.random.RandomState(seed)
    arrays = {"names": np.array([f"corpus/rec{i}/{i}" for i in range(num_seqs)]), "num_classes": NUM_CLASSES}
    for i in range(num_seqs):
        n = rng.randint(8, 30)
        align = np.repeat(rng.randint(NUM_CLASSES, size=n // 4 + 1), 4)[:n].astype(np.int32)
        feats = (rng.randn(n, DIM) * 0.5).astype(np.float32)
        feats[np.arange(n), align] += 1.5
        arrays[f"feat_{i}"], arrays[f"align_{i}"] = feats, align
    np.savez(path, **arrays)
    return str(path)
