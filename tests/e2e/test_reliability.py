"""Reliability with the real plugins: HDF files that do not fit the network, a TensorBoard writer that cannot write.

(The backend-independent cases, a second run on a model, leftovers, SIGTERM and a full disk, run on the toy
backend in tests/core/test_reliability.py.)
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from returnn_core.engine import completed_epochs

pytest.importorskip("returnn_datasets")
CORE_TESTS = pathlib.Path(__file__).resolve().parents[1] / "core"


def _toy_run(tmp_path, hdf: pathlib.Path, extra: str = "") -> subprocess.CompletedProcess:
    """``returnn`` on the numpy toy backend (tests/core), training from ``hdf``."""
    sys.path.insert(0, str(CORE_TESTS))
    from fake_dist import install_toy_plugin, run_returnn

    site = install_toy_plugin(tmp_path)
    cfg = tmp_path / "hdf.config"
    cfg.write_text(
        f"#!python\nbackend = 'toy'\nmodel = {str(tmp_path / 'out' / 'model')!r}\n"
        f"train = {{'class': 'HDFDataset', 'files': [{str(hdf)!r}]}}\n"
        "network = {'output': {'class': 'softmax', 'loss': 'ce', 'n_out': 2}}\nnum_epochs = 1\n" + extra
    )
    return run_returnn([str(cfg)], site=site)


@pytest.mark.parametrize("with_classes", [True, False])
def test_hdf_file_that_does_not_fit_the_network_is_named(tmp_path, with_classes):
    from returnn_datasets.hdf.simple_writer import SimpleHDFWriter

    hdf = tmp_path / "train.hdf"
    writer = SimpleHDFWriter(hdf, dim=2, extra_type={"classes": (2, 1, "int32")} if with_classes else None)
    classes = np.zeros((3, 5), "int32")
    classes[0, 2] = 3  # numLabels says 2 classes
    writer.insert_batch(np.ones((3, 5, 2), "float32"), [5, 5, 5], ["seq-0", "seq-1", "seq-2"],
                        extra={"classes": classes} if with_classes else None)
    writer.close()
    # without classes in the file, the config declares them, as for a file that lost a stream
    res = _toy_run(tmp_path, hdf, "" if with_classes else "num_outputs = {'data': [2, 2], 'classes': [2, 1]}\n")
    assert res.returncode == 1
    expected = (
        f"returnn: error: dataset HDFDataset ({hdf}): seq 'seq-0': class 3 of data 'classes' at frame 2 is outside "
        "0..1 (classes has dim 2); fix the data or its num_outputs"
        if with_classes
        else f"returnn: error: dataset HDFDataset ({hdf}) has no data 'classes', which the network reads; it has: data"
    )
    assert res.stderr.strip().splitlines() == [expected]


def test_tensorboard_writer_failing_does_not_stop_training(tmp_path):
    pytest.importorskip("returnn_tf")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cfg = tmp_path / "tb.config"
    cfg.write_text(
        "#!python\nbackend = 'tf'\n"
        "train = {'class': 'Task12AXDataset', 'num_seqs': 8}\n"
        "network = {'output': {'class': 'softmax', 'loss': 'ce'}}\n"
        f"model = {str(tmp_path / 'out' / 'model')!r}\n"
        f"tf_log_dir = {str(blocker / 'tensorboard')!r}\n"
        "num_epochs = 2\nbatch_size = 2000\nmax_seqs = 4\nlearning_rate = 0.01\nlog_verbosity = 3\n"
    )
    res = subprocess.run([sys.executable, "-m", "returnn_core", str(cfg)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stdout.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: TensorBoard summaries stopped (")
    assert warnings[0].endswith("); training goes on without them")
    assert completed_epochs(str(tmp_path / "out" / "model"), ".index") == [1, 2]
