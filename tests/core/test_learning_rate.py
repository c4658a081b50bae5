"""Learning-rate control decisions and the state file."""

from __future__ import annotations

import os

import pytest

from returnn_core.config import Config
from returnn_core.errors import ConfigError
from returnn_core.learning_rate import (
    NewbobAbs,
    NewbobMultiEpoch,
    NewbobRelative,
    learning_rate_control_from_config,
    load_state,
)
from returnn_core.plugin import PluginManager


def run(ctrl, scores):
    """Feed dev scores epoch by epoch; return the rate of each epoch."""
    rates = []
    for epoch, score in enumerate(scores, 1):
        rates.append(ctrl.learning_rate(epoch))
        ctrl.set_epoch_error(epoch, {"dev_score": score, "train_score": 9.0})
    return rates


def test_newbob_relative_decays_when_improvement_is_small():
    ctrl = NewbobRelative(1.0)
    # epoch 3 sees 1.0 -> 0.8 (-20%): keep; epoch 4 sees 0.8 -> 0.796 (-0.5% > -1%): halve; epoch 5: 0.796 -> 0.9 worse: halve
    assert run(ctrl, [1.0, 0.8, 0.796, 0.9, 0.5]) == [1.0, 1.0, 1.0, 0.5, 0.25]


def test_newbob_abs_uses_absolute_change_and_min_rate():
    ctrl = NewbobAbs(1.0, relative_error_threshold=-0.05, min_learning_rate=0.3)
    # 0.5 -> 0.46 (-0.04 > -0.05): decay to 0.5; 0.46 -> 0.3 (-0.16): keep; 0.3 -> 0.29: decay, floor 0.3
    assert run(ctrl, [0.5, 0.46, 0.3, 0.29, 0.2]) == [1.0, 1.0, 0.5, 0.5, 0.3]


def test_newbob_multi_epoch_compares_span_at_interval():
    ctrl = NewbobMultiEpoch(1.0, num_epochs=2, update_interval=2)
    # decision epochs 3, 5, 7: epoch 3 compares e1..e2 (only 1 back: first<1) -> keep;
    # epoch 5 compares e2 (0.9) with e4 (0.895): -0.6% -> decay; epoch 7 compares e4 with e6 at old rate: rates differ -> keep
    assert run(ctrl, [1.0, 0.9, 0.897, 0.895, 0.5, 0.4, 0.3]) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def test_schedule_and_error_measure():
    ctrl = NewbobRelative(1.0, learning_rates=[0.1, 0.2], error_measure="train_score")
    assert run(ctrl, [1.0, 1.0, 1.0]) == [0.1, 0.2, 0.1]  # train_score constant: decay from 0.2


def test_state_file_roundtrip_and_resume(tmp_path):
    path = str(tmp_path / "lr" / "learning_rates")
    ctrl = NewbobRelative(1.0, filename=path)
    run(ctrl, [1.0, 0.999])
    ctrl.save()
    assert not [f for f in os.listdir(tmp_path / "lr") if f != "learning_rates"]  # no temp files left
    again = NewbobRelative(1.0, filename=path)
    assert again.epoch_data[2].error["dev_score"] == 0.999
    assert again.learning_rate(3) == 0.5  # decided from the loaded history


def test_reads_returnn_written_state_file(tmp_path):
    path = tmp_path / "lr.txt"
    path.write_text("{1: EpochData(learningRate=0.01, error={\n'dev_error': 0.5,\n'dev_score': 1.5,\n}),\n"
                    "2: EpochData(learningRate=0.005, error={}),\n}\n")
    data = load_state(str(path))
    assert data[1].learning_rate == 0.01 and data[1].error == {"dev_error": 0.5, "dev_score": 1.5}
    assert data[2].learning_rate == 0.005


def test_corrupt_state_file_names_file(tmp_path):
    path = tmp_path / "lr.txt"
    path.write_text("{1: EpochData(learningRate=0.01, error={\n")
    with pytest.raises(ConfigError, match=r"lr.txt:\d+: learning-rate file is corrupt"):
        load_state(str(path))
    path.write_text("{1: __import__('os').system('true')}")
    with pytest.raises(ConfigError, match="expected EpochData"):
        load_state(str(path))


def test_control_from_config_through_registry():
    cfg = Config({"learning_rate_control": "newbob_abs", "learning_rate": 0.1, "newbob_error_threshold": -0.2,
                  "newbob_learning_rate_decay": 0.7})
    ctrl = learning_rate_control_from_config(cfg, PluginManager(disabled=()))
    assert isinstance(ctrl, NewbobAbs) and ctrl.relative_error_threshold == -0.2 and ctrl.learning_rate_decay == 0.7
