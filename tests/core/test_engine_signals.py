"""SIGTERM/SIGINT during a run (returnn_core.engine.signals), with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from returnn_core.engine import signals
from returnn_core.engine.signals import RunStopped


def test_first_signal_asks_to_stop_second_stops_at_once():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    woken = threading.Event()
    signals.on_stop(woken.set)
    with signals.stop_on_signals():
        signals.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert woken.wait(5.0), "the watcher thread did not run the stop callbacks"
        time.sleep(0.05)  # the Python-level handler runs in this thread at the next bytecode
        assert signals.stop_signal() == signal.SIGTERM
        with pytest.raises(RunStopped, match="^stopped by SIGTERM$") as info:
            signals.check()
        assert info.value.exit_status == 143
        with pytest.raises(RunStopped, match="second SIGINT") as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5.0)
        assert info.value.exit_status == 130
    assert signals.stop_signal() is None
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
