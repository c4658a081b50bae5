"""The third-party example plugin, written once on ``returnn_core.frontend``: pip-installed into a fresh venv,
listed for both backends, trained from a config on each; plus a layer written against the old TF-only API,
which still runs on the TF backend."""

from __future__ import annotations

import io
import json
import os
import pathlib
import site
import subprocess
import sys
import venv

import numpy as np
import pytest

from returnn_core.config import Config
from returnn_core.datasets import BatchData, DataSpec, ExternData
from returnn_core.log import Log
from returnn_core.network import resolve_network
from returnn_core.plugin import PluginManager

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "returnn-mylayers"
BACKENDS = ("tf", "theano")
#: the checkpoint file each backend writes last (its ``checkpoint_marker``)
CHECKPOINT_MARKER = {"tf": ".index", "theano": ".npz"}


def needs_backend(backend: str) -> None:
    """Skip unless the backend plugin (and the datasets plugin for Task12AXDataset) is installed."""
    pytest.importorskip(f"returnn_{backend}")
    pytest.importorskip("returnn_datasets")


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory) -> pathlib.Path:
    """A new venv that sees this environment's packages (.pth) and gets the example installed by pip."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    py = root / "bin" / "python"
    purelib = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    outer = [p for p in sys.path if p.endswith("site-packages")] + site.getsitepackages()
    # addsitedir also runs the outer env's own .pth files (editable installs register finders there)
    lines = [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(outer)]
    pathlib.Path(purelib, "outer_env.pth").write_text("\n".join(lines) + "\n")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", str(EXAMPLE)], check=True, timeout=600)
    return root


def returnn(venv_root: pathlib.Path, *args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)
    # the venv's own interpreter: it sees the example through the venv's site-packages
    return subprocess.run([venv_root / "bin" / "python", "-m", "returnn_core", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_example_plugin_is_listed(example_venv):
    res = returnn(example_venv, "--list-plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["mylayers"]["status"] == "loaded", plugins["mylayers"]["error"]
    assert plugins["mylayers"]["distribution"] == "returnn-mylayers"
    assert plugins["mylayers"]["provides"] == {"layers": ["gated_linear@tf", "gated_linear@theano"]}


def test_example_package_depends_on_the_core_only():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '"returnn-core>=1,<2"' in text
    assert "returnn-tf" not in text and "returnn-theano" not in text
    layers = (EXAMPLE / "returnn_mylayers" / "layers.py").read_text()
    assert "tensorflow" not in layers and "pytensor" not in layers


@pytest.mark.parametrize("backend", BACKENDS)
def test_example_layer_trains_from_a_config(example_venv, tmp_path, backend):
    needs_backend(backend)
    cfg = tmp_path / "glu.config"
    cfg.write_text(
        "#!python\n"
        f"backend = {backend!r}\n"
        "train = {'class': 'Task12AXDataset', 'num_seqs': 20}\n"
        "dev = {'class': 'Task12AXDataset', 'num_seqs': 5, 'fixed_random_seed': 1}\n"
        "network = {\n"
        "  'glu': {'class': 'glu', 'from': 'data', 'n_out': 16},\n"
        "  'output': {'class': 'softmax', 'from': 'glu', 'loss': 'ce'},\n"
        "}\n"
        "num_epochs = 2\nbatch_size = 2000\nmax_seqs = 10\nadam = True\nlearning_rate = 0.01\n"
        f"model = {str(tmp_path / 'model')!r}\n"
    )
    res = returnn(example_venv, str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "epoch 2 score:" in res.stdout, res.stdout
    assert (tmp_path / f"model.002{CHECKPOINT_MARKER[backend]}").exists()


# -- in-process checks --------------------------------------------------------------------------------------

RNG = np.random.RandomState(5)
X = RNG.normal(size=(2, 6, 3)).astype(np.float32)
LENS = np.array([6, 4], np.int32)
CLS = RNG.randint(0, 2, size=(2, 6)).astype(np.int32)
EXTERN = ExternData({"data": DataSpec(3), "classes": DataSpec(2, sparse=True)})


def batch() -> BatchData:
    return BatchData({"data": X.copy(), "classes": CLS.copy()}, {"data": LENS, "classes": LENS}, ["a", "b"], [0, 1])


def plugin_manager() -> PluginManager:
    """A fresh manager with the installed plugins (a failure elsewhere does not matter here)."""
    pm = PluginManager(strict=False)
    pm.load_entry_points()
    return pm


@pytest.mark.parametrize("backend", BACKENDS)
def test_example_layer_computes_a_gated_linear_unit(backend, monkeypatch):
    """The same class on both backends, registered through the example's own hooks module, gives the GLU."""
    pytest.importorskip(f"returnn_{backend}")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import returnn_mylayers._hooks as hooks

    pm = plugin_manager()
    pm.strict = True
    if "mylayers" not in pm.plugins:  # not pip-installed into this environment
        pm.register(hooks, "mylayers")
    assert pm.layers.get("glu", backend=backend).__name__ == "GatedLinearLayer"
    be = pm.backends.get(backend)(Config({}), pm, Log(0))
    net = {"output": {"class": "glu", "n_out": 4, "activation": "tanh"}}
    be.build(resolve_network(net, list(EXTERN)), EXTERN, train=False)
    out, lens = be.forward_step(batch(), "output")
    params = be.get_param_values()
    assert params["output/W"].shape == (3, 8) and params["output/b"].shape == (8,)
    z = X @ params["output/W"] + params["output/b"]
    expect = np.tanh(z[..., :4] / (1.0 + np.exp(-z[..., 4:])))
    assert out.shape == (2, 6, 4) and list(lens) == [6, 4]
    for b, n in enumerate(LENS):
        np.testing.assert_allclose(out[b, :n], expect[b, :n], rtol=1e-5, atol=1e-5)


