"""The plugin's registrations, its light entry point, PyTensor's configuration and unknown-name errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from returnn_theano.pytensor_setup import extra_flags
from theano_helpers import make_backend, theano_manager

from returnn_core.datasets import DataSpec
from returnn_core.errors import UnknownNameError
from returnn_core.frontend.catalogue import CATALOGUE
from returnn_core.plugin import Registrar, hookimpl

EXTERN = {"data": DataSpec(3), "classes": DataSpec(2, sparse=True)}


def test_registers_backend_layers_units_losses_optimizers() -> None:
    manager = theano_manager()
    assert manager.backends.get("pytensor") is manager.backends.get("theano")
    layers = set(manager.layers.names("theano"))
    for name in ("source", "linear", "forward", "hidden", "softmax", "activation", "copy", "dropout", "combine",
                 "concat", "rec", "conv", "pool", "batch_norm", "layer_norm", "merge_dims", "slice", "reduce"):
        assert name in layers, name
    assert {"lstm", "gru", "rnn"} <= set(manager.rec_units.names("theano"))
    assert {"ce", "ctc", "mse", "bin_ce"} <= set(manager.losses.names("theano"))
    assert {"sgd", "momentum", "adam", "nadam", "adadelta", "adagrad", "rmsprop"} <= set(
        manager.updaters.names("theano")
    )
    # all of them are the core's, under every name the core catalogue has
    for kind, names in CATALOGUE.items():
        registry = getattr(manager, kind)
        assert set(names) <= set(registry.names("theano")), kind
    from returnn_core.frontend import Layer, Loss, Optimizer
    from returnn_core.frontend.layers.basic import LinearLayer
    from returnn_core.frontend.layers.theano_era.hidden import HiddenLayer
    from returnn_core.frontend.units import LstmUnit

    assert manager.layers.get("linear", backend="theano") is LinearLayer
    assert manager.layers.get("forward", backend="theano") is HiddenLayer
    assert manager.rec_units.get("lstm", backend="theano") is LstmUnit
    assert issubclass(manager.layers.get("conv", backend="theano"), Layer)
    assert issubclass(manager.losses.get("ctc", backend="theano"), Loss)
    assert issubclass(manager.updaters.get("adam", backend="theano"), Optimizer)


def _python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.strip()


def test_entry_point_imports_no_pytensor() -> None:
    code = "import sys, returnn_theano._hooks; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pytensor', 'numpy'))))"
    mods = json.loads(_python("import json; " + code, {}))
    assert mods == []


def test_compile_dir_under_returnn_cache(tmp_path) -> None:
    code = "import returnn_theano._pt as p; c = p.pytensor.config; print(c.compiledir, c.linker, c.floatX, sep='|')"
    compiledir, linker, floatx = _python(code, {"RETURNN_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": ""}).split("|")
    assert compiledir.startswith(str(tmp_path / "pytensor"))
    assert (linker, floatx) == ("cvm", "float32")


def test_user_pytensor_flags_are_kept(tmp_path) -> None:
    mine = tmp_path / "mine"
    code = "import returnn_theano._pt as p; c = p.pytensor.config; print(c.compiledir, c.linker, c.floatX, sep='|')"
    flags = f"base_compiledir={mine},linker=py,floatX=float64"
    compiledir, linker, floatx = _python(code, {"RETURNN_CACHE_DIR": str(tmp_path / "cache"),
                                                "PYTENSOR_FLAGS": flags}).split("|")
    assert compiledir.startswith(str(mine))
    assert (linker, floatx) == ("py", "float64")


def test_extra_flags_only_fill_gaps() -> None:
    assert not any(f.startswith("floatX=") for f in extra_flags("floatX=float64"))
    assert any(f.startswith("base_compiledir=") for f in extra_flags("device=cpu"))
    assert not any(f.startswith("linker=") for f in extra_flags("mode=FAST_COMPILE"))


class _OtherBackendPlugin:
    """Stands in for a second backend that has a layer this one lacks."""

    @hookimpl
    def returnn_register_layers(self, registry: Registrar) -> None:
        registry.register("eval", "builtins:object", backend="tf")


def test_layer_only_other_backend_has_says_so() -> None:
    manager = theano_manager()
    manager.register(_OtherBackendPlugin(), "other")
    net = {"w": {"class": "eval", "eval": "source(0)"}, "output": {"class": "softmax", "loss": "ce", "from": "w"}}
    with pytest.raises(UnknownNameError) as info:
        make_backend(net, EXTERN, manager=manager)
    msg = str(info.value)
    assert "layer 'w'" in msg and "'eval'" in msg and "backend 'theano'" in msg and "only backend 'tf'" in msg


def test_unknown_unit_names_the_layer() -> None:
    net = {"r": {"class": "rec", "unit": "lstmm", "n_out": 3}, "output": {"class": "softmax", "loss": "ce", "from": "r"}}
    with pytest.raises(UnknownNameError, match=r"layer 'r'.*rec unit 'lstmm'.*did you mean 'lstm'"):
        make_backend(net, EXTERN)


def test_late_pytensor_import_is_reported_and_still_uses_c_linker(tmp_path) -> None:
    code = ("import pytensor; from returnn_theano.pytensor_setup import late_import_warning, compile_mode; "
            "print(late_import_warning()); print(compile_mode().linker)")
    warning, linker = _python(code, {"RETURNN_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": ""}).splitlines()[-2:]
    assert "imported before returnn-theano" in warning and "base_compiledir" in warning
    assert "VMLinker(use_cloop=True" in linker  # the C VM, not Numba


def test_dots_run_on_openblas_when_installed(tmp_path) -> None:
    pytest.importorskip("scipy_openblas32")
    code = (
        "import numpy as np, returnn_theano._pt as p; from returnn_theano.pytensor_setup import compile_mode; "
        "a, b = p.pt.matrix('a'), p.pt.matrix('b'); "
        "f = p.pytensor.function([a, b], 0.5 * p.pt.dot(a, b) + b, mode=compile_mode()); "
        "x = np.random.RandomState(0).rand(30, 30).astype('float32'); "
        "print(float(np.abs(f(x, x) - (0.5 * x @ x + x)).max())); "
        "print(' '.join(type(n.op).__name__ for n in f.maker.fgraph.apply_nodes))"
    )
    err, ops = _python(code, {"RETURNN_CACHE_DIR": str(tmp_path.parent / "blas-cache"), "PYTENSOR_FLAGS": ""}
                       ).splitlines()[-2:]
    assert float(err) < 1e-4
    assert "Gemm" in ops.split()
