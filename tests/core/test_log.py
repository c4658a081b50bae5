"""Logging: verbosity levels, log files, RETURNN's epoch line."""

from __future__ import annotations

import io

import pytest

from returnn_core.config import Config
from returnn_core.log import Log, epoch_line, format_elapsed


def test_verbosity_and_files(tmp_path):
    out = io.StringIO()
    path = tmp_path / "logs" / "train.log"
    log = Log(verbosity=2, files=[str(path)], file_verbosity=4, stream=out)
    log.v1("one")
    log.v3("three")
    log.v5("five")
    log.close()
    assert out.getvalue() == "one\n"
    assert path.read_text() == "one\nthree\n"


def test_from_config_and_bad_verbosity(tmp_path):
    log = Log.from_config(Config({"log_verbosity": 5, "log": [str(tmp_path / "a.log"), str(tmp_path / "b.log")]}))
    log.v5("debug")
    log.close()
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text() == "debug\n"
    with pytest.raises(ValueError, match="log_verbosity must be 0-5"):
        Log(verbosity=7)


def test_epoch_line_format():
    assert format_elapsed(3725.4) == "1:02:05"
    line = epoch_line(3, 0.123456789, 65, {"dev": {"score": 0.5, "error": 0.01}, "eval": {"score": 0.7, "error": None}})
    assert line == "epoch 3 score: 0.123457 elapsed: 0:01:05 dev: score 0.5 error 0.01 eval: score 0.7"
