"""Run by ``nox -s wheels`` inside a fresh venv holding only the wheels of ``returnn-core returnn-tf``.

Checks what a new user meets: the two distributions bring returnn-datasets along (no returnn-native), and
``returnn CONFIG`` trains one epoch of the demo with no compiler on PATH, its stderr free of framework noise.
Usage: ``python check_user_install.py DEMO_CONFIG``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile


def main(config: str) -> int:
    """Exit 0 when the install holds the expected distributions and the demo trains one epoch."""
    installed = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    expected, absent = {"returnn-core", "returnn-tf", "returnn-datasets"}, {"returnn-native", "returnn-theano"}
    if not expected <= installed or installed & absent:
        print(f"expected {sorted(expected)} and none of {sorted(absent)}; installed: {sorted(installed)}")
        return 1
    bin_dir = os.path.dirname(sys.executable)
    # only the venv on PATH and no compiler named: NativeLSTM could not be built even if returnn-native were here
    env = {**os.environ, "PATH": bin_dir, "CXX": "", "RETURNN_NATIVE_CXX": ""}
    if shutil.which("g++", path=bin_dir) or shutil.which("c++", path=bin_dir):
        print(f"a C++ compiler is on PATH {bin_dir}")
        return 1
    with tempfile.TemporaryDirectory() as work:
        res = subprocess.run([os.path.join(bin_dir, "returnn"), config, "++num_epochs", "1"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=900)
    print(res.stdout)
    if res.returncode != 0 or "epoch 1 score:" not in res.stdout:
        print(f"returnn exited {res.returncode} without the epoch line; stderr:\n{res.stderr}")
        return 1
    if res.stderr.strip():
        print(f"a run at the default log_verbosity wrote to stderr:\n{res.stderr}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1])))
