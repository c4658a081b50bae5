"""RETURNN-style logging: ``log_verbosity`` 0-5 to stdout, ``log`` file(s), and the epoch score lines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import IO, Any


def format_elapsed(seconds: float) -> str:
    """``H:MM:SS`` as RETURNN prints it."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(x: float) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def epoch_line(epoch: int, train_score: float | None, elapsed: float, dev: dict[str, dict[str, float]]) -> str:
    """``epoch N score: X elapsed: H:MM:SS dev: score Y error Z`` (one ``name: score .. error ..`` per eval set)."""
    parts = [f"epoch {epoch} score: {_num(train_score) if train_score is not None else 'None'}"]
    parts.append(f"elapsed: {format_elapsed(elapsed)}")
    for name, res in dev.items():
        item = f"{name}: score {_num(res['score'])}"
        if res.get("error") is not None:
            item += f" error {_num(res['error'])}"
        parts.append(item)
    return " ".join(parts)


class Log:
    """Writes messages of verbosity ``v`` (1 = most important, 5 = debug) to the streams that want them."""

    def __init__(self, verbosity: int = 3, files: Iterable[str] = (), file_verbosity: int | None = None,
                 stream: IO[str] | None = None) -> None:
        if not 0 <= verbosity <= 5:
            raise ValueError(f"log_verbosity must be 0-5, got {verbosity}")
        self.verbosity = verbosity
        self._outputs: list[tuple[IO[str], int]] = [(stream or sys.stdout, verbosity)]
        fv = verbosity if file_verbosity is None else file_verbosity
        for path in files:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._outputs.append((open(path, "a", encoding="utf-8"), fv))  # noqa: SIM115 - closed in close()
        self._progress_active = False

    @classmethod
    def from_config(cls, config: Any) -> Log:
        """From ``log_verbosity``, ``log`` (a path or list) and ``log_file_verbosity``."""
        files = config.list("log", []) if config is not None else []
        return cls(
            verbosity=config.int("log_verbosity", 3) if config is not None else 3,
            files=[f for f in files if f],
            file_verbosity=config.int("log_file_verbosity", None) if config is not None else None,
        )

    def write(self, level: int, msg: str) -> None:
        """Write ``msg`` to every output whose verbosity is at least ``level``."""
        for out, verbosity in self._outputs:
            if level <= verbosity:
                if self._progress_active and out is self._outputs[0][0]:
                    out.write("\r\033[K")
                    self._progress_active = False
                out.write(msg + "\n")
                out.flush()

    def v1(self, msg: str) -> None:
        """Errors and the most important results."""
        self.write(1, msg)

    def v2(self, msg: str) -> None:
        """Results per epoch."""
        self.write(2, msg)

    def v3(self, msg: str) -> None:
        """Progress of a run (default)."""
        self.write(3, msg)

    def v4(self, msg: str) -> None:
        """Details."""
        self.write(4, msg)

    def v5(self, msg: str) -> None:
        """Debug output."""
        self.write(5, msg)

    def progress(self, text: str) -> None:
        """Overwrite one status line on a terminal (nothing when stdout is not a terminal)."""
        out, verbosity = self._outputs[0]
        if verbosity < 3 or not getattr(out, "isatty", lambda: False)():
            return
        out.write("\r\033[K" + text)
        out.flush()
        self._progress_active = True

    def close(self) -> None:
        """Close log files."""
        for out, _ in self._outputs[1:]:
            out.close()
        self._outputs = self._outputs[:1]


class Progress:
    """Steps and seqs done with ETA for one epoch, shown through :meth:`Log.progress`."""

    def __init__(self, log: Log, what: str, total_seqs: int | None) -> None:
        self.log, self.what, self.total = log, what, total_seqs
        self.start = time.monotonic()
        self._last = 0.0

    def step(self, step: int, seqs_done: int) -> None:
        """Report that ``step`` batches covering ``seqs_done`` seqs are done (at most 10 updates a second)."""
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        text = f"{self.what} step {step}"
        if self.total:
            eta = (now - self.start) / max(seqs_done, 1) * max(self.total - seqs_done, 0)
            text += f" seq {seqs_done}/{self.total} ({100 * seqs_done // self.total}%) ETA {format_elapsed(eta)}"
        self.log.progress(text)
