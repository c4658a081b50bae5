"""NumpyDumpDataset and RawWavDataset on real files written in the test."""

from __future__ import annotations

import gzip
import wave

import numpy as np
import pytest
from returnn_datasets.cli import dump_dataset

from returnn_core.datasets import init_dataset
from returnn_core.errors import DatasetError


def test_numpy_dump_text_layout(tmp_path, manager) -> None:
    rng = np.random.RandomState(0)
    xs = [rng.randn(t, 3) for t in (4, 6)]
    ys = [rng.randint(0, 5, size=t) for t in (4, 6)]
    for i, (x, y) in enumerate(zip(xs, ys)):
        with gzip.open(tmp_path / f"dump{i}.data.txt.gz", "wt") as f:
            np.savetxt(f, x)
        with gzip.open(tmp_path / f"dump{i}.targets.txt.gz", "wt") as f:
            np.savetxt(f, y, fmt="%d")
    ds = init_dataset({"class": "NumpyDumpDataset", "prefix": str(tmp_path / "dump"), "num_outputs": 5}, manager=manager)
    assert ds.num_outputs == {"data": [3, 2], "classes": [5, 1]}
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 2
    np.testing.assert_allclose(ds.get_data(1, "data"), xs[1], rtol=1e-6)
    np.testing.assert_array_equal(ds.get_data(1, "classes"), ys[1])
    with pytest.raises(DatasetError, match=r"dump2.data.txt.gz does not exist"):
        init_dataset({"class": "NumpyDumpDataset", "prefix": str(tmp_path / "dump"), "num_outputs": 5, "end_seq": 3},
                     manager=manager)
    with pytest.raises(DatasetError, match="no seq files"):
        init_dataset({"class": "NumpyDumpDataset", "prefix": str(tmp_path / "other")}, manager=manager)


def test_numpy_dump_reads_dump_dataset_output(tmp_path, manager) -> None:
    prefix = str(tmp_path / "np" / "s")
    spec = "{'class': 'Task12AXDataset', 'num_seqs': 4, 'fixed_random_seed': 9}"
    assert dump_dataset.main([spec, "--type", "numpy", "--dump-prefix", prefix]) == 0
    ds = init_dataset({"class": "NumpyDumpDataset", "prefix": prefix, "postfix": ".npy", "num_outputs": 2,
                       "target_key_file": "classes"}, manager=manager)
    ref = init_dataset(spec, manager=manager)
    ref.init_seq_order(epoch=1)
    ds.init_seq_order(epoch=1)
    assert ds.num_seqs == 4
    np.testing.assert_array_equal(ds.get_data(3, "data"), ref.get_data(3, "data"))
    np.testing.assert_array_equal(ds.get_data(3, "classes"), ref.get_data(3, "classes"))


def _write_wav(path, samples: np.ndarray, rate=16000, channels=1, width=2) -> None:
    dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples).astype(dtype).tobytes())


def test_raw_wav_frames(tmp_path, manager) -> None:
    rng = np.random.RandomState(1)
    a = rng.randint(-30000, 30000, size=1000)
    b = rng.randint(-30000, 30000, size=(333, 2))  # stereo: channels are averaged
    _write_wav(tmp_path / "a.wav", a)
    _write_wav(tmp_path / "b.wav", b.reshape(-1), channels=2)
    (tmp_path / "list.txt").write_text("a.wav\nb.wav\n")
    ds = init_dataset({"class": "RawWavDataset", "listFile": str(tmp_path / "list.txt"), "frameLength": 400,
                       "frameShift": 160}, manager=manager)
    assert ds.num_outputs == {"data": [400, 2]}
    ds.init_seq_order(epoch=1)
    x = ds.get_data(0, "data")
    assert x.shape == (5, 400)  # ceil((1000 - 400) / 160) + 1
    np.testing.assert_array_equal(x[1], a[160:560])
    np.testing.assert_array_equal(x[4, :360], a[640:1000])
    assert np.all(x[4, 360:] == 0)
    y = ds.get_data(1, "data")
    assert y.shape == (1, 400)
    np.testing.assert_allclose(y[0, :333], b.mean(axis=1))
    assert ds.get_tag(0).endswith("a.wav")

    norm = init_dataset({"class": "RawWavDataset", "files": [str(tmp_path / "a.wav")], "normalize": True,
                         "sample_rate": 16000}, manager=manager)
    norm.init_seq_order(epoch=1)
    np.testing.assert_allclose(norm.get_data(0, "data")[:, 0], a / 32768.0, rtol=1e-6)


def test_raw_wav_8bit_and_bad_files(tmp_path, manager) -> None:
    _write_wav(tmp_path / "u8.wav", np.array([0, 128, 255, 130]), width=1, rate=8000)
    ds = init_dataset({"class": "RawWavDataset", "files": [str(tmp_path / "u8.wav")]}, manager=manager)
    ds.init_seq_order(epoch=1)
    np.testing.assert_array_equal(ds.get_data(0, "data")[:, 0], [-128, 0, 127, 2])
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234garbage")
    bad = init_dataset({"class": "RawWavDataset", "files": [str(tmp_path / "bad.wav")]}, manager=manager)
    bad.init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match="bad.wav cannot be read"):
        bad.get_seq(0)
    rate = init_dataset({"class": "RawWavDataset", "files": [str(tmp_path / "u8.wav")], "sample_rate": 16000},
                        manager=manager)
    rate.init_seq_order(epoch=1)
    with pytest.raises(DatasetError, match="u8.wav has sample rate 8000, expected 16000"):
        rate.get_seq(0)
