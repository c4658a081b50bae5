"""The demos give the same scores on the tf and the theano backend (one layer definition, two backends).

Dropout draws differ between the frameworks' random generators, so each demo runs without it here; everything
else (initial parameters, seq order, batches, update rules) is the same by construction.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from returnn_core.config import Config

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")
pytest.importorskip("returnn_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMOS = os.path.join(REPO, "demos")
SMALL = {
    "demo-12ax.config": {"train": {"class": "Task12AXDataset", "num_seqs": 60},
                         "dev": {"class": "Task12AXDataset", "num_seqs": 20, "fixed_random_seed": 1}},
    "demo-blstm-newbob.config": {"train": {"class": "Task12AXDataset", "num_seqs": 60},
                                 "dev": {"class": "Task12AXDataset", "num_seqs": 20, "fixed_random_seed": 1}},
    "demo-ctc.config": {
        "train": {"class": "TaskNumberBaseConvertDataset", "input_base": 2, "output_base": 8, "num_seqs": 120},
        "dev": {"class": "TaskNumberBaseConvertDataset", "input_base": 2, "output_base": 8, "num_seqs": 20,
                "fixed_random_seed": 1}},
}


def _without_dropout(network: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in layer.items() if k != "dropout"} for name, layer in network.items()}


def _config(demo: str, backend: str, tmp_path: Any, **extra: Any) -> str:
    """The demo as a Python config for ``backend``: small data, 2 epochs, no dropout, files under tmp_path."""
    config = Config.from_args([os.path.join(DEMOS, demo)])
    values = {key: config.typed_value(key) for key in config.keys()}
    values.update(SMALL[demo])
    values.update(backend=backend, num_epochs=2, network=_without_dropout(values["network"]),
                  model=str(tmp_path / backend / "model"), log_verbosity=3, **extra)
    if "learning_rate_file" in values:
        values["learning_rate_file"] = str(tmp_path / backend / "learning_rates")
    path = tmp_path / f"{backend}.config"
    path.write_text("#!python\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()))
    return str(path)


def _returnn(*args: str) -> str:
    # the same ops without C compilation of each graph (minutes on a cold cache for these short runs)
    env = {**os.environ, "PYTENSOR_FLAGS": ",".join(f for f in (os.environ.get("PYTENSOR_FLAGS"), "mode=FAST_COMPILE") if f)}
    proc = subprocess.run([sys.executable, "-m", "returnn_core", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _scores(log: str) -> list[tuple[float, ...]]:
    """Per epoch: train score, dev score, dev error."""
    out = []
    for m in re.finditer(r"^epoch \d+ score: (\S+) elapsed: \S+ dev: score (\S+) error (\S+)", log, re.M):
        out.append(tuple(float(v) for v in m.groups()))
    return out


@pytest.mark.parametrize("demo", sorted(SMALL))
def test_demo_scores_agree(demo: str, tmp_path) -> None:
    scores = {b: _scores(_returnn(_config(demo, b, tmp_path))) for b in ("tf", "theano")}
    assert len(scores["tf"]) == 2, scores
    np.testing.assert_allclose(scores["theano"], scores["tf"], rtol=2e-3, atol=2e-3, err_msg=demo)


def test_forward_demo_outputs_agree(tmp_path) -> None:
    import h5py

    outputs = {}
    for backend in ("tf", "theano"):
        _returnn(_config("demo-12ax.config", backend, tmp_path))
        out = str(tmp_path / f"{backend}-forward.hdf")
        _returnn(os.path.join(DEMOS, "demo-12ax-forward.config"), "++backend", backend,
                 "++model", str(tmp_path / backend / "model"), "++output_file", out)
        with h5py.File(out, "r") as f:
            outputs[backend] = (np.asarray(f["inputs"]), np.asarray(f["seqLengths"]))
    np.testing.assert_array_equal(outputs["theano"][1], outputs["tf"][1])
    np.testing.assert_allclose(outputs["theano"][0], outputs["tf"][0], atol=2e-3)
