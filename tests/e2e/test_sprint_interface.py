"""Sprint driving RETURNN (returnn_sprint.interface) with the TF backend: PythonTrainer training epoch by epoch,
then the PythonFeatureScorer scoring with the trained model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from returnn_sprint.extern_dataset import pymod_path  # noqa: E402
from sprint_corpus import FAKE_SPRINT, NUM_CLASSES, make_corpus  # noqa: E402

from returnn_core.learning_rate.state_file import load_state  # noqa: E402


def _sprint(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, FAKE_SPRINT, *args], capture_output=True, text=True, env=env, timeout=300)


def _pymod(config: str) -> list[str]:
    return [f"--*.pymod-path={pymod_path()}", "--*.pymod-name=returnn_sprint.interface", f"--*.pymod-config={config}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs trained by three Sprint runs of the PythonTrainer."""
    tmp = tmp_path_factory.mktemp("sprint-trainer")
    corpus = make_corpus(tmp / "train.npz", 40, 11)
    cfg = tmp / "returnn.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
batch_size = 400
max_seqs = 8
network = {{
    "hidden": {{"class": "linear", "activation": "tanh", "n_out": 16}},
    "output": {{"class": "softmax", "loss": "ce", "from": ["hidden"]}},
}}
adam = True
learning_rate = 0.02
model = "{tmp}/model"
learning_rate_file = "{tmp}/lr.txt"
log_verbosity = 2
""")
    for epoch in (1, 2, 3):
        res = _sprint(f"--*.corpus.file={corpus}", "--*.trainer=python-trainer",
                      *_pymod(f"action:train,configfile:{cfg},epoch:{epoch}"))
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return tmp, corpus, cfg


def test_python_trainer_trains_one_epoch_per_sprint_run(trained):
    tmp, corpus, cfg = trained
    state = load_state(str(tmp / "lr.txt"))
    assert sorted(state) == [1, 2, 3]
    scores = [state[ep].error["train_score"] for ep in (1, 2, 3)]
    assert scores[2] < 0.6 * scores[0], scores
    # running an epoch out of order is refused with a clear message
    res = _sprint(f"--*.corpus.file={corpus}", "--*.trainer=python-trainer", *_pymod(f"action:train,configfile:{cfg},epoch:7"))
    assert res.returncode != 0
    assert "newest checkpoint" in res.stdout + res.stderr and "epoch 3" in res.stdout + res.stderr


def test_feature_scorer_scores_with_the_trained_model(trained):
    tmp, corpus, cfg = trained
    out = tmp / "scores.npz"
    res = _sprint(f"--*.corpus.file={corpus}", "--*.action=feature-scorer", f"--*.fake.output={out}",
                  *_pymod(f"action:forward,configfile:{cfg},epoch:3"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ref, got = np.load(corpus), np.load(out)
    correct = total = 0
    for i, name in enumerate(got["names"]):
        assert name == ref["names"][i]
        correct += int((got[f"best_{i}"] == ref[f"align_{i}"]).sum())
        total += len(ref[f"align_{i}"])
    assert correct / total > 0.9, correct / total
    # with a strong prior on class 0 the scorer prefers class 0 everywhere
    priors = tmp / "priors.txt"
    priors.write_text("\n".join(["-50"] + ["0"] * (NUM_CLASSES - 1)) + "\n")
    res = _sprint(f"--*.corpus.file={corpus}", "--*.action=feature-scorer", f"--*.fake.output={out}",
                  *_pymod(f"action:forward,configfile:{cfg},epoch:3,prior_file:{priors},prior_scale:1.0"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert all((np.load(out)[f"best_{i}"] == 0).all() for i in range(len(got["names"])))


def test_criterion_by_sprint_is_refused(trained):
    tmp, corpus, cfg = trained
    res = _sprint(f"--*.corpus.file={corpus}", "--*.trainer=python-trainer", "--*.target-mode=criterion-by-sprint",
                  *_pymod(f"action:train,configfile:{cfg},epoch:4"))
    assert res.returncode != 0
    assert "criterion-by-sprint" in res.stdout + res.stderr
