"""RETURNN's own learning-rate-control expectations (its tests/test_LearningRateControl.py), on our public API."""

from __future__ import annotations

import numpy
import pytest

from returnn_core.config import Config
from returnn_core.learning_rate import (
    EpochData,
    LearningRateControl,
    NewbobMultiEpoch,
    NewbobRelative,
    learning_rate_control_from_config,
    load_state,
)
from returnn_core.plugin import PluginManager


def control(values: dict) -> LearningRateControl:
    """The control a config with ``values`` selects."""
    cfg = Config()
    cfg.update(values)
    return learning_rate_control_from_config(cfg, PluginManager(disabled=()))


def test_saved_scores_with_slashes_survive_reload(tmp_path):
    path = str(tmp_path / "lr")
    ctrl = LearningRateControl(1.0, filename=path)
    ctrl.epoch_data[2] = EpochData(0.0008, {"dev_error_output/output_prob": 0.16270349413262444, "dev_score_ctc": 1.07})
    ctrl.save()
    again = LearningRateControl(1.0, filename=path)
    assert again.epoch_data[2].learning_rate == pytest.approx(0.0008)
    assert again.epoch_data[2].error["dev_error_output/output_prob"] == 0.16270349413262444


def test_file_with_nan_inf_and_old_single_score(tmp_path):
    path = tmp_path / "lr"
    path.write_text(
        "{1: EpochData(learningRate=0.01, error={'dev_score': nan, 'train_score': inf}),\n"
        " 2: EpochData(learningRate=0.005, error=0.5),\n"
        " 3: EpochData(learning_rate=0.0025, error={'dev_score': -inf}),\n}\n"
    )
    data = load_state(str(path))
    assert numpy.isnan(data[1].error["dev_score"]) and data[1].error["train_score"] == float("inf")
    assert data[2].error == {"old_format_score": 0.5}
    assert data[3].learning_rate == 0.0025 and data[3].error["dev_score"] == float("-inf")


@pytest.mark.parametrize(
    "train, dev",
    [
        ({"train_score": 1.93}, {"dev_score": 1.99, "dev_error": 0.6}),
        ({"train_score": {"cost:output": 1.93}}, {"dev_score": {"cost:output": 1.99}, "dev_error": {"error:output": 0.6}}),
    ],
)
def test_newbob_error_key_single_output(train, dev):
    ctrl = control({"learning_rate_control": "newbob", "learning_rate_control_error_measure": "dev_score"})
    assert isinstance(ctrl, NewbobRelative)
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, train)
    ctrl.set_epoch_error(1, dev)
    assert {"train_score", "dev_score", "dev_error"} <= set(ctrl.epoch_data[1].error)
    assert ctrl.error_key(1) == "dev_score"


def test_newbob_error_key_several_outputs():
    ctrl = control({"learning_rate_control": "newbob", "learning_rate_control_error_measure": "dev_score"})
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, {"train_score": {"cost:output": 1.95, "cost:out2": 2.95}})
    ctrl.set_epoch_error(1, {"dev_score": {"cost:output": 1.99, "cost:out2": 2.99},
                             "dev_error": {"error:output": 0.6, "error:out2": 0.7}})
    assert {"train_score_output", "train_score_out2", "dev_score_output", "dev_score_out2", "dev_error_output",
            "dev_error_out2"} <= set(ctrl.epoch_data[1].error)
    assert ctrl.error_key(1) == "dev_score_output"


def test_error_key_without_measure_prefers_output_layer_scores():
    ctrl = NewbobRelative(1.0)
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, {"dev_error": {"error:output": 0.5, "error:out2": 0.3},
                             "dev_score": {"cost:output": 1.0, "cost:out2": 2.0}})
    assert ctrl.error_key(1) == "dev_score_output"


def test_newbob_keeps_rate_until_two_epochs_are_scored():
    ctrl = control({"learning_rate_control": "newbob", "learning_rate": 0.01})
    assert ctrl.learning_rate(1) == 0.01
    ctrl.set_epoch_error(1, {"dev_score": {"cost:output": 1.99}, "dev_error": {"error:output": 0.6}})
    assert ctrl.error_key(1) == "dev_score"
    assert ctrl.learning_rate(2) == 0.01


def test_newbob_multi_epoch_second_epoch_keeps_rate():
    lr = 0.0005
    ctrl = control({"learning_rate_control": "newbob_multi_epoch", "learning_rate_control_relative_error_relative_lr": True,
                    "newbob_multi_num_epochs": 6, "newbob_multi_update_interval": 1, "learning_rate": lr})
    assert isinstance(ctrl, NewbobMultiEpoch)
    assert ctrl.learning_rate(1) == lr
    ctrl.set_epoch_error(1, {"dev_error": 0.503, "dev_score": 2.32, "train_score": 3.09})
    assert ctrl.learning_rate(2) == lr


