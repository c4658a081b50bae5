"""Learning-rate control decisions and the state file."""

from __future__ import annotations

import io
import os

import pytest

from returnn_core.config import Config
from returnn_core.engine import Engine
from returnn_core.errors import ConfigError
from returnn_core.learning_rate import (
    ConstantLearningRate,
    LearningRateControl,
    NewbobAbs,
    NewbobMultiEpoch,
    NewbobRelative,
    learning_rate_control_from_config,
    load_state,
)
from returnn_core.log import Log
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
    # decisions at epochs 1, 3, 5, 7 on the mean relative change over the last 3 epochs (change / new score):
    # epoch 3: e1->e2 -11% -> keep; epoch 5: e2->e3 -0.33%, e3->e4 -0.22% -> mean -0.28% > -1% -> decay;
    # epoch 7: e4->e5 -79%, e5->e6 -25% -> keep
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


def test_newbob_relative_change_is_relative_to_the_new_score():
    # 1.0 -> 0.9: RETURNN's (new - old) / |new| = -11.1% (below -10.5%: keep); relative to the old score it would be -10%
    assert run(NewbobRelative(1.0, relative_error_threshold=-0.105), [1.0, 0.9, 0.9]) == [1.0, 1.0, 1.0]


def test_relative_error_relative_to_learning_rate():
    # epoch 2 runs at half the initial rate: its -2.04% counts as -4.08%, below the threshold -3%
    plain = NewbobRelative(1.0, learning_rates=[1.0, 0.5], relative_error_threshold=-0.03)
    scaled = NewbobRelative(1.0, learning_rates=[1.0, 0.5], relative_error_threshold=-0.03,
                            relative_error_also_relative_to_learning_rate=True)
    assert run(plain, [1.0, 0.98, 0.9]) == [1.0, 0.5, 0.25]
    assert run(scaled, [1.0, 0.98, 0.9]) == [1.0, 0.5, 0.5]


def test_min_num_epochs_per_new_learning_rate():
    ctrl = NewbobRelative(1.0, min_num_epochs_per_new_learning_rate=3)
    assert run(ctrl, [1.0] * 6) == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert run(NewbobRelative(1.0), [1.0] * 5) == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_nested_errors_are_flattened_as_returnn(tmp_path):
    path = str(tmp_path / "lr.txt")
    ctrl = NewbobRelative(1.0, error_measure="dev_error", filename=path)
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, {"dev_score": {"cost:output": 0.5}, "dev_error": {"error:output": 0.25, "error:aux": 0.5},
                             "train_score": {"cost:output": 1.0, "cost:aux": 2.0}})
    expected = {"dev_score": 0.5, "dev_error_output": 0.25, "dev_error_aux": 0.5, "train_score_output": 1.0,
                "train_score_aux": 2.0}
    assert ctrl.epoch_data[1].error == expected
    assert ctrl.error_key(1) == "dev_error_output" and ctrl.epoch_error(1) == 0.25  # the measure's "_output" variant
    ctrl.save()
    assert load_state(path)[1].error == expected


def test_missing_error_measure_names_the_key():
    ctrl = NewbobRelative(1.0, error_measure="dev_wer")
    run(ctrl, [1.0, 0.9])
    with pytest.raises(ConfigError, match=r"learning_rate_control_error_measure 'dev_wer' is not among the scores of "
                                          r"epoch 1 \(dev_score, train_score\)"):
        ctrl.learning_rate(3)


def test_default_error_key_is_dev_then_train_then_first():
    ctrl = NewbobRelative(1.0)
    ctrl.set_epoch_error(1, {"train_score": 2.0, "dev_score": 1.0})
    ctrl.set_epoch_error(2, {"train_score": 2.0, "b_score": 1.0})
    ctrl.set_epoch_error(3, {"c": 2.0, "b": 1.0})
    assert [ctrl.error_key(e) for e in (1, 2, 3)] == ["dev_score", "train_score", "b"]


def test_scheduled_epochs_are_in_the_learning_rate_file(tmp_path):
    path = str(tmp_path / "lr.txt")
    ctrl = ConstantLearningRate(1.0, learning_rates=[0.1, 0.2, 0.3], filename=path)
    assert ctrl.learning_rate(1) == 0.1
    ctrl.set_epoch_error(1, {"train_score": 3.0})
    ctrl.save()
    state = load_state(path)
    assert {e: d.learning_rate for e, d in state.items()} == {1: 0.1, 2: 0.2, 3: 0.3}
    assert state[1].error == {"train_score": 3.0} and state[2].error == {}
    assert [ctrl.learning_rate(e) for e in (2, 3, 4)] == [0.2, 0.3, 0.3]  # after the schedule: its last rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.1,0.2", {1: 0.1, 2: 0.2}), ("[0.1, 0.2]", {1: 0.1, 2: 0.2}), ("{2: 0.5, 4: 1e-3}", {2: 0.5, 4: 0.001})],
)
def test_learning_rates_from_a_line_based_config(tmp_path, text, expected):
    cfg = tmp_path / "a.config"
    cfg.write_text(f"learning_rate 1.0\nlearning_rates {text}\n")
    ctrl = learning_rate_control_from_config(Config.from_args([str(cfg)]), PluginManager(disabled=()))
    assert {e: d.learning_rate for e, d in ctrl.epoch_data.items()} == expected


class HalvingFromTheStart(LearningRateControl):
    """A custom control: the rate halves every epoch, starting with epoch 1."""

    def calc_learning_rate(self, epoch: int) -> float:
        return self.default_learning_rate * 0.5**epoch


def test_custom_control_decides_epoch_1_too(tmp_path, manager):
    """Through the driver: the custom control's value is used in epoch 1 and written to the file."""
    manager.lr_controls.register("halving", HalvingFromTheStart, plugin="test")
    out = io.StringIO()
    config = Config({
        "backend": "toy", "train": {"class": "ToyDataset", "num_seqs": 4}, "num_epochs": 2, "batch_size": 40,
        "network": {"output": {"class": "softmax", "loss": "ce", "n_out": 2}}, "learning_rate": 0.8,
        "learning_rate_control": "halving", "learning_rate_file": str(tmp_path / "lr.txt"),
        "model": str(tmp_path / "model"),
    })
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    assert "start epoch 1 with learning rate 0.4\n" in out.getvalue()
    state = load_state(str(tmp_path / "lr.txt"))
    assert state[1].learning_rate == 0.4 and state[2].learning_rate == 0.2


def test_last_best_epoch_filters_as_returnn():
    ctrl = ConstantLearningRate(1.0)
    run(ctrl, [0.5, 0.2, 0.9, 0.3, 0.6])
    assert ctrl.last_best_epoch(5) == 2
    assert ctrl.last_best_epoch(5, only_last_n=3) == 4  # epochs 3..5 only
    assert ctrl.last_best_epoch(5, min_score_dist=0.35) == 2  # 0.3 + 0.35 is not below the latest 0.6
    assert ctrl.last_best_epoch(5, min_score_dist=0.45) is None
    assert ctrl.last_best_epoch(5, filter_score=0.1) is None
    assert ctrl.last_best_epoch(5, first_epoch=3) == 4
    assert ctrl.last_best_epoch(2) is None  # the latest is the best: nothing better to go back to
    assert ctrl.last_best_epoch(0) is None
