"""Python configs importing RETURNN's 2017 top-level modules: the provided helpers work, the rest fail clearly."""

from __future__ import annotations

import getpass
import pathlib
import sys

import pytest
from config_files import load_python_config

from returnn_core.errors import ConfigError


def test_util_get_login_username_works_in_a_config(tmp_path: pathlib.Path) -> None:
    config = load_python_config(tmp_path, "from Util import get_login_username\nmodel = '/tmp/%s/model' % get_login_username()\n")
    assert config.value("model", None) == f"/tmp/{getpass.getuser()}/model"


def test_the_names_are_only_importable_while_a_config_runs(tmp_path: pathlib.Path) -> None:
    load_python_config(tmp_path, "import Util\n")
    sys.modules.pop("Util", None)
    with pytest.raises(ModuleNotFoundError):
        import Util  # noqa: F401


@pytest.mark.parametrize(("line", "message"), [
    ("from TFUtil import nd_indices", "setup.config:2: ImportError: the config imports RETURNN's 2017 module "
                                      "'TFUtil', which this RETURNN does not provide: its helpers work on"),
    ("from Util import hms", "the config uses RETURNN's 2017 Util.hms, which this RETURNN does not provide "
                             "(of Util only get_login_username)"),
])
def test_what_is_not_provided_names_the_module_and_what_to_do(tmp_path: pathlib.Path, line: str,
                                                               message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_python_config(tmp_path, line + "\n")
    assert message in str(info.value)


def test_a_real_module_of_that_name_wins(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "TFUtil.py").write_text("def nd_indices():\n    return 'mine'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "TFUtil", raising=False)
    config = load_python_config(tmp_path, "from TFUtil import nd_indices\nwhich = nd_indices()\n")
    assert config.value("which", None) == "mine"
    sys.modules.pop("TFUtil", None)


PY2_CONFIG = '''\
import os, sys
demo_name, _ = os.path.splitext(__file__)
print "Hello, experiment: %s" % os.path.basename(demo_name)
print "no newline",  # a trailing comma
print >>sys.stderr, "to stderr", 1
print
if True: print "inline", ("multi",
                          "line")
task = "train"; print task
num_inputs = 9
'''


def test_python2_print_statements_of_2017_configs_run(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    config = load_python_config(tmp_path, PY2_CONFIG)
    assert config.value("task", None) == "train" and config.int("num_inputs", None) == 9
    out, err = capsys.readouterr()
    assert out == "Hello, experiment: setup\nno newline \ninline ('multi', 'line')\ntrain\n"
    assert err == "to stderr 1\n"


def test_python2_config_errors_keep_their_line_numbers(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"setup\.config:12: NameError: name 'undefined' is not defined"):
        load_python_config(tmp_path, PY2_CONFIG + "x = undefined\n")
    with pytest.raises(ConfigError, match=r"setup\.config:2: syntax error"):
        load_python_config(tmp_path, "x = (1,\n")  # other syntax errors are reported as they are
