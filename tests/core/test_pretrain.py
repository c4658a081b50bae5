"""Layer-wise pretraining: the network of each epoch per construction algo, repetitions, a callable algo,
WrapEpochValue, carrying params, checkpoint names, the 2017 hidden_size description, and errors on bad values."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from config_files import load_python_config

from returnn_core.config import Config
from returnn_core.engine import Engine
from returnn_core.engine.checkpoints import checkpoint_prefix, completed_epochs, epoch_checkpoint
from returnn_core.engine.pretrain import carried_params, layer_dict, pretrain_from_config
from returnn_core.errors import ConfigError, TrainingError
from returnn_core.frontend.layers.theano_era.hidden import HiddenLayer
from returnn_core.frontend.layers.theano_era.lstm_layers import Lstm2Layer, LstmLayer, SimpleLstmLayer
from returnn_core.log import Log
from returnn_core.network.pretrain import Pretrain, WrapEpochValue
from returnn_core.network.topology import network_from_topology, registry_accepts
from returnn_core.plugin import PluginManager, Registrar, hookimpl

CHAIN = {
    "hidden_0": {"class": "hidden", "n_out": 10, "from": ["data"]},
    "hidden_1": {"class": "hidden", "n_out": 10, "from": ["hidden_0"]},
    "hidden_2": {"class": "hidden", "n_out": 10, "from": ["hidden_1"]},
    "output": {"class": "softmax", "loss": "ce", "from": ["hidden_2"]},
}


def layers_per_epoch(pretrain: Pretrain) -> list[list[str]]:
    return [sorted(pretrain.get_network_json_for_epoch(e)) for e in range(1, pretrain.get_train_num_epochs() + 1)]


def test_from_output_is_the_default_and_grows_one_hidden_layer_per_epoch():
    pretrain = Pretrain(CHAIN)
    assert pretrain.get_train_num_epochs() == 3
    assert layers_per_epoch(pretrain) == [["hidden_0", "output"], ["hidden_0", "hidden_1", "output"], sorted(CHAIN)]
    assert pretrain.get_network_json_for_epoch(1)["output"]["from"] == ["hidden_0"]
    assert pretrain.get_network_json_for_epoch(2)["output"]["from"] == ["hidden_1"]
    # after pretraining, the config's own network
    assert pretrain.get_network_json_for_epoch(7) == CHAIN == pretrain.get_final_network_json()
    assert CHAIN["output"]["from"] == ["hidden_2"]  # the config's dict is left alone
    assert str(pretrain) == "Pretrain construction algo 'from_output', number of pretrain epochs: 3"


def test_from_input_grows_from_the_data_and_takes_fixed_layers_along():
    net = {"window": {"class": "window", "window_size": 3, "trainable": False, "from": ["data"]},
           **{k: dict(v) for k, v in CHAIN.items()}}
    net["hidden_0"]["from"] = ["window"]
    pretrain = Pretrain(net, construction_algo="from_input")
    assert layers_per_epoch(pretrain) == [
        ["hidden_0", "output", "window"], ["hidden_0", "hidden_1", "output", "window"], sorted(net)]
    assert pretrain.get_network_json_for_epoch(1)["output"]["from"] == ["hidden_0"]
    assert pretrain.get_network_json_for_epoch(2)["output"]["from"] == ["hidden_1"]


def test_no_network_modifications_trains_the_full_network_for_the_repetitions():
    pretrain = Pretrain(CHAIN, construction_algo="no_network_modifications", repetitions=2)
    assert layers_per_epoch(pretrain) == [sorted(CHAIN)] * 2


@pytest.mark.parametrize(("repetitions", "counts"), [
    (None, [1, 1, 1]),
    (2, [2, 2, 2]),
    ([1, 3], [1, 3, 3]),
    ({"default": 2, "final": 1}, [2, 2, 1]),
    ({0: 3}, [3, 1, 1]),
    ({"default": 0, "final": 2}, [0, 0, 2]),
])
def test_repetitions_as_int_list_or_dict(repetitions, counts):
    pretrain = Pretrain(CHAIN, repetitions=repetitions)
    assert pretrain.repetitions == counts
    sizes = [len(layers) for layers in layers_per_epoch(pretrain)]
    assert sizes == [2] * counts[0] + [3] * counts[1] + [4] * counts[2]


def test_a_callable_construction_algo_gets_idx_and_a_copy_and_none_ends_it():
    calls = []

    def custom_construction_algo(idx, net_dict):
        calls.append(idx)
        if idx == 2:
            return None
        keep = idx + 1
        for i in range(keep, 3):
            del net_dict[f"hidden_{i}"]
        net_dict["output"]["from"] = [f"hidden_{keep - 1}"]
        net_dict["output"]["#note"] = idx  # in place on its own copy
        return net_dict

    pretrain = Pretrain(CHAIN, construction_algo=custom_construction_algo, repetitions=[2, 1])
    assert calls == [0, 1, 2]
    assert layers_per_epoch(pretrain) == [["hidden_0", "output"]] * 2 + [["hidden_0", "hidden_1", "output"]] + [
        sorted(CHAIN)]
    assert "#note" not in CHAIN["output"]
    assert "custom_construction_algo" in str(pretrain) and "(repetitions: [2, 1, 1])" in str(pretrain)


def test_a_step_may_set_its_own_repetition():
    def algo(idx, net_dict):
        return {**net_dict, "#repetition": 3} if idx == 0 else None

    pretrain = Pretrain(CHAIN, construction_algo=algo)
    assert pretrain.repetitions == [3, 1]
    assert "#repetition" not in pretrain.get_network_json_for_epoch(1)


def test_wrap_epoch_values_are_resolved_per_pretrain_epoch():
    net = {k: dict(v) for k, v in CHAIN.items()}
    net["output"]["dropout"] = WrapEpochValue(lambda epoch: 0.1 * epoch)
    net["hidden_0"]["n_out"] = WrapEpochValue(lambda epoch: 5 * epoch)
    net["output"]["loss_opts"] = {"scales": (1, WrapEpochValue(lambda epoch: -epoch))}
    pretrain = Pretrain(net, repetitions=[1, 2])
    assert pretrain.repetitions == [1, 2, 2]
    drops = [pretrain.get_network_json_for_epoch(e)["output"]["dropout"] for e in range(1, 8)]
    np.testing.assert_allclose(drops, [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5])  # then the last pretrain epoch's
    assert [pretrain.get_network_json_for_epoch(e)["hidden_0"]["n_out"] for e in (1, 4)] == [5, 20]
    assert pretrain.get_network_json_for_epoch(2)["output"]["loss_opts"] == {"scales": (1, -2)}


def test_greedy_trains_only_the_new_and_the_output_layers():
    pretrain = Pretrain(CHAIN, greedy=True)
    assert pretrain.get_train_layers_for_epoch(1) is None
    assert pretrain.get_train_layers_for_epoch(3) == {"hidden_2", "output"}
    net = layer_dict(pretrain.get_network_json_for_epoch(3), pretrain.get_train_layers_for_epoch(3))
    assert [name for name, layer in net.items() if layer.get("trainable", True)] == ["hidden_2", "output"]
    assert pretrain.get_train_layers_for_epoch(4) is None  # after pretraining everything trains


@pytest.mark.parametrize(("opts", "message"), [
    ({"construction_algo": "from_nowhere"}, "construction_algo 'from_nowhere' is not known; use one of from_output"),
    ({"repetitions": [1, 1, 1, 1]}, "4 values given for 3 construction steps"),
    ({"repetitions": -1}, "repetitions: -1 is not allowed; expected an int >= 0"),
    ({"repetitions": {"first": 2}}, "key 'first' is not allowed; use 'default', 'final' or a step index 0..2"),
    ({"repetitions": {"default": 0}}, "leave no pretrain epoch"),
    ({"copy_output_layer": "maybe"}, "copy_output_layer 'maybe' is not allowed"),
    ({"output_layers": ["out"]}, "output layer 'out' is not in the network"),
    ({"construction_algo": lambda idx, net_dict: 42}, "expected a network dict or None, got int"),
    ({"copy_param_mode": "subset"}, "copy_param_mode 'subset' (copying part of a grown param) is not supported"),
    ({"construction_algo": lambda idx, net_dict: {**net_dict, "#copy_param_mode": "some"} if idx == 0 else None},
     "step 0: '#copy_param_mode' 'some' is not allowed; expected one of None, 'ifpossible', 'reset'"),
    ({"construction_algo": lambda idx, net_dict: net_dict}, "return None once pretraining is done"),
])
def test_bad_pretrain_options_name_the_option(opts, message):
    with pytest.raises(ConfigError, match="pretrain") as info:
        Pretrain(CHAIN, **opts)
    assert message in str(info.value)


def test_wrap_epoch_value_needs_a_function():
    with pytest.raises(ConfigError, match="WrapEpochValue needs a function of epoch"):
        WrapEpochValue(3)


# -- from the config ----------------------------------------------------------------------------------------
def test_a_python_config_imports_wrap_epoch_value_as_returnn_configs_do(tmp_path, manager):
    config = load_python_config(tmp_path, (
        "from Pretrain import WrapEpochValue\n"
        "from returnn.pretrain import WrapEpochValue as NewerPath\n"
        "assert NewerPath is WrapEpochValue\n"
        f"network = {CHAIN!r}\n"
        "network['output']['dropout'] = WrapEpochValue(lambda epoch: epoch / 10)\n"
        "def custom_construction_algo(idx, net_dict):\n"
        "    return None\n"
        "pretrain = {'repetitions': 2, 'construction_algo': custom_construction_algo}\n"
        "backend = 'toy'\n"
        f"model = {str(tmp_path / 'model')!r}\n"
    ))
    engine = Engine(config, manager=manager, log=Log(verbosity=0, stream=io.StringIO()))
    assert engine.pretrain is not None and engine.pretrain.get_train_num_epochs() == 2
    assert [engine.is_pretrain_epoch(e) for e in (1, 2, 3)] == [True, True, False]
    assert engine.is_first_epoch_after_pretrain(3)
    assert engine.network_dict(1)["output"]["dropout"] == 0.1
    assert engine.network_dict()["output"]["dropout"] == 0.2  # the final network
    assert engine.epoch_prefix(2) == str(tmp_path / "model.pretrain.002")
    assert engine.epoch_prefix(3) == str(tmp_path / "model.003")


def test_a_later_returnn_module_that_is_not_provided_says_so(tmp_path):
    with pytest.raises(ConfigError, match="of RETURNN's later package, which this RETURNN does not provide"):
        load_python_config(tmp_path, "from returnn.tf.util.data import Data\n")


def test_wrap_epoch_values_without_pretrain_are_an_error(manager):
    config = Config({"backend": "toy", "network": {"output": {"class": "softmax",
                                                               "dropout": WrapEpochValue(lambda epoch: 0.1)}}})
    with pytest.raises(ConfigError, match="WrapEpochValue values but no pretraining is configured"):
        Engine(config, manager=manager, log=Log(verbosity=0, stream=io.StringIO())).network_dict()


@pytest.mark.parametrize(("values", "expected"), [
    ({"pretrain": "default"}, 3),
    ({"pretrain": True, "pretrain_repetitions": "2"}, 6),
    ({"pretrain": {"repetitions": 1}, "pretrain_repetitions": 2}, 3),  # the dict wins over the separate key
    ({"pretrain": "{'construction_algo': 'no_network_modifications'}"}, 1),  # text from ++pretrain
    ({"pretrain": ""}, None),
    ({}, None),
])
def test_pretrain_from_config_values(values, expected):
    config = Config(values)
    if values.get("pretrain_repetitions") == "2":
        config = Config({"pretrain": True})
        config.override("pretrain_repetitions", "2")
    pretrain = pretrain_from_config(config, CHAIN)
    assert (pretrain.get_train_num_epochs() if pretrain else None) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("layerwise", "config key 'pretrain': 'layerwise' is not allowed; expected 'default', True or a dict"),
    ({"repetition": 2}, "config key 'pretrain': unknown option(s) 'repetition'; known: repetitions"),
])
def test_bad_pretrain_values_say_what_is_allowed(value, message):
    with pytest.raises(ConfigError) as info:
        pretrain_from_config(Config({"pretrain": value}), CHAIN)
    assert message in str(info.value)


# -- carrying params and checkpoint names ---------------------------------------------------------------------
class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def v4(self, text: str) -> None:
        self.lines.append(text)


def test_params_carry_over_by_name_and_shape_output_per_copy_output_layer():
    old = {"hidden_0/W": np.ones((9, 10)), "hidden_1/W": np.ones((10, 10)), "output/W": np.ones((10, 2))}
    new = {"hidden_0/W": np.zeros((9, 10)), "hidden_1/W": np.zeros((10, 20)), "hidden_2/W": np.zeros((20, 10)),
           "output/W": np.zeros((10, 2))}
    log = _Log()
    assert sorted(carried_params(old, new, ["output"], "ifpossible", log)) == ["hidden_0/W", "output/W"]
    assert "Pretrain: can not copy hidden_1/W (shape (10, 10) -> (10, 20)), will leave it randomly initialized" in \
        log.lines
    assert sorted(carried_params(old, new, ["output"], False, log)) == ["hidden_0/W"]
    assert "Pretrain: will not copy output layer output" in log.lines
    new["output/W"] = np.zeros((20, 2))
    assert sorted(carried_params(old, new, ["output"], "ifpossible", log)) == ["hidden_0/W"]
    with pytest.raises(TrainingError, match="copy_output_layer=True needs them equal"):
        carried_params(old, new, ["output"], True, log)


def test_checkpoint_names_of_pretrain_epochs_and_finding_them(tmp_path):
    model = str(tmp_path / "model")
    assert checkpoint_prefix(model, 2, pretrain=True) == model + ".pretrain.002"
    assert Engine.epoch_model_filename(model, 12, True) == model + ".pretrain.012"
    assert Engine.epoch_model_filename(model, 3, False) == model + ".003"
    for name in ("model.pretrain.001.npz", "model.pretrain.002.npz", "model.003.npz", "model.pretrain.004.tmp-1.npz"):
        (tmp_path / name).write_text("")
    assert completed_epochs(model, ".npz") == [1, 2, 3]
    assert epoch_checkpoint(model, 2, ".npz") == model + ".pretrain.002"
    assert epoch_checkpoint(model, 3, ".npz") == model + ".003"
    assert epoch_checkpoint(model, 4, ".npz") is None


# -- the 2017 description ------------------------------------------------------------------------------------
def _accepts(layer_class: str, option: str) -> bool:
    """The frontend's classes as a backend registers them (``hidden``/``forward``, ``lstm``, ``lstm2``, ...)."""
    return registry_accepts(_frontend_manager(), "theano")(layer_class, option)


