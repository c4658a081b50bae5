"""TensorFlow's own log output (C++, absl, Python) follows RETURNN's ``log_verbosity``: below 5 it goes nowhere."""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading

from returnn_core.log import FRAMEWORK_LOG_VERBOSITY, run_verbosity

LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
#: TensorFlow's Python loggers (absl's handler writes TF's Python warnings to stderr)
TF_LOGGERS = ("tensorflow", "absl")
#: a line TF's C++ side writes to stderr below fatal: absl's ``I0000 12:00:00.1 123 file.cc:10]`` or TSL's
#: ``2026-01-01 12:00:00.1: I path/file.cc:10]``, absl's note that it logs to stderr, and TF's CPU-features hint
TF_STDERR_LINE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


class _StderrFilter(threading.Thread):
    """Passes the process's stderr (fd 2) through a pipe, dropping TF's own log lines (fatal ones are kept)."""

    def __init__(self) -> None:
        super().__init__(name="returnn-tf-stderr-filter", daemon=True)
        self.target_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        self.reader = os.fdopen(read_fd, "rb")
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.pipe = os.fstat(2)

    def run(self) -> None:
        with open(self.target_fd, "wb", buffering=0, closefd=False) as target:
            for line in self.reader:
                if not TF_STDERR_LINE.match(line):
                    target.write(line)

    def stop(self) -> None:
        """Give fd 2 back and forward what is still in the pipe (the pipe ends once no process holds fd 2)."""
        import sys

        sys.stderr.flush()
        now = os.fstat(2)
        if (now.st_dev, now.st_ino) == (self.pipe.st_dev, self.pipe.st_ino):  # nobody (e.g. pytest) replaced it since
            os.dup2(self.target_fd, 2)
        self.join(timeout=2)


_filter: _StderrFilter | None = None


def quiet_tensorflow() -> None:
    """Configure TF's logging from the run's verbosity; call before the first ``import tensorflow``.

    TF reads ``TF_CPP_MIN_LOG_LEVEL`` once, while it is imported. Since TF 2.21 part of its C++ logging (absl,
    before ``absl::InitializeLog``) ignores that level, so below ``log_verbosity`` 5 stderr also passes a filter
    that drops TF's log lines, such as ``failed call to cuInit`` on a machine without a GPU. A
    ``TF_CPP_MIN_LOG_LEVEL`` the user set is kept; set to 0, it also leaves stderr alone.
    """
    global _filter
    quiet = run_verbosity() < FRAMEWORK_LOG_VERBOSITY
    for name in TF_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1 if quiet else logging.NOTSET)
    os.environ.setdefault(LEVEL_ENV, "3" if quiet else "0")
    if quiet and os.environ[LEVEL_ENV] != "0" and _filter is None:
        _filter = _StderrFilter()
        _filter.start()
        atexit.register(_filter.stop)
