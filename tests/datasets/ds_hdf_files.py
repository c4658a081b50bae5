"""HDF files written the way other RETURNN versions write them, directly with h5py (test helpers)."""

from __future__ import annotations

import h5py
import numpy as np


def write_returnn_style(path, inputs, targets=None, tags=None, sizes=None, target_labels=None, sparse_dim=None):
    """The layout of RETURNN's ``SimpleHDFWriter``: vlen tags, (N, 1+K) seqLengths, dummy labels, [dim, ndim] sizes."""
    targets = targets or {}
    n = len(inputs)
    tags = tags or [f"corpus/seq{i}" for i in range(n)]
    keys = sorted(targets)
    with h5py.File(path, "w") as f:
        cat = np.concatenate(inputs, axis=0)
        f.create_dataset("inputs", data=cat)
        f.attrs["inputPattSize"] = sparse_dim if sparse_dim is not None else cat.shape[1]
        f.attrs["numSeqs"] = n
        f.attrs["numTimesteps"] = cat.shape[0]
        f.attrs["numDims"] = 1
        f.attrs["numLabels"] = 1
        f.create_dataset("labels", (0,), dtype="S5")
        lengths = np.zeros((n, 1 + max(len(keys), 1)), dtype="int32")
        lengths[:, 0] = [len(x) for x in inputs]
        if keys:
            f.create_group("targets/data")
            f.create_group("targets/size")
            f.create_group("targets/labels")
        for col, key in enumerate(keys, start=1):
            seqs = targets[key]
            lengths[:, col] = [len(y) for y in seqs]
            data = np.concatenate(seqs, axis=0)
            f["targets/data"].create_dataset(key, data=data)
            dim, ndim = (sizes or {}).get(key, (data.shape[1] if data.ndim > 1 else int(data.max()) + 1, data.ndim))
            f["targets/size"].attrs[key] = [dim, ndim]
            labels = (target_labels or {}).get(key, ["dummy-label"])
            width = max(len(s) for s in labels)
            f["targets/labels"].create_dataset(key, data=np.array([s.encode() for s in labels], dtype=f"S{width}"))
        f.create_dataset("seqLengths", data=lengths)
        dt = h5py.special_dtype(vlen=str)
        ds = f.create_dataset("seqTags", (n,), dtype=dt)
        ds[...] = np.array(tags, dtype=object)


def write_old_style(path, inputs, classes, tags, num_labels, labels):
    """Old files: 1-D seqLengths shared by inputs and classes, NUL-padded fixed-width tags, scalar targets/size."""
    with h5py.File(path, "w") as f:
        f.create_dataset("inputs", data=np.concatenate(inputs, axis=0))
        f.attrs["inputPattSize"] = inputs[0].shape[1]
        f.attrs["numLabels"] = num_labels
        f.attrs["numSeqs"] = len(inputs)
        f.create_dataset("seqLengths", data=np.array([len(x) for x in inputs], dtype="int32"))
        f.create_dataset("seqTags", data=np.array([t.encode() + b"\0\0" for t in tags], dtype="S32"))
        f.create_dataset("labels", data=np.array([s.encode() for s in labels], dtype="S8"))
        f.create_group("targets/data").create_dataset("classes", data=np.concatenate(classes))
        f.create_group("targets/size").attrs["classes"] = num_labels
