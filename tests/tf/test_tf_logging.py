"""TensorFlow's own stderr lines vanish below log_verbosity 5; everything else on stderr still arrives."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, sys
from returnn_tf.tf_logging import quiet_tensorflow
quiet_tensorflow()
print("python warning", file=sys.stderr, flush=True)
os.write(2, b"I0000 00:00:1796058933.984569   29986 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"2026-11-30 17:01:58.177690: E external/local_xla/cuda_platform.cc:51] failed call to cuInit\\n")
os.write(2, b"F0000 00:00:1796058933.984569   29986 op.cc:1] Check failed: fatal\\n")
raise RuntimeError("boom")
"""


def _run(verbosity: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                         env={**clean, "RETURNN_LOG_VERBOSITY": verbosity, **env})
    assert res.returncode == 1
    return res.stderr


def test_tf_lines_dropped_below_verbosity_5_and_the_rest_kept():
    err = _run("3")
    assert err.startswith("python warning\nF0000 00:00:1796058933.984569   29986 op.cc:1] Check failed: fatal\n")
    assert err.rstrip().endswith("RuntimeError: boom") and "cuInit" not in err and "I0000" not in err


def test_verbosity_5_or_a_user_level_0_leave_stderr_alone():
    for err in (_run("5"), _run("3", TF_CPP_MIN_LOG_LEVEL="0")):
        assert "oneDNN" in err and "failed call to cuInit" in err and "InitializeLog" in err
