"""The ``dump-dataset`` and ``hdf-dump`` subcommands, through the real ``returnn`` command and in-process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from returnn_datasets.cli import dump_dataset, hdf_dump
from returnn_datasets.hdf import HDFDataset
from returnn_datasets.task_12ax import Task12AXDataset

from returnn_core.errors import ConfigError, DatasetError

SPEC = "{'class': 'Task12AXDataset', 'num_seqs': 12, 'fixed_random_seed': 4}"


def _returnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "returnn_core", *args], capture_output=True, text=True, timeout=120)


def test_hdf_dump_then_dump_dataset_via_returnn_command(tmp_path) -> None:
    out = tmp_path / "task.hdf"
    res = _returnn("hdf-dump", SPEC, str(out))
    assert res.returncode == 0, res.stderr
    assert "wrote 12 seqs" in res.stdout
    ref = Task12AXDataset(num_seqs=12, fixed_random_seed=4)
    ref.init_seq_order(epoch=1)
    ds = HDFDataset(str(out))
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(11, "data"), ref.get_data(11, "data"))

    res = _returnn("dump-dataset", str(out), "--type", "shape", "--endseq", "-1")
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("seq ")]
    assert len(lines) == 12
    assert f"data({ref.get_seq_length(3)['data']}, 9)" in lines[3]

    res = _returnn("dump-dataset", "no-such.config")
    assert res.returncode == 2 and "no-such.config: no such config file" in res.stderr


def test_dump_dataset_stats_match_numpy(tmp_path, capsys) -> None:
    prefix = str(tmp_path / "stats" / "s.")
    # --stats without --end-seq covers the whole dataset (not the first 10 seqs that printing shows)
    assert dump_dataset.main([SPEC, "--type", "null", "--stats", "--dump-prefix", prefix]) == 0
    ref = Task12AXDataset(num_seqs=12, fixed_random_seed=4)
    ref.init_seq_order(epoch=1)
    frames = np.concatenate([ref.get_data(i, "data") for i in range(12)]).astype(np.float64)
    np.testing.assert_allclose(np.loadtxt(prefix + "mean.txt"), frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.loadtxt(prefix + "std_dev.txt"), frames.std(axis=0), rtol=1e-6)
    text = capsys.readouterr().out
    assert f"data: frames {len(frames)}" in text


def test_dump_dataset_from_config_numpy_and_tags(tmp_path, capsys) -> None:
    cfg = tmp_path / "setup.config"
    cfg.write_text(f"#!returnn\ntrain = {SPEC}\ndev = {{'class': 'DummyDataset', 'input_dim': 2, 'output_dim': 3, 'num_seqs': 4}}\n")
    prefix = str(tmp_path / "np" / "seq")
    assert dump_dataset.main([str(cfg), "--key", "dev", "--type", "numpy", "--dump-prefix", prefix]) == 0
    x = np.load(prefix + "2.data.npy")
    assert x.shape == (2, 2)
    assert dump_dataset.main([str(cfg), "--type", "tag", "--startseq", "3", "--endseq", "5"]) == 0
    assert "seq 4 tag seq-4" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="no dataset 'eval'"):
        dump_dataset.main([str(cfg), "--key", "eval"])
    with pytest.raises(ConfigError, match="no data key"):
        dump_dataset.main([SPEC, "--data-key", "nope"])


def test_hdf_dump_range_and_bad_source(tmp_path) -> None:
    out = tmp_path / "part.hdf"
    assert hdf_dump.main([SPEC, str(out), "--start-seq", "2", "--end-seq", "5"]) == 0
    ds = HDFDataset(str(out))
    assert ds.get_total_num_seqs() == 3
    ds.init_seq_order(epoch=1)
    assert ds.get_tag(0) == "seq-2"
    with pytest.raises(DatasetError, match="missing.hdf does not exist"):
        hdf_dump.main([str(tmp_path / "missing.hdf"), str(tmp_path / "o.hdf")])
    assert not (tmp_path / "o.hdf").exists()
