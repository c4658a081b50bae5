"""The 2017 Theano-era demos (JSON, no backend key, dataset strings, Theano layer classes) run through the real
``returnn`` CLI on the default backend (theano) and with ``++backend tf``, with the same scores."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")
pytest.importorskip("returnn_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ("++train", "Task12AXDataset:num_seqs=40", "++dev", "Task12AXDataset:num_seqs=10,fixed_random_seed=1",
         "++num_epochs", "2")


def _run(demo: str, tmp_path, *extra: str) -> str:
    # PyTensor without C compilation of each graph: the same ops, seconds instead of minutes on a cold cache
    env = {**os.environ, "PYTENSOR_FLAGS": "mode=FAST_COMPILE"}
    args = [sys.executable, "-m", "returnn_core", os.path.join(REPO, "demos", demo), *SMALL,
            "++model", str(tmp_path / (extra[-1] if extra else "default") / "model"), *extra]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _scores(log: str) -> list[tuple[float, ...]]:
    found = re.findall(r"^epoch \d+ score: (\S+) elapsed: \S+ dev: score (\S+) error (\S+)", log, re.M)
    return [tuple(float(v) for v in m) for m in found]


@pytest.mark.parametrize("demo", ["demo-2017-12ax-lstm2.config", "demo-2017-12ax-native-lstm.config"])
def test_2017_demo_runs_alike_on_both_backends(demo: str, tmp_path) -> None:
    default_log = _run(demo, tmp_path)
    assert "backend: theano (RETURNN's default when a config names no backend)" in default_log
    scores = {"theano": _scores(default_log), "tf": _scores(_run(demo, tmp_path, "++backend", "tf"))}
    assert len(scores["theano"]) == 2, default_log[-2000:]
    np.testing.assert_allclose(scores["theano"], scores["tf"], rtol=2e-3, atol=2e-3, err_msg=demo)