#: a layer written against the old TF-only API (raw TF ops on ``src.tensor``), imported lazily by its import string
OLD_STYLE_LAYER = '''
import tensorflow as tf
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer


class OldStyleGlu(Layer):
    """The GLU in plain TensorFlow, as TF-only plugins wrote layers before returnn_core.frontend."""

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        src = self.single_source(sources)
        n_out = self.require_n_out()
        w = self.param("W", (self.feature_dim(src), 2 * n_out), "glorot_uniform")
        b = self.param("b", (2 * n_out,), "zeros")
        x = tf.tensordot(src.tensor, w, axes=[[src.tensor.shape.rank - 1], [0]]) + b
        a, g = tf.split(x, 2, axis=-1)
        return src.with_tensor(a * tf.sigmoid(g), dim=n_out)
'''


def test_old_style_tf_layer_still_trains_on_tf(tmp_path, monkeypatch):
    needs_backend("tf")
    from returnn_core.engine import Engine

    (tmp_path / "old_style_glu.py").write_text(OLD_STYLE_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = plugin_manager()
    pm.layers.register("old_glu", "old_style_glu:OldStyleGlu", backend="tf", plugin="old-style-test")
    config = Config({
        "backend": "tf",
        "train": {"class": "Task12AXDataset", "num_seqs": 20},
        "dev": {"class": "Task12AXDataset", "num_seqs": 5, "fixed_random_seed": 1},
        "network": {
            "glu": {"class": "old_glu", "from": "data", "n_out": 8},
            "output": {"class": "softmax", "from": "glu", "loss": "ce"},
        },
        "num_epochs": 1, "batch_size": 2000, "max_seqs": 10, "adam": True, "learning_rate": 0.01,
        "model": str(tmp_path / "model"),
    })
    out = io.StringIO()
    Engine(config, manager=pm, log=Log(1, stream=out)).run()
    assert "epoch 1 score:" in out.getvalue(), out.getvalue()
    assert (tmp_path / "model.001.index").exists()
