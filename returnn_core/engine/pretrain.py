"""Layer-wise pretraining in the training loop: the schedule from the config, carrying params to the next network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from returnn_core.errors import ConfigError, TrainingError
from returnn_core.learning_rate import LearningRateControl
from returnn_core.network.pretrain import Pretrain

#: the keys of the dict form of ``pretrain`` (RETURNN's ``Pretrain`` keyword arguments)
OPTIONS = ("repetitions", "construction_algo", "copy_output_layer", "greedy", "output_layers", "input_layers",
           "copy_param_mode")


def pretrain_from_config(config: Any, net_dict: Mapping[str, Any]) -> Pretrain | None:
    """The pretrain schedule ``pretrain`` asks for (``"default"``, True or a dict of options), or None."""
    value = config.bool_or_other("pretrain", None)
    if isinstance(value, str) and value.strip().startswith("{"):
        value = config.dict("pretrain")
    if value in (None, False, "", {}):
        return None
    if value is True or value == "default":
        opts: dict[str, Any] = {}
    elif isinstance(value, Mapping):
        opts = dict(value)
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"config key 'pretrain': unknown option(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(OPTIONS)}")
    else:
        raise ConfigError(f"config key 'pretrain': {value!r} is not allowed; expected 'default', True or a dict of "
                          f"options ({', '.join(OPTIONS)})")
    # RETURNN's separate keys fill in what the dict leaves out
    if config.has("pretrain_copy_output_layer"):
        opts.setdefault("copy_output_layer", config.bool_or_other("pretrain_copy_output_layer", "ifpossible"))
    if config.has("pretrain_greedy"):
        opts.setdefault("greedy", config.bool("pretrain_greedy", None))
    if config.has("pretrain_repetitions"):
        reps = config.typed_value("pretrain_repetitions")
        opts.setdefault("repetitions", reps if config.is_typed("pretrain_repetitions")
                        else config.int_list("pretrain_repetitions"))
    if config.has("pretrain_construction_algo"):
        opts.setdefault("construction_algo", config.typed_value("pretrain_construction_algo"))
    return Pretrain(net_dict, **opts)


def layer_dict(net_dict: Mapping[str, Any], train_layers: Iterable[str] | None = None) -> dict[str, Any]:
    """The layers of a pretrain network dict: RETURNN's ``#``-keys dropped; with ``greedy``'s ``train_layers``,
    every other layer is fixed (``trainable`` False)."""
    out = {k: v for k, v in net_dict.items() if not k.startswith("#")}
    if train_layers is not None:
        keep = set(train_layers)
        out = {k: v if k in keep or not isinstance(v, Mapping) else {**v, "trainable": False} for k, v in out.items()}
    return out


def carried_params(old: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray], output_layers: Iterable[str],
                   copy_output_layer: bool | str, log: Any) -> dict[str, np.ndarray]:
    """The values of ``old`` (the previous network's params) that the new network takes over: same name and shape.

    Output layers' params only with ``copy_output_layer`` (True: a shape mismatch is an error; "ifpossible": that
    param stays freshly initialised). Params of the new network not returned keep their fresh initial values.
    """
    outputs = set(output_layers)
    skipped_outputs: set[str] = set()
    out: dict[str, np.ndarray] = {}
    for name, fresh in new.items():
        if name not in old:
            continue
        layer = name.split("/", 1)[0]
        is_output = layer in outputs
        if is_output and not copy_output_layer:
            skipped_outputs.add(layer)
            continue
        if np.shape(old[name]) != np.shape(fresh):
            if is_output and copy_output_layer is True:
                raise TrainingError(f"pretrain: output layer {layer!r} param {name!r} has shape {np.shape(old[name])} "
                                    f"before and {np.shape(fresh)} now; copy_output_layer=True needs them equal "
                                    "(use 'ifpossible' to initialise it afresh instead)")
            log.v4(f"Pretrain: can not copy {name} (shape {np.shape(old[name])} -> {np.shape(fresh)}), "
                   "will leave it randomly initialized")
            continue
        out[name] = old[name]
    for layer in sorted(skipped_outputs):
        log.v4(f"Pretrain: will not copy output layer {layer}")
    return out


def set_pretrain_learning_rate(config: Any, pretrain: Pretrain, lrc: LearningRateControl, epoch: int) -> None:
    """As RETURNN: pretrain epochs train at ``pretrain_learning_rate`` (default: the initial rate), the first epoch
    after them at the initial rate; with ``use_learning_rate_control_always`` the control decides those too."""
    if config.bool("use_learning_rate_control_always", False):
        return
    num = pretrain.get_train_num_epochs()
    if epoch <= num:
        lrc.set_default_learning_rate_for_epoch(epoch, config.float("pretrain_learning_rate", lrc.default_learning_rate))
    elif epoch == num + 1:
        lrc.set_default_learning_rate_for_epoch(epoch, lrc.default_learning_rate)


def apply_epoch_config(config: Any, pretrain: Pretrain, lrc: LearningRateControl, epoch: int,
                       saved: dict[str, Any], log: Any) -> None:
    """The ``"#config"`` of ``epoch``'s pretrain network: config keys set for its epochs (RETURNN's way to e.g. use
    a smaller batch_size while the network is small), ``learning_rate`` that epoch's rate. ``saved`` holds the values
    replaced before; they are put back first."""
    for key, value in saved.items():
        config.set(key, value)
    saved.clear()
    overrides = pretrain.get_network_json_for_epoch(epoch).get("#config") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"pretrain network of epoch {epoch}: '#config' must be a dict of config keys, got "
                          f"{overrides!r}")
    for key, value in overrides.items():
        if key == "learning_rate":
            lrc.set_default_learning_rate_for_epoch(epoch, float(value), overwrite=True)
            continue
        if not config.has(key):
            raise ConfigError(f"pretrain network of epoch {epoch}: '#config' sets {key!r}, which the config does not "
                              "set; set it in the config too (it is put back after the pretrain network's epochs)")
        log.v3(f"pretrain epoch {epoch}: config key {key!r} is {value!r} (instead of {config.typed_value(key)!r})")
        saved[key] = config.typed_value(key)
        config.set(key, value)
