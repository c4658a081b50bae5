"""``returnn tf-distributed [--workers N] CONFIG... [++key value]``: data-parallel training on N local workers.

Starts N ``returnn`` processes with a ``TF_CONFIG`` naming all of them (ports from the OS), so the TF backend
trains with ``MultiWorkerMirroredStrategy``. Worker 0 (the chief) is the run: its output is this command's
output, and only it writes checkpoints, the learning-rate file and summaries (the core driver asks
``Backend.is_chief``); the others read the same model directory to resume at the same epoch, write no log
files, and their output is shown only when one fails. Imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from returnn_core.config import Config
from returnn_core.engine.run_lock import SHARED_RUN_ENV
from returnn_core.errors import ConfigError

USAGE = "usage: returnn tf-distributed [--workers N] CONFIG... [++key value ...]"
#: the TF backend's checkpoint marker
TAIL_LINES = 40


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the OS reports free on localhost."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: Sequence[int], rank: int) -> str:
    """The ``TF_CONFIG`` of worker ``rank``."""
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": rank}})


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``returnn tf-distributed``."""
    p = argparse.ArgumentParser(
        prog="returnn tf-distributed",
        description="Train a config data-parallel on N local TensorFlow workers (MultiWorkerMirroredStrategy). "
        "Worker 0 is the run: its output is this command's; the others show theirs only when they fail.",
    )
    p.add_argument("--workers", "-n", type=int, metavar="N",
                   help="number of workers (default: the config's distributed = {'workers': N}, else 1)")
    p.add_argument("config", nargs=argparse.REMAINDER, metavar="CONFIG... [++key value ...]",
                   help="the config file(s) and overrides, as for `returnn CONFIG`")
    return p


def parse_args(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """``(--workers value or None, the config arguments)``; ``--help`` prints the help and exits 0."""
    ns = build_parser().parse_args(list(argv))
    if not ns.config:
        raise ConfigError(f"{USAGE}\nthe config file is missing")
    return ns.workers, list(ns.config)


def num_workers(option: int | None, config: Config) -> int:
    """``--workers``, else ``distributed = {"workers": N}`` from the config."""
    if option is None:
        dist = config.dict("distributed", {}) or {}
        option = dist.get("workers", 1)
    try:
        n = int(option)
    except (TypeError, ValueError):
        raise ConfigError(f"distributed workers {option!r}: expected a number") from None
    if n < 1:
        raise ConfigError(f"distributed workers must be at least 1, got {n}")
    return n


def worker_overrides(config: Config) -> list[str]:
    """``++`` overrides for a non-chief worker: no log files of its own (the chief's log is the run's log)."""
    if config.has("log"):
        return ["++log", "[]" if isinstance(config.typed_value("log"), (list, tuple)) else ""]
    return []


class _Tail(threading.Thread):
    """Keeps the last lines of a worker's output."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: Sequence[str]) -> int:
    """Run the config's training on N local workers; exit status of the run (the first failing worker's)."""
    option, args = parse_args(argv)
    config = Config.from_args(args)
    n = num_workers(option, config)
    task = config.value("task", "train")
    if n == 1 or task != "train":
        from returnn_core.cli.run import run_config

        return run_config(args)  # only training is data-parallel
    if not config.value("model", None):
        raise ConfigError("tf-distributed needs 'model' (the checkpoint path prefix) in the config")
    ports = free_ports(n)
    procs: list[subprocess.Popen] = []
    tails: dict[int, _Tail] = {}
    try:
        for rank in range(n):
            env = dict(os.environ, TF_CONFIG=tf_config(ports, rank))
            cmd = [sys.executable, "-m", "returnn_core", *args]
            if rank == 0:
                procs.append(subprocess.Popen(cmd, env=env))
                continue
            cmd += worker_overrides(config)
            env[SHARED_RUN_ENV] = "1"  # the chief holds the model's run lock for the whole run
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(proc)
            tails[rank] = _Tail(proc.stdout)
            tails[rank].start()
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank = failed[0]
                _stop(procs)
                if rank in tails:
                    tails[rank].join(2)
                    sys.stderr.write(f"returnn tf-distributed: worker {rank} exited with status {codes[rank]}; "
                                     f"its last output:\n{''.join(tails[rank].lines)}")
                else:
                    sys.stderr.write(f"returnn tf-distributed: worker 0 exited with status {codes[rank]}; "
                                     "stopped the other workers\n")
                return codes[rank] if codes[rank] > 0 else 1  # killed by a signal
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    finally:
        _stop(procs)
