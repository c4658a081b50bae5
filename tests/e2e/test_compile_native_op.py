"""``returnn compile-native-op`` warms the very cache training then uses: theano training compiles no NativeLstm again."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

pytest.importorskip("returnn_native")
pytest.importorskip("returnn_theano")
pytest.importorskip("returnn_datasets")

CONFIG = """#!returnn
backend = "theano"
train = {"class": "Task12AXDataset", "num_seqs": 6}
num_inputs = 9
num_outputs = 2
batch_size = 500
max_seqs = 3
network = {
    "fw0": {"class": "rec", "unit": "nativelstm", "n_out": 4},
    "output": {"class": "softmax", "loss": "ce", "from": ["fw0"]},
}
adam = True
learning_rate = 0.01
model = "out/model"
num_epochs = 1
"""


def _lstm_modules(cache: str) -> list[str]:
    """PyTensor's compiled C modules that call the NativeLstm kernels."""
    found = []
    for path in glob.glob(os.path.join(cache, "pytensor", "*", "*", "mod.cpp")):
        with open(path, encoding="utf-8", errors="replace") as f:
            code = f.read()
        if "returnn_lstm_fwd_cpu" in code or "returnn_lstm_bwd_cpu" in code:
            found.append(os.path.dirname(path))
    return sorted(found)


def test_theano_training_reuses_what_compile_native_op_built(tmp_path):
    cache, home = str(tmp_path / "cache"), tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "RETURNN_CACHE_DIR": cache, "HOME": str(home)}
    env.pop("PYTENSOR_FLAGS", None)
    run = [sys.executable, "-m", "returnn_core"]
    res = subprocess.run([*run, "compile-native-op", "--backend", "theano"], capture_output=True, text=True, env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    assert f"NativeLstm [theano] PyTensor compile cache {cache}" in res.stdout
    built = _lstm_modules(cache)
    assert built and not (home / ".pytensor").exists()  # not PyTensor's default place, which training never reads

    (tmp_path / "train.config").write_text(CONFIG)
    res = subprocess.run([*run, "train.config"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    assert _lstm_modules(cache) == built  # training found the prebuilt modules and compiled none of its own