def _frontend_manager() -> PluginManager:
    pm = PluginManager(strict=True, disabled=())
    pm.register(_FrontendLayers(), "frontend", distribution="returnn-test", version="0.1")
    return pm


class _FrontendLayers:
    @hookimpl
    def returnn_register_layers(self, registry: Registrar) -> None:
        for name, cls in (("forward", HiddenLayer), ("lstm", LstmLayer), ("lstm_simple", SimpleLstmLayer),
                          ("lstm2", Lstm2Layer)):
            registry.register(name, cls, backend="theano")


def test_hidden_size_description_with_a_bidirectional_lstm():
    config = Config()
    for key, value in (("hidden_size", "10,20,5,5"), ("hidden_type", "forward,lstm,lstm_simple,lstm2"),
                       ("activation", "tanh"), ("dropout", "0.1,0.2,0.3"), ("L2_reg", "0.01")):
        config.override(key, value)
    net = network_from_topology(config, _accepts)
    assert net["hidden_3_bw"] == {"class": "lstm2", "n_out": 5, "from": ["hidden_2_bw"], "L2": 0.01, "dropout": 0.3,
                                  "activation": "tanh", "truncation": -1, "direction": -1}
    assert net["hidden_2_fw"]["sharpgates"] == "none"  # lstm_simple takes it
    del net["hidden_2_fw"], net["hidden_2_bw"], net["hidden_3_fw"], net["hidden_3_bw"]
    net["output"]["from"] = ["hidden_1_fw", "hidden_1_bw"]
    # the lstm class's activations are fixed: RETURNN ignores the description's activation for it
    assert net == {
        "hidden_0": {"class": "forward", "n_out": 10, "activation": "tanh", "from": ["data"], "L2": 0.01,
                     "dropout": 0.1},
        "hidden_1_fw": {"class": "lstm", "n_out": 20, "from": ["hidden_0"], "L2": 0.01,
                        "dropout": 0.2, "truncation": -1},
        "hidden_1_bw": {"class": "lstm", "n_out": 20, "from": ["hidden_0"], "L2": 0.01,
                        "dropout": 0.2, "truncation": -1, "reverse": True},
        "output": {"class": "softmax", "loss": "ce", "from": ["hidden_1_fw", "hidden_1_bw"], "L2": 0.01,
                   "dropout": 0.3},
    }


