"""Interop with the public RETURNN (PyPI ``returnn``): it reads our HDF files, we read its files.

Public RETURNN is not a dependency; point ``RETURNN_PUBLIC_PATH`` at an unpacked ``returnn`` wheel (or
install it elsewhere) to run these. It runs in a subprocess so its modules never mix with ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from returnn_datasets.hdf import HDFDataset, HDFWriter

from returnn_core.datasets import DataSpec

PUBLIC = os.environ.get("RETURNN_PUBLIC_PATH")
pytestmark = pytest.mark.skipif(not PUBLIC, reason="set RETURNN_PUBLIC_PATH to an unpacked public RETURNN to run")


def _public(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": PUBLIC}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_public_returnn_reads_our_files(tmp_path) -> None:
    rng = np.random.RandomState(0)
    seqs = []
    path = str(tmp_path / "ours.hdf")
    targets = {"classes": DataSpec(5, sparse=True, labels=tuple("abcde")), "orth": DataSpec(20, sparse=True)}
    with HDFWriter(path, dim=3, targets=targets) as w:
        for i in range(4):
            x, y, o = rng.randn(i + 2, 3).astype("float32"), rng.randint(0, 5, i + 2), rng.randint(0, 20, i + 1)
            w.write_seq(f"tag{i}", x, {"classes": y, "orth": o})
            seqs.append((x, y, o))
    fwd = str(tmp_path / "forward.hdf")
    w2 = HDFWriter(fwd, dim=4)
    w2.write_batch(np.arange(24, dtype="float32").reshape(2, 3, 4), np.array([3, 1]), ["a", "b"])
    w2.close()
    out = json.loads(_public(f"""
        import json
        from returnn.datasets.hdf import HDFDataset
        res = {{}}
        for p in [{path!r}, {fwd!r}]:
            d = HDFDataset(files=[p]); d.initialize(); d.init_seq_order(epoch=1); d.load_seqs(0, d.num_seqs)
            res[p] = {{"num_outputs": {{k: list(v) for k, v in d.num_outputs.items()}}, "labels": d.labels,
                      "seqs": [[d.get_tag(i), {{k: d.get_data(i, k).tolist() for k in d.get_data_keys()}}]
                               for i in range(d.num_seqs)]}}
        print(json.dumps(res))
    """))
    ours = out[path]
    assert ours["num_outputs"] == {"data": [3, 2], "classes": [5, 1], "orth": [20, 1]}
    assert ours["labels"]["classes"] == list("abcde")
    for i, (tag, data) in enumerate(ours["seqs"]):
        assert tag == f"tag{i}"
        np.testing.assert_allclose(data["data"], seqs[i][0], rtol=1e-6)
        assert data["classes"] == seqs[i][1].tolist() and data["orth"] == seqs[i][2].tolist()
    assert [t for t, _ in out[fwd]["seqs"]] == ["a", "b"]
    assert out[fwd]["seqs"][1][1]["data"] == [[12.0, 13.0, 14.0, 15.0]]


def test_we_read_public_returnn_writer_files(tmp_path) -> None:
    path = str(tmp_path / "theirs.hdf")
    _public(f"""
        import numpy as np
        from returnn.datasets.hdf import SimpleHDFWriter
        w = SimpleHDFWriter({path!r}, dim=3, labels=None)
        w.insert_batch(np.arange(24, dtype="float32").reshape(2, 4, 3), seq_len=[4, 2], seq_tag=["x", "y"],
                       extra={{"classes": np.array([[1, 2, 3, 4], [5, 6, 0, 0]], dtype="int32")}})
        w.close()
        print("done")
    """)
    ds = HDFDataset(path)
    assert ds.data_keys == ["classes", "data"]
    ds.init_seq_order(epoch=1)
    assert [ds.get_tag(i) for i in range(2)] == ["x", "y"]
    np.testing.assert_array_equal(ds.get_data(1, "data"), np.arange(12, 18, dtype="float32").reshape(2, 3))
    np.testing.assert_array_equal(ds.get_data(0, "classes"), [1, 2, 3, 4])
