"""One config on the tf and the theano backend: same initial parameters, same batches, same losses and updates.

The cases are checked against the registries: every layer, rec unit, loss and optimizer that both backends
register must appear in some case, so a new definition cannot land without a cross-backend check.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.errors import UnknownNameError  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
STEPS = 4
KINDS = ("layers", "rec_units", "losses", "updaters")
#: names only one backend has, and why (the test below holds the registries to exactly this list)
BACKEND_SPECIFIC = {
    ("layers", "eval"): "tf",  # evaluates TensorFlow code from the config
    # returnn-sprint's losses run Sprint through tf.py_function with the seq tags of the batch
    ("losses", "sprint"): "tf",
    ("losses", "fast_bw"): "tf",
}

#: case -> (network, config, data kind; "eval_only" compares evaluation only, e.g. for random layers), gathered
#: from every ``parity_cases_*.py`` module next to this file, so each family of definitions keeps its own cases
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {}
for _path in sorted(Path(__file__).parent.glob("parity_cases_*.py")):
    _module = importlib.import_module(_path.stem)
    _dup = set(CASES) & set(_module.CASES)
    assert not _dup, f"{_path.name}: case names already used: {sorted(_dup)}"
    CASES.update(_module.CASES)

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True), "dense": DataSpec(3), "bits": DataSpec(3)}


def _batches(kind: str) -> list:
    rng = np.random.RandomState(11)
    seqs = []
    for i in range(12):
        n = rng.randint(4, 10)
        labels = rng.randint(0, 3, n if kind != "ctc" else rng.randint(1, 3))
        feats = {"data": rng.randn(n, 4).astype("f"), "classes": labels.astype("int32"),
                 "dense": rng.uniform(-1, 1, (n, 3)).astype("f"),
                 "bits": (rng.uniform(0, 1, (n, 3)) > 0.5).astype("f")}
        seqs.append(DatasetSeq(i, f"seq-{i}", feats))
    ext = ExternData(EXTERN)
    return [b.to_data(ext) for b in generate_batches(seqs, batch_size=30, max_seqs=4)]


def _backend(name: str, net: dict, config: dict):
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(Config(dict(config)), manager, Log(0))
    ext = ExternData(EXTERN)
    backend.build(resolve_network(net, ext.keys()), ext, train=True)
    return backend


def _assert_results_agree(a: Any, b: Any, what: str) -> None:
    assert a.frames == b.frames, what
    assert sorted(a.losses) == sorted(b.losses), what
    for layer in a.losses:
        np.testing.assert_allclose(b.losses[layer], a.losses[layer], rtol=2e-4, atol=1e-4, err_msg=f"{what} {layer}")
    assert sorted(a.errors) == sorted(b.errors), what
    for layer in a.errors:
        np.testing.assert_allclose(b.errors[layer], a.errors[layer], rtol=1e-5, atol=1e-5, err_msg=f"{what} {layer}")


@pytest.mark.parametrize("case", list(CASES))
def test_first_steps_agree(case: str) -> None:
    net, config, kind = CASES[case]
    tf_backend = _backend("tf", net, config)
    th_backend = _backend("theano", net, config)
    tf_params = tf_backend.get_param_values()
    th_params = th_backend.get_param_values()
    assert sorted(tf_params) == sorted(th_params)
    for name, value in tf_params.items():
        assert value.shape == th_params[name].shape, name
    th_backend.set_param_values(tf_params)
    batches = _batches(kind)
    assert len(batches) >= STEPS
    if kind != "eval_only":
        for i, bd in enumerate(batches[:STEPS]):
            _assert_results_agree(tf_backend.train_step(bd, 0.05), th_backend.train_step(bd, 0.05),
                                  f"{case} step {i}")
        for name, value in tf_backend.get_param_values().items():
            np.testing.assert_allclose(th_backend.get_param_values()[name], value, rtol=1e-3, atol=1e-4,
                                       err_msg=f"{case}: parameter {name} after {STEPS} updates")
    for bd in batches[-2:]:
        _assert_results_agree(tf_backend.eval_step(bd), th_backend.eval_step(bd), f"{case} eval")


def _used_names(net: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for layer in net.values():
        yield "layers", layer["class"]
        if layer["class"] in ("rec", "rnn_cell"):
            unit = layer.get("unit", "lstm")
            if isinstance(unit, Mapping):  # a sub-network per step
                yield from _used_names(unit)
            else:
                yield "rec_units", unit
        if "loss" in layer:
            yield "losses", layer["loss"]
        if isinstance(layer.get("subnetwork"), Mapping):
            yield from _used_names(layer["subnetwork"])


def _registered(kind: str, backend: str) -> list[str]:
    """Names (not aliases) of one registry for one backend."""
    return [e.name for e in get_plugin_manager().registries[kind] if e.backend == backend and e.alias_of is None]


def test_every_registered_name_has_a_cross_backend_case() -> None:
    used = set()
    for net, config, _ in CASES.values():
        used.update(_used_names(net))
        used.add(("updaters", config["optimizer"]["class"]))
    manager = get_plugin_manager()
    for kind in KINDS:
        for name in _registered(kind, "tf"):
            if (kind, name) in BACKEND_SPECIFIC:
                continue
            aliases = {e.name for e in manager.registries[kind] if e.backend == "tf" and e.alias_of == name}
            assert {(kind, n) for n in {name} | aliases} & used, f"{kind} {name!r} has no cross-backend case"


def _options(kind: str, target: Any) -> Any:
    if kind == "layers":
        return sorted(target.options)
    if kind == "rec_units":
        return None if target.options is None else sorted(target.options)
    if kind == "losses":
        return getattr(target, "options", None)
    return (getattr(target, "defaults", None), getattr(target, "aliases", None))


def test_both_backends_register_the_same_names_and_options() -> None:
    manager = get_plugin_manager()
    for kind in KINDS:
        tf_names = {e.name for e in manager.registries[kind] if e.backend == "tf"}
        th_names = {e.name for e in manager.registries[kind] if e.backend == "theano"}
        only_tf = {n for n in tf_names - th_names if BACKEND_SPECIFIC.get((kind, n)) != "tf"}
        only_th = {n for n in th_names - tf_names if BACKEND_SPECIFIC.get((kind, n)) != "theano"}
        assert not only_tf and not only_th, f"{kind}: only tf {sorted(only_tf)}, only theano {sorted(only_th)}"
        for name in tf_names & th_names:
            a = manager.registries[kind].get(name, backend="tf")
            b = manager.registries[kind].get(name, backend="theano")
            assert _options(kind, a) == _options(kind, b), f"{kind} {name!r}: options differ between the backends"


def test_tf_only_layer_error_names_the_backend() -> None:
    net = {"e": {"class": "eval", "eval": "source(0) * 2"},
           "output": {"class": "softmax", "loss": "ce", "from": "e"}}
    with pytest.raises(UnknownNameError) as info:
        _backend("theano", net, {})
    msg = str(info.value)
    assert msg.startswith("layer 'e': unknown layer class 'eval' for backend 'theano'")
    assert "only backend 'tf' has it" in msg
