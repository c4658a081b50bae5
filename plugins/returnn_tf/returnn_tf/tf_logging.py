"""TensorFlow's own log output (C++, absl, Python) follows RETURNN's ``log_verbosity``: below 5 it goes nowhere."""

from __future__ import annotations

import logging
import os

from returnn_core.log import FRAMEWORK_LOG_VERBOSITY, run_verbosity

#: TensorFlow's Python loggers (absl's handler writes TF's Python warnings to stderr)
TF_LOGGERS = ("tensorflow", "absl")


def quiet_tensorflow() -> None:
    """Configure TF's logging from the run's verbosity; call before the first ``import tensorflow``.

    TF reads ``TF_CPP_MIN_LOG_LEVEL`` once, while it is imported, so this must come first; a value the user set
    wins. Level 3 also hides the ``failed call to cuInit`` error a CUDA build of TF logs on a machine without a GPU
    (hiding the GPU does not avoid it), so that error shows only at ``log_verbosity`` 5.
    """
    quiet = run_verbosity() < FRAMEWORK_LOG_VERBOSITY
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if quiet else "0")
    for name in TF_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1 if quiet else logging.NOTSET)
