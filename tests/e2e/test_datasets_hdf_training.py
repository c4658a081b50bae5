"""returnn-datasets with the TF backend: train from HDF files made by ``hdf-dump`` (dev through a MetaDataset),
then the forward task writes its posteriors through the ``hdf`` output writer and HDFDataset reads them back."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from returnn_datasets.hdf import HDFDataset  # noqa: E402

RETURNN = str(pathlib.Path(sys.executable).parent / "returnn")


def _returnn(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([RETURNN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_train_from_hdf_and_forward_to_hdf(tmp_path):
    for name, n, seed in (("train", 300, 3), ("dev", 40, 1)):
        spec = f"{{'class': 'Task12AXDataset', 'num_seqs': {n}, 'fixed_random_seed': {seed}}}"
        _returnn("hdf-dump", spec, str(tmp_path / f"{name}.hdf"), cwd=tmp_path)
    common = f"""#!returnn
backend = "tf"
train = {{"class": "HDFDataset", "files": ["{tmp_path}/train.hdf"], "cache_size": "1M", "seq_ordering": "random"}}
dev = {{"class": "MetaDataset", "datasets": {{"d": {{"class": "HDFDataset", "files": ["{tmp_path}/dev.hdf"]}}}},
        "data_map": {{"data": ("d", "data"), "classes": ("d", "classes")}}}}
eval = "{tmp_path}/dev.hdf"
batch_size = 2000
max_seqs = 20
network = {{
    "hidden": {{"class": "linear", "activation": "tanh", "n_out": 16}},
    "output": {{"class": "softmax", "loss": "ce", "from": ["hidden"]}},
}}
adam = True
learning_rate = 0.01
model = "{tmp_path}/model/net"
num_epochs = 2
log_verbosity = 2
"""
    (tmp_path / "train.config").write_text(common + 'task = "train"\n')
    _returnn("train.config", cwd=tmp_path)
    assert (tmp_path / "model").is_dir() and any((tmp_path / "model").iterdir())
    (tmp_path / "fwd.config").write_text(
        common + f'task = "forward"\nload_epoch = 2\noutput_file = "{tmp_path}/posteriors.hdf"\n'
    )
    _returnn("fwd.config", cwd=tmp_path)

    out = HDFDataset(str(tmp_path / "posteriors.hdf"))
    ref = HDFDataset(str(tmp_path / "dev.hdf"))
    assert out.num_outputs == {"data": [2, 2]}
    out.init_seq_order(epoch=1)
    ref.init_seq_order(epoch=1)
    assert out.num_seqs == ref.num_seqs == 40
    ref_len = {ref.get_tag(i): ref.get_seq_length(i)["data"] for i in range(ref.num_seqs)}
    for i in range(out.num_seqs):
        post = out.get_data(i, "data")
        assert post.shape == (ref_len[out.get_tag(i)], 2)
        np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-4)
