"""The backend-neutral definitions in the core: importable without any backend, options checked once for all."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from returnn_core.errors import ConfigError, NetworkError
from returnn_core.frontend import Layer, Loss, Optimizer
from returnn_core.frontend.catalogue import CATALOGUE, register
from returnn_core.plugin import PluginManager
from returnn_core.plugin._registry import Registrar, Registry


def _resolve(target: str) -> object:
    module, _, attr = f"returnn_core.frontend.{target}".partition(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_every_catalogue_entry_is_a_core_definition(kind: str) -> None:
    base = {"layers": Layer, "losses": Loss, "updaters": Optimizer, "rec_units": object}[kind]
    for name, (target, _) in CATALOGUE[kind].items():
        assert issubclass(_resolve(target), base), name


def test_the_catalogue_imports_no_framework() -> None:
    code = ("import sys; from returnn_core.frontend.catalogue import CATALOGUE, _PKG; import importlib\n"
            "for kind in CATALOGUE.values():\n"
            "    for target, _ in kind.values():\n"
            "        importlib.import_module(f'{_PKG}.{target}'.partition(':')[0])\n"
            "print(sorted(m for m in ('tensorflow', 'pytensor', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_discovery_does_not_import_numpy() -> None:
    code = "import sys; import returnn_core.frontend.catalogue; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_register_puts_every_name_and_alias_under_the_backend() -> None:
    registry = Registry("layers", per_backend=True)
    registrar = Registrar(registry, "someplugin")
    register("layers", registrar, "mybackend")
    registry.add(registrar.pending)
    assert set(registry.names("mybackend")) >= {"linear", "forward", "hidden", "rec", "subnetwork"}
    assert registry.entry("forward", backend="mybackend").alias_of == "hidden"


def test_layer_options_are_checked_and_name_the_layer() -> None:
    linear = _resolve("layers.basic:LinearLayer")
    with pytest.raises(NetworkError, match=r"layer 'out' \(class 'linear'\): unknown option\(s\) kind"):
        linear("out", "linear", {"kind": "add"}, None)
    with pytest.raises(NetworkError, match="n_out must be a positive integer, got 0"):
        linear("out", "linear", {"n_out": 0}, None)
    with pytest.raises(NetworkError, match=r"dropout must be in \[0, 1\)"):
        linear("out", "linear", {"dropout": 1.5}, None)
    with pytest.raises(NetworkError, match="unknown activation 'relux'"):
        linear("out", "linear", {"activation": "relux"}, None)
    with pytest.raises(NetworkError, match="option 'L2' must be a number"):
        linear("out", "linear", {"L2": "a lot"}, None)


def test_loss_options_are_checked() -> None:
    ce = _resolve("losses:CrossEntropyLoss")
    assert ce(label_smoothing=0.1).opts == {"label_smoothing": 0.1}
    with pytest.raises(NetworkError, match="unknown loss_opts focal; known: label_smoothing"):
        ce(focal=2.0)
    via = _resolve("losses:ViaLayerLoss")
    with pytest.raises(NetworkError, match="exactly one of loss_opts"):
        via()


def test_optimizer_aliases_defaults_and_errors() -> None:
    adam = _resolve("optimizers:Adam")
    assert adam(beta_1=0.8, learning_rate=1.0).opts == {"beta1": 0.8, "beta2": 0.999, "epsilon": 1e-8}
    with pytest.raises(ConfigError, match="both 'beta1' and its alias 'beta_1'"):
        adam(beta1=0.9, beta_1=0.8)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) betas; known: beta1, beta2, beta_1, beta_2, epsilon"):
        adam(betas=(0.9, 0.99))
    with pytest.raises(ConfigError, match="option 'epsilon' must be a number"):
        adam(epsilon="tiny")
    adagrad = _resolve("optimizers:Adagrad")(initial_accumulator_value=0.5)
    assert adagrad.slot_init("accum") == 0.5
    rmsprop = _resolve("optimizers:RmsProp")(rho=0.8)
    assert rmsprop.opts["decay"] == 0.8


def test_lstm_prefers_a_registered_native_lstm() -> None:
    from returnn_core.frontend import resolve_unit

    manager = PluginManager(strict=True, disabled=())
    manager.registries["rec_units"].register("lstm", "returnn_core.frontend.units:LstmUnit", backend="b")
    assert resolve_unit(manager, "b", "LSTM", layer="l").__name__ == "LstmUnit"
    manager.registries["rec_units"].register("nativelstm", "returnn_core.frontend.units:GruUnit", backend="b")
    assert resolve_unit(manager, "b", "lstm", layer="l").__name__ == "GruUnit"
    assert resolve_unit(manager, "b", "lstm", layer="l") is resolve_unit(manager, "b", "nativelstm", layer="l")