def test_scores_under_different_keys_are_not_compared():
    ctrl = NewbobRelative(1.0)
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, {"train_score": 1.0})  # e.g. no dev set in the first epoch
    ctrl.learning_rate(2)
    ctrl.set_epoch_error(2, {"dev_score": 5.0, "train_score": 0.5})
    assert ctrl.relative_error(1, 2) is None
    assert ctrl.learning_rate(3) == 1.0


def test_later_schedule_entry_after_warmup_and_reload(tmp_path):
    lr = 0.0005
    warmup = list(numpy.linspace(0.0003, lr, num=10))
    values = {"learning_rate_file": str(tmp_path / "lr"), "learning_rate_control": "newbob_multi_epoch",
              "learning_rate_control_relative_error_relative_lr": True,
              "learning_rate_control_min_num_epochs_per_new_lr": 3, "newbob_multi_num_epochs": 6,
              "newbob_multi_update_interval": 1, "learning_rate": lr, "learning_rates": warmup,
              "min_learning_rate": lr / 50.0}
    ctrl = control(values)
    for epoch in range(1, 251):
        ctrl.learning_rate(epoch)
        ctrl.set_epoch_error(epoch, {"train_score": 0.5, "train_error": 0.5, "dev_score": 0.5, "dev_error": 0.5})
    ctrl.save()
    rates = [ctrl.epoch_data[e].learning_rate for e in range(1, 17)]
    # warmup, then the rate holds for 3 epochs before each halving (no improvement at all)
    assert rates[9:] == pytest.approx([lr, lr, lr, lr / 2, lr / 2, lr / 2, lr / 4])
    assert ctrl.epoch_data[250].learning_rate == pytest.approx(lr / 50)
    schedule = {i + 1: v for i, v in enumerate(warmup)}
    schedule[251] = lr * 0.5
    again = control({**values, "learning_rates": schedule})
    assert 251 in again.epoch_data
    assert again.learning_rate(251) == pytest.approx(lr * 0.5)


def test_returnn_method_names() -> None:
    # RETURNN's test_init_error_old, on its own names
    from returnn_core.learning_rate import load_learning_rate_control_from_config

    cfg = Config()
    cfg.update({"learning_rate_control": "newbob", "learning_rate_control_error_measure": "dev_score"})
    lrc = load_learning_rate_control_from_config(cfg)
    assert isinstance(lrc, NewbobRelative)
    lrc.get_learning_rate_for_epoch(1)
    lrc.set_epoch_error(1, {"train_score": 1.9344199658230012})
    lrc.set_epoch_error(1, {"dev_score": 1.99, "dev_error": 0.6})
    assert {"train_score", "dev_score", "dev_error"} <= set(lrc.get_epoch_error_dict(1))
    assert lrc.get_error_key(1) == "dev_score" and lrc.get_epoch_error_value(1) == 1.99
    assert lrc.get_epoch_error_dict(7) == {}
    lrc.get_learning_rate_for_epoch(2)
    lrc.set_epoch_error(2, {"train_score": 1.8})
    lrc.set_epoch_error(2, {"dev_score": 1.9, "dev_error": 0.5})
    assert lrc.get_learning_rate_for_epoch(3) == 1.0  # 1.99 -> 1.9 is -4.7%: better than -1%, no decay
    assert lrc.get_last_best_epoch(last_epoch=3) is None  # the latest scored epoch, 2, is the best


def test_output_layer_score_drives_when_a_total_is_also_recorded() -> None:
    # our driver records the sum over output layers as dev_score next to RETURNN's per-layer keys; RETURNN (which has
    # only the per-layer ones) decides on the output layer's score, with or without a configured measure
    scores = {"dev_score": 3.0, "dev_score_output": 1.0, "dev_score_out2": 2.0, "train_score": 2.5,
              "train_score_output": 0.9}
    for measure in (None, "dev_score"):
        ctrl = NewbobRelative(1.0, error_measure=measure)
        ctrl.learning_rate(1)
        ctrl.set_epoch_error(1, scores)
        assert ctrl.error_key(1) == "dev_score_output" and ctrl.epoch_error(1) == 1.0
    ctrl = NewbobRelative(1.0, error_measure="train_score")
    ctrl.learning_rate(1)
    ctrl.set_epoch_error(1, scores)
    assert ctrl.error_key(1) == "train_score_output"