def test_hidden_size_description_one_type_for_all_names_and_no_bidirectional():
    config = Config({"hidden_size": [10, 10, 10], "hidden_type": "forward", "activation": "sigmoid",
                     "bidirectional": False, "hidden_name": ["a", "_"], "loss": "ce"})
    net = network_from_topology(config, _accepts)
    assert list(net) == ["a", "hidden_1", "hidden_2", "output"]
    assert [net[n]["from"] for n in net] == [["data"], ["a"], ["hidden_1"], ["hidden_2"]]
    assert all(net[n]["class"] == "forward" and net[n]["activation"] == "sigmoid" for n in list(net)[:3])
    # the demo's from_output pretraining over it: 1, 2, then 3 hidden layers
    assert [len(layers) for layers in layers_per_epoch(Pretrain(net))] == [2, 3, 4]


@pytest.mark.parametrize(("values", "message"), [
    ({"hidden_type": "forward"}, "the config has no 'network' and no 'hidden_size'"),
    ({"hidden_size": "10"}, "hidden_size needs 'activation'"),
    ({"hidden_size": "10", "activation": "tanh", "hidden_type": "forward,lstm"},
     "config key 'hidden_type': 2 values for 1 hidden layers"),
    ({"hidden_size": "10", "activation": "tanh", "L1_reg": "0.1"}, "config key 'L1_reg': L1 regularisation is not"),
])
def test_bad_hidden_size_descriptions_say_what_to_do(values, message):
    config = Config()
    for key, value in values.items():
        config.override(key, value)
    with pytest.raises(ConfigError) as info:
        network_from_topology(config, _accepts)
    assert message in str(info.value)


