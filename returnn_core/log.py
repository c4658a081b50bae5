"""RETURNN-style logging: ``log_verbosity`` 0-5 to stdout, ``log`` file(s), and the epoch score lines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from returnn_core.errors import ConfigError

if TYPE_CHECKING:
    from returnn_core.datasets.batching import BatchData
    from returnn_core.engine.backend import StepResult

#: frameworks (TensorFlow, PyTensor) log only from this ``log_verbosity`` on; below it their output goes nowhere
FRAMEWORK_LOG_VERBOSITY = 5
#: the run's ``log_verbosity``, for backends that must configure a framework before importing it; worker
#: processes inherit it
VERBOSITY_ENV = "RETURNN_LOG_VERBOSITY"
DEFAULT_VERBOSITY = 3
#: seconds between per-step lines in a log that is not a terminal, below ``log_verbosity`` 4 (``log_interval``)
DEFAULT_LOG_INTERVAL = 60.0


def run_verbosity() -> int:
    """The ``log_verbosity`` of the run in this process (or its parent), else the default 3."""
    try:
        return int(os.environ.get(VERBOSITY_ENV, DEFAULT_VERBOSITY))
    except ValueError:
        return DEFAULT_VERBOSITY


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


def step_line(what: str, step: int, result: StepResult | None, *, num_seqs: int, learning_rate: float | None,
              step_time: float, batch_sizes: dict[str, int] | None = None) -> str:
    """RETURNN's per-step line: ``train epoch 1, step 3, cost:output 0.69, error:output 0.5, num_seqs 10, ...``."""
    parts = [f"{what}, step {step}"]
    if result is not None:
        scores, errors = result.scores(), result.error_rates()
        parts += [f"cost:{name} {_num(value)}" for name, value in scores.items()]
        parts += [f"error:{name} {_num(value)}" for name, value in errors.items()]
    parts.append(f"num_seqs {num_seqs}")
    if batch_sizes:
        parts += [f"max_size:{key} {size}" for key, size in batch_sizes.items()]
    if learning_rate is not None:
        parts.append(f"lr {_num(float(learning_rate))}")
    parts.append(f"{step_time:.3f} sec/step")
    return ", ".join(parts)


class Log:
    """Writes messages of verbosity ``v`` (1 = most important, 5 = debug) to the streams that want them."""

    def __init__(self, verbosity: int = DEFAULT_VERBOSITY, files: Iterable[str] = (), file_verbosity: int | None = None,
                 stream: IO[str] | None = None, interval: float = DEFAULT_LOG_INTERVAL) -> None:
        if not 0 <= verbosity <= 5:
            raise ValueError(f"log_verbosity must be 0-5, got {verbosity}")
        self.verbosity = verbosity
        #: seconds between per-step lines in non-terminal outputs below verbosity 4 (``log_interval``)
        self.interval = interval
        self._outputs: list[tuple[IO[str], int]] = [(stream or sys.stdout, verbosity)]
        fv = verbosity if file_verbosity is None else file_verbosity
        for path in files:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._outputs.append((open(path, "a", encoding="utf-8"), fv))  # noqa: SIM115 - closed in close()
        self._bar: Any = None

    @classmethod
    def from_config(cls, config: Any) -> Log:
        """From ``log_verbosity``, ``log`` (a path or list), ``log_file_verbosity`` and ``log_interval``."""
        files = config.list("log", []) if config is not None else []
        interval = config.float("log_interval", DEFAULT_LOG_INTERVAL) if config is not None else DEFAULT_LOG_INTERVAL
        if interval < 0:
            raise ConfigError(f"log_interval must be seconds >= 0 (0: a line every step), got {interval}")
        log = cls(
            verbosity=config.int("log_verbosity", DEFAULT_VERBOSITY) if config is not None else DEFAULT_VERBOSITY,
            files=[f for f in files if f],
            file_verbosity=config.int("log_file_verbosity", None) if config is not None else None,
            interval=interval,
        )
        os.environ[VERBOSITY_ENV] = str(log.max_verbosity)
        return log

    @property
    def max_verbosity(self) -> int:
        """The highest verbosity of any output (stdout or a log file)."""
        return max(v for _, v in self._outputs)

    @property
    def on_terminal(self) -> bool:
        """Whether stdout is a terminal (the progress bar shows only there)."""
        return bool(getattr(self._outputs[0][0], "isatty", lambda: False)())

    def write(self, level: int, msg: str, *, terminal: bool = True) -> None:
        """Write ``msg`` to every output whose verbosity is at least ``level`` (``terminal=False``: not to a terminal)."""
        for i, (out, verbosity) in enumerate(self._outputs):
            if level > verbosity:
                continue
            if i == 0 and self.on_terminal:
                if not terminal:
                    continue
                if self._bar is not None:
                    with self._bar.external_write_mode():
                        out.write(msg + "\n")
                    continue
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

    def progress_bar(self, what: str, total: int | None) -> Any:
        """A progress bar with ETA on a terminal at verbosity >= 3 (tqdm fits it to the width), else None."""
        out, verbosity = self._outputs[0]
        if verbosity < 3 or not self.on_terminal:
            return None
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=what, unit="seq", file=out, leave=False, dynamic_ncols=True,
                         mininterval=0.1)
        return self._bar

    def end_progress_bar(self) -> None:
        """Remove the progress bar from the terminal."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Close log files."""
        self.end_progress_bar()
        for out, _ in self._outputs[1:]:
            out.close()
        self._outputs = self._outputs[:1]


class Progress:
    """One epoch's steps: a bar with ETA on a terminal; RETURNN's per-step lines in logs.

    Every step gets a line at verbosity >= 4 (with the batch sizes at 5); below that, outputs that are not a terminal
    (a piped stdout, log files) get one every ``log_interval`` seconds, so a batch job's log is never silent for a
    whole epoch.
    """

    def __init__(self, log: Log, what: str, total_seqs: int | None) -> None:
        self.log, self.what, self.total = log, what, total_seqs
        self.start = self._last_step = self._last_line = time.monotonic()
        self._bar = log.progress_bar(what, total_seqs)

    def step(self, step: int, seqs_done: int, result: StepResult | None = None, data: BatchData | None = None,
             learning_rate: float | None = None) -> None:
        """Report that ``step`` batches covering ``seqs_done`` seqs are done; ``result`` and ``data`` are this step's."""
        now = time.monotonic()
        step_time, self._last_step = now - self._last_step, now
        if self._bar is not None:
            self._bar.update(seqs_done - self._bar.n)
        every_step = self.log.max_verbosity >= 4
        if not every_step and (now - self._last_line < self.log.interval):
            return
        self._last_line = now
        sizes = None
        if data is not None and self.log.max_verbosity >= 5:
            sizes = {key: int(lens.max()) if len(lens) else 0 for key, lens in data.seq_lens.items()}
        line = step_line(self.what, step, result, num_seqs=data.num_seqs if data is not None else 0,
                         learning_rate=learning_rate, step_time=step_time, batch_sizes=sizes)
        if every_step:
            self.log.write(4, line)
        else:
            self.log.write(3, line, terminal=False)

    def close(self) -> None:
        """End the epoch's progress bar."""
        if self._bar is not None:
            self.log.end_progress_bar()
            self._bar = None
