"""RETURNN's updater defaults (its TFUpdater of 2017-2019): which optimizer a config gets, with which epsilon."""

from __future__ import annotations

import pytest

from returnn_core.config import Config
from returnn_core.engine import OptimizerSettings
from returnn_core.frontend.optimizers import Adadelta, Adam, Nadam, RmsProp, Sgd


def optimizer(values: dict, cls: type):
    """The optimizer ``cls`` as a config with ``values`` sets it up."""
    return OptimizerSettings.from_config(Config(values)).create(cls)


def test_no_optimizer_setting_is_plain_gradient_descent() -> None:
    settings = OptimizerSettings.from_config(Config({}))
    assert settings.name == "sgd" and settings.opts == {}
    assert optimizer({}, Sgd).opts == {}


@pytest.mark.parametrize("flag, cls", [("adam", Adam), ("nadam", Nadam), ("adadelta", Adadelta)])
def test_legacy_flags_take_optimizer_epsilon_default_1e16(flag: str, cls: type) -> None:
    assert OptimizerSettings.from_config(Config({flag: True})).name == flag
    assert optimizer({flag: True}, cls).opts["epsilon"] == 1e-16
    assert optimizer({flag: True, "optimizer_epsilon": 1e-8}, cls).opts["epsilon"] == 1e-8


def test_optimizer_dict_gets_epsilon_unless_it_sets_one() -> None:
    assert optimizer({"optimizer": {"class": "adam"}}, Adam).opts["epsilon"] == 1e-16
    assert optimizer({"optimizer": {"class": "rmsprop"}, "optimizer_epsilon": 0.1}, RmsProp).opts["epsilon"] == 0.1
    assert optimizer({"optimizer": {"class": "adam", "epsilon": 1e-3}}, Adam).opts["epsilon"] == 1e-3


def test_momentum_value_selects_momentum() -> None:
    settings = OptimizerSettings.from_config(Config({"momentum": 0.5}))
    assert settings.name == "momentum" and settings.opts == {"momentum": 0.5}