# -- in the training loop (the toy numpy backend) ------------------------------------------------------------
def test_pretrain_epochs_learning_rates_config_overrides_and_checkpoints(tmp_path, manager):
    def algo(idx, net_dict):
        steps = [{"#config": {"batch_size": 10}}, {"#config": {"learning_rate": 0.25}, "#copy_param_mode": "reset"}]
        return {**net_dict, **steps[idx]} if idx < len(steps) else None

    config = Config({
        "backend": "toy", "task": "train",
        # the toy backend ignores dropout; its value per epoch makes each epoch's network a new one
        "network": {"output": {"class": "softmax", "loss": "ce", "n_out": 2,
                               "dropout": WrapEpochValue(lambda epoch: epoch / 10)}},
        "train": {"class": "ToyDataset", "num_seqs": 20}, "dev": {"class": "ToyDataset", "num_seqs": 5},
        "num_epochs": 4, "batch_size": 40, "learning_rate": 1.0, "learning_rate_control": "newbob",
        "learning_rate_file": str(tmp_path / "lr.txt"), "model": str(tmp_path / "model"),
        "pretrain": {"construction_algo": algo}, "pretrain_learning_rate": 0.5, "num_epoch": 3,
    })
    out = io.StringIO()
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    log = out.getvalue()
    assert "pretrain epoch 1: config key 'batch_size' is 10 (instead of 40)" in log
    assert log.count("warning: num_epoch: not a known key") == 1  # not again for each new network
    assert "pretrain: new network for epoch 2; 0 params carried over, freshly initialised: output/W, output/b" in log
    assert "pretrain: new network for epoch 3; 2 params carried over" in log
    assert log.count("config key 'batch_size'") == 1 and config.int("batch_size") == 40  # put back after epoch 1
    rates = [line.split("with learning rate ")[1] for line in log.splitlines() if line.startswith("start ")]
    # pretrain_learning_rate, the step's own, pretrain_learning_rate, then the initial rate after pretraining
    assert rates == ["0.5", "0.25", "0.5", "1"]
    assert [line.split(" with")[0] for line in log.splitlines() if line.startswith("start ")] == [
        "start pretrain epoch 1", "start pretrain epoch 2", "start pretrain epoch 3", "start epoch 4"]
    assert sorted(os.listdir(tmp_path)) == ["lr.txt", "model.004.npz", "model.pretrain.001.npz",
                                            "model.pretrain.002.npz", "model.pretrain.003.npz"]
