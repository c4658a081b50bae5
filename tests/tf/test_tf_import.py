"""The backend's TensorFlow import leaves Keras (and what Keras pulls in) to the first use of ``tf.keras``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

PROGRAM = """
import sys
from returnn_tf.tf_import import import_tensorflow
tf = import_tensorflow()
print("after import:", "keras" in sys.modules, "matplotlib" in sys.modules)
assert import_tensorflow() is tf
dense = tf.keras.layers.Dense(2)
print("tf.keras works:", tuple(dense(tf.zeros([1, 3])).shape), "keras" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="Keras is not installed")
def test_keras_is_imported_on_first_use_only() -> None:
    env = {**os.environ, "DISABLE_CUDA": "1"}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "after import: False False" in out.stdout
    assert "tf.keras works: (1, 2) True" in out.stdout
