"""``returnn``'s exit leaves the final garbage collection out, and keeps exit handlers and the exit status."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import atexit, gc, sys
atexit.register(lambda: print("before-registered handler: collector on", gc.isenabled(),
                              "frozen objects", gc.get_freeze_count() > 0, flush=True))
from returnn_core.cli.process_exit import skip_final_collection
skip_final_collection()
skip_final_collection()  # once per process
atexit.register(lambda: print("later handler: collector on", gc.isenabled(), flush=True))
sys.exit(3)
"""


def test_exit_handlers_run_and_the_collector_is_off_last() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert out.stdout.splitlines() == [
        "later handler: collector on True",
        "before-registered handler: collector on False frozen objects True",
    ]
