"""The third-party example plugin, pip-installed into a fresh venv, used from a config with the TF backend."""

from __future__ import annotations

import json
import os
import pathlib
import site
import subprocess
import sys
import venv

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "returnn-mylayers"


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
    assert plugins["mylayers"]["status"] == "loaded"
    assert plugins["mylayers"]["distribution"] == "returnn-mylayers"
    assert plugins["mylayers"]["provides"] == {"layers": ["gated_linear@tf"]}


def test_example_layer_trains_from_a_config(example_venv, tmp_path):
    cfg = tmp_path / "glu.config"
    cfg.write_text(
        "#!python\n"
        "backend = 'tf'\n"
        "train = {'class': 'Task12AXDataset', 'num_seqs': 40}\n"
        "dev = {'class': 'Task12AXDataset', 'num_seqs': 10, 'fixed_random_seed': 1}\n"
        "network = {\n"
        "  'glu': {'class': 'glu', 'from': 'data', 'n_out': 16},\n"
        "  'output': {'class': 'softmax', 'from': 'glu', 'loss': 'ce'},\n"
        "}\n"
        "num_epochs = 2\nbatch_size = 2000\nmax_seqs = 10\nadam = True\nlearning_rate = 0.01\n"
        f"model = {str(tmp_path / 'model')!r}\n"
    )
    res = returnn(example_venv, str(cfg), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "epoch 2 score:" in res.stdout
    assert (tmp_path / "model.002.index").exists()
