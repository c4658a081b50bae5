"""Which backend a config runs on: the one it names, else theano (RETURNN 2017's default), else what is installed."""

from __future__ import annotations

import io

import pytest
from toy_plugin import NumpyBackend

from returnn_core.config import Config
from returnn_core.engine import select_backend
from returnn_core.errors import ConfigError
from returnn_core.log import Log
from returnn_core.plugin import PluginManager


def manager_with(*names: str) -> PluginManager:
    """A manager with only the given backends (each the numpy toy backend under another name)."""
    pm = PluginManager(strict=False, disabled=())
    for name in names:
        pm.backends.register(name, NumpyBackend, aliases=("tensorflow",) if name == "tf" else (),
                             plugin=f"fake-{name}")
    return pm


def choose(values: dict, *backends: str) -> tuple[str, str]:
    out = io.StringIO()
    chosen = select_backend(Config(values), manager_with(*backends), Log(verbosity=2, stream=out))
    return chosen, out.getvalue()


def test_no_backend_named_runs_on_theano_and_says_how_to_choose():
    chosen, log = choose({}, "tf", "theano", "toy")
    assert chosen == "theano"
    assert log.count("\n") == 1 and "backend: theano" in log and "RETURNN's default" in log
    assert 'backend = "tf"' in log and "use_tensorflow = True" in log


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"backend": "tf"}, "tf"),
        ({"backend": "tensorflow"}, "tf"),
        ({"use_tensorflow": True}, "tf"),
        ({"use_tensorflow": "1"}, "tf"),  # line-based configs give text
        ({"use_tensorflow": False}, "theano"),
        ({"use_theano": True}, "theano"),
        ({"backend": "toy", "use_tensorflow": True}, "toy"),
    ],
)
def test_named_backend_wins_without_a_log_line(values, expected):
    assert choose(values, "tf", "theano", "toy") == (expected, "")


def test_without_theano_the_only_backend_is_taken():
    chosen, log = choose({}, "toy")
    assert chosen == "toy" and "the only backend installed" in log and 'backend = "tf"' in log


def test_without_theano_several_installed_takes_tf_and_says_so():
    chosen, log = choose({}, "toy", "tf")
    assert chosen == "tf" and "theano, the default, is not available; of tf, toy tf is taken" in log


def test_without_theano_or_tf_several_installed_is_an_error():
    with pytest.raises(ConfigError, match=r"names no backend.*several backends are: a, toy; set backend = \"NAME\""):
        choose({}, "toy", "a")


def test_no_backend_installed_names_the_plugin_to_install():
    with pytest.raises(Exception, match="pip install returnn-theano"):
        choose({})


def test_named_but_not_installed_names_the_plugin_to_install():
    with pytest.raises(Exception, match="pip install returnn-tf"):
        choose({"use_tensorflow": True}, "theano")
