"""Logging: verbosity levels, log files, RETURNN's epoch line."""

from __future__ import annotations

import io

import pytest

from returnn_core.config import Config
from returnn_core.errors import ConfigError
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


def _steps(log, n=3):
    import numpy as np

    from returnn_core.datasets.batching import BatchData
    from returnn_core.engine.backend import StepResult
    from returnn_core.log import Progress

    progress = Progress(log, "train epoch 1", total_seqs=30)
    data = BatchData(data={}, seq_lens={"data": np.array([7, 5]), "classes": np.array([7, 4])}, tags=["a", "b"],
                     seq_idx=[0, 1])
    for step in range(1, n + 1):
        progress.step(step, 2 * step, StepResult({"output": 1.4}, {"output": 0.2}, {"output": 2.0}), data, 0.01)
    progress.close()


def test_per_step_lines_by_verbosity_and_interval():
    out = io.StringIO()
    _steps(Log(verbosity=4, stream=out))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("train epoch 1, step 2, cost:output 0.7, error:output 0.1, num_seqs 2, lr 0.01, ")
    assert lines[1].endswith(" sec/step")

    out = io.StringIO()
    _steps(Log(verbosity=5, stream=out), n=1)
    assert "num_seqs 2, max_size:data 7, max_size:classes 7, lr 0.01" in out.getvalue()

    # a batch job at the default verbosity: one line per log_interval, none while the interval has not passed
    out = io.StringIO()
    _steps(Log(verbosity=3, stream=out, interval=0))
    assert [line.split(",")[1] for line in out.getvalue().splitlines()] == [" step 1", " step 2", " step 3"]
    out = io.StringIO()
    _steps(Log(verbosity=3, stream=out, interval=3600))
    assert out.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_a_progress_bar_not_interval_lines():
    out = _Terminal()
    log = Log(verbosity=3, stream=out, interval=0)
    _steps(log)
    log.v3("after")
    text = out.getvalue()
    assert "step 1," not in text and "/30 [" in text and "seq/s" in text
    assert text.endswith("after\n")


def test_log_interval_from_config():
    assert Log.from_config(Config({"log_interval": 5})).interval == 5.0
    with pytest.raises(ConfigError, match="log_interval must be seconds >= 0"):
        Log.from_config(Config({"log_interval": -1}))
