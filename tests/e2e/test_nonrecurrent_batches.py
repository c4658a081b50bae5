"""RETURNN's non-recurrent batches: a network of framewise layers trains on rows that join several seqs' frames."""

from __future__ import annotations

import io
import math
import re

import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_datasets")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import init_dataset  # noqa: E402
from returnn_core.engine import Engine  # noqa: E402
from returnn_core.log import Log  # noqa: E402

TRAIN = {"class": "Task12AXDataset", "num_seqs": 30, "fixed_random_seed": 1}
FRAMEWISE = {"h": {"class": "hidden", "n_out": 8, "activation": "tanh"},
             "output": {"class": "softmax", "loss": "ce", "from": "h"}}
STEP = re.compile(r"^train epoch 1, step (\d+), .* num_seqs (\d+),", re.M)


def _train(tmp_path, network: dict) -> list[tuple[int, int]]:
    config = Config({"backend": "tf", "task": "train", "train": TRAIN, "num_inputs": 9, "num_outputs": 2,
                     "network": network, "batch_size": 200, "max_seqs": 100, "num_epochs": 1,
                     "learning_rate": 0.01, "model": str(tmp_path / "model"), "log_verbosity": 4})
    out = io.StringIO()
    Engine(config, log=Log(verbosity=4, stream=out)).run()
    return [(int(a), int(b)) for a, b in STEP.findall(out.getvalue())]


def _total_frames() -> int:
    dataset = init_dataset(dict(TRAIN))
    dataset.init_seq_order(1)
    return sum(dataset.get_seq(i).features["data"].shape[0] for i in range(dataset.num_seqs))


def test_framewise_network_joins_frames_into_full_rows(tmp_path) -> None:
    steps = _train(tmp_path, FRAMEWISE)
    # every row but the last is filled to batch_size frames, whatever the seq boundaries
    assert len(steps) == math.ceil(_total_frames() / 200)
    assert all(n == 1 for _, n in steps)


def test_recurrent_network_keeps_seqs_apart(tmp_path) -> None:
    steps = _train(tmp_path, {**FRAMEWISE, "h": {"class": "rec", "unit": "lstm", "n_out": 8}})
    assert sum(n for _, n in steps) == TRAIN["num_seqs"]
    assert any(n > 1 for _, n in steps)
