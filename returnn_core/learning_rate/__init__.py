"""Learning-rate control: the rate of each epoch from earlier scores, persisted in ``learning_rate_file``."""

from returnn_core.learning_rate.control import (
    ConstantLearningRate,
    LearningRateControl,
    NewbobAbs,
    NewbobMultiEpoch,
    NewbobRelative,
    flatten_errors,
    learning_rate_control_from_config,
    load_learning_rate_control_from_config,
)
from returnn_core.learning_rate.state_file import EpochData, format_state, load_state, parse_state, save_state

__all__ = [
    "ConstantLearningRate",
    "EpochData",
    "LearningRateControl",
    "NewbobAbs",
    "NewbobMultiEpoch",
    "NewbobRelative",
    "flatten_errors",
    "format_state",
    "learning_rate_control_from_config",
    "load_learning_rate_control_from_config",
    "load_state",
    "parse_state",
    "save_state",
]
