"""Loss and error signal computed by Sprint children: :class:`SprintSubprocessInstance` (one child speaking the
:mod:`returnn_sprint.control` protocol) and :class:`SprintInstancePool` (several, for whole batches)."""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from returnn_core.errors import TrainingError
from returnn_sprint.child import SprintChild, SprintChildError, split_args
from returnn_sprint.control import PROTOCOL_VERSION
from returnn_sprint.extern_dataset import pymod_path
from returnn_sprint.pipe_protocol import format_config_str

CONTROL_MODULE = "returnn_sprint.control"


class SprintChildFault(TrainingError):
    """The Sprint child died, hung (``reading_timeout``) or sent garbage; it is gone, unlike after an exception reply."""


class SprintSubprocessInstance:
    """One Sprint child answering ``get_loss_and_error_signal`` and ``export_allophone_state_fsa_by_segment_name``.

    Options keep RETURNN's config names: ``sprintExecPath`` (path or argv list), ``sprintConfigStr`` (Sprint
    options), ``minPythonControlVersion``, ``sprintControlConfig`` (extra pymod-config entries),
    ``usePythonSegmentOrder`` (also load the control module as PythonSegmentOrder, for segment-wise training),
    ``reading_timeout`` (seconds to wait for an answer before the child counts as hung and is killed).
    """

    def __init__(
        self,
        sprintExecPath: str | Sequence[str],  # noqa: N803 - RETURNN config names
        minPythonControlVersion: int = 2,  # noqa: N803
        sprintConfigStr: str | Sequence[str] = "",  # noqa: N803
        sprintControlConfig: Mapping[str, Any] | None = None,  # noqa: N803
        usePythonSegmentOrder: bool = True,  # noqa: N803
        reading_timeout: float = 300.0,
    ) -> None:
        self.exec_args = split_args(sprintExecPath)
        self.min_version = int(minPythonControlVersion)
        self.sprint_config = split_args(sprintConfigStr)
        self.control_config = dict(sprintControlConfig or {})
        self.use_segment_order = bool(usePythonSegmentOrder)
        self.reading_timeout = float(reading_timeout)
        self._lock = threading.Lock()
        self.child: SprintChild | None = SprintChild(self._build_args, name="Sprint error-signal child")
        try:
            reply = self._call("init", "SprintSubprocessInstance", PROTOCOL_VERSION)
            if len(reply) < 2 or reply[1] != PROTOCOL_VERSION:
                raise self.child.error(f"init answered {reply!r}, expected ('SprintControl', {PROTOCOL_VERSION})")
        except BaseException:
            self.close(kill=True)
            raise

    def _build_args(self, c2p_fd: int, p2c_fd: int) -> list[str]:
        cfg = {"c2p_fd": c2p_fd, "p2c_fd": p2c_fd, "minPythonControlVersion": self.min_version, **self.control_config}
        config_str = format_config_str(cfg)
        mod_path = pymod_path()
        args = list(self.exec_args) + [
            "--*.python-control-enabled=true",
            f"--*.pymod-path={mod_path}",
            f"--*.pymod-name={CONTROL_MODULE}",
            f"--*.pymod-config={config_str}",
        ]
        if self.use_segment_order:
            args += [
                "--*.python-segment-order=true",
                f"--*.python-segment-order-pymod-path={mod_path}",
                f"--*.python-segment-order-pymod-name={CONTROL_MODULE}",
                f"--*.python-segment-order-config={config_str}",
                "--*.python-segment-order-allow-copy=false",
            ]
        return args + self.sprint_config

    @property
    def pid(self) -> int | None:
        """Process id of the child (None once closed)."""
        return self.child.pid if self.child else None

    def _call(self, cmd: str, *args: Any) -> tuple:
        """Send one request, return the reply after ``"ok"``; the child's exception becomes a TrainingError."""
        with self._lock:
            if self.child is None:
                raise TrainingError(f"Sprint error-signal child is closed; cannot run {cmd!r}")
            child = self.child
            try:
                child.send((cmd, *args))
                reply = child.recv(timeout=self.reading_timeout)
            except SprintChildError as exc:
                self._drop(kill=True)
                raise SprintChildFault(str(exc)) from None
        if isinstance(reply, tuple) and reply and reply[0] == "ok":
            return reply[1:]
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "exception":
            raise TrainingError(f"Sprint error-signal child (pid {child.pid}) failed on {cmd!r}: {reply[1]}")
        err = child.error(f"unexpected reply to {cmd!r}: {reply!r:.200}")
        self._drop(kill=True)
        raise SprintChildFault(str(err))

    def get_loss_and_error_signal(self, seg_name: str, seg_len: int, log_posteriors: np.ndarray) -> tuple[float, np.ndarray]:
        """Sprint's loss and error signal (time, dim) for the log posteriors (time, dim) of one segment."""
        log_posteriors = np.asarray(log_posteriors, dtype=np.float32)
        if log_posteriors.ndim != 2 or log_posteriors.shape[0] != seg_len:
            raise ValueError(f"posteriors of {seg_name!r}: shape {log_posteriors.shape}, expected ({seg_len}, dim)")
        try:
            loss, error_signal = self._call("get_loss_and_error_signal", seg_name, int(seg_len), log_posteriors)
        except TrainingError as exc:
            raise type(exc)(f"Sprint loss of segment {seg_name!r}: {exc}") from None
        error_signal = np.asarray(error_signal, dtype=np.float32)
        if error_signal.shape != log_posteriors.shape:
            raise TrainingError(f"Sprint returned an error signal of shape {error_signal.shape} for {seg_name!r}, expected {log_posteriors.shape}")
        return float(loss), error_signal

    def export_allophone_state_fsa_by_segment_name(self, seg_name: str) -> tuple[int, np.ndarray, np.ndarray]:
        """The segment's HMM automaton: (num_states, edges (3, E) [from, to, emission], weights (E,))."""
        try:
            num_states, edges, weights = self._call("export_allophone_state_fsa_by_segment_name", seg_name)
        except TrainingError as exc:
            raise type(exc)(f"Sprint automaton of segment {seg_name!r}: {exc}") from None
        return int(num_states), np.asarray(edges), np.asarray(weights)

    def _drop(self, *, kill: bool, send_exit: bool = False) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.stop(grace=0.0 if kill else 10.0, send=("exit",) if send_exit else None)

    def close(self, *, kill: bool = False) -> None:
        """Send ``exit`` and reap the child (killed if it does not exit in time, or at once if ``kill``)."""
        with self._lock:
            self._drop(kill=kill, send_exit=not kill)


class SprintInstancePool:
    """Up to ``numInstances`` Sprint children sharing a batch's segments; one global pool per option set.

    A child that dies or hangs is replaced and its segment retried while the pool's faults (counted over its
    whole life, across epochs) stay within ``maxChildFaults`` (default 0: the first fault ends the run).
    """

    _class_lock = threading.Lock()
    _global: dict[Any, SprintInstancePool] = {}

    @classmethod
    def get_global_instance(cls, sprint_opts: Mapping[str, Any]) -> SprintInstancePool:
        """The shared pool for these options (started on first use)."""
        key = _hashable(sprint_opts)
        with cls._class_lock:
            pool = cls._global.get(key)
            if pool is None:
                pool = cls._global[key] = cls(sprint_opts)
            return pool

    @classmethod
    def close_all(cls) -> None:
        """Stop every global pool's children."""
        with cls._class_lock:
            pools, cls._global = list(cls._global.values()), {}
        for pool in pools:
            pool.close()

    def __init__(self, sprint_opts: Mapping[str, Any]) -> None:
        opts = dict(sprint_opts)
        self.max_instances = max(int(opts.pop("numInstances", 1)), 1)
        self.max_faults = max(int(opts.pop("maxChildFaults", 0)), 0)
        #: children that died or hung so far; kept for the pool's life, i.e. counted across epochs
        self.num_faults = 0
        self.sprint_opts = opts
        self.instances: list[SprintSubprocessInstance] = []
        self.lock = threading.Lock()

    def _ensure(self, n: int) -> list[SprintSubprocessInstance]:
        with self.lock:
            self.instances = [i for i in self.instances if i.child is not None]  # drop dead ones
            while len(self.instances) < min(n, self.max_instances):
                self.instances.append(SprintSubprocessInstance(**self.sprint_opts))
            return list(self.instances[: min(n, self.max_instances)])

    def _replace_after_fault(self, fault: SprintChildFault) -> SprintSubprocessInstance:
        """Count a child fault; past ``maxChildFaults`` (over the whole run) re-raise it, else start a new child."""
        with self.lock:
            self.num_faults += 1
            count = self.num_faults
        if count > self.max_faults:
            raise SprintChildFault(f"{fault} (child fault {count} of this run; maxChildFaults {self.max_faults})") from None
        print(f"returnn-sprint: warning: {fault}; restarting the child (fault {count} of at most {self.max_faults})",
              file=sys.stderr, flush=True)
        new = SprintSubprocessInstance(**self.sprint_opts)
        with self.lock:
            self.instances.append(new)
        return new

    def _spread(self, num: int, request: Callable[[SprintSubprocessInstance, int], None]) -> None:
        """``request(instance, b)`` for every ``b < num``, spread over the children; a child fault is retried."""
        instances = self._ensure(num)

        def work(k: int) -> None:
            for b in range(k, num, len(instances)):
                while True:
                    try:
                        request(instances[k], b)
                        break
                    except SprintChildFault as fault:
                        instances[k] = self._replace_after_fault(fault)

        with ThreadPoolExecutor(max_workers=len(instances)) as ex:
            for fut in [ex.submit(work, k) for k in range(len(instances))]:
                fut.result()

    def get_batch_loss_and_error_signal(
        self, log_posteriors: np.ndarray, seq_lengths: Sequence[int], tags: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-seq losses (B,) and error signals (B, T, D) for batch-major log posteriors (B, T, D).

        Padded frames get a zero error signal.
        """
        log_posteriors = np.asarray(log_posteriors, dtype=np.float32)
        batch = log_posteriors.shape[0]
        if len(seq_lengths) != batch or len(tags) != batch:
            raise ValueError(f"{batch} seqs in the posteriors, {len(seq_lengths)} lengths, {len(tags)} tags")
        losses = np.zeros((batch,), dtype=np.float32)
        errors = np.zeros_like(log_posteriors)
        if batch == 0:
            return losses, errors
        names = [t.decode("utf8") if isinstance(t, bytes) else str(t) for t in tags]

        def request(inst: SprintSubprocessInstance, b: int) -> None:
            n = int(seq_lengths[b])
            losses[b], errors[b, :n] = inst.get_loss_and_error_signal(names[b], n, log_posteriors[b, :n])

        self._spread(batch, request)
        return losses, errors

    def get_automata_for_batch(self, tags: Sequence[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The HMM automaton of each seq (``export_allophone_state_fsa_by_segment_name``), spread over the children."""
        names = [t.decode("utf8") if isinstance(t, bytes) else str(t) for t in tags]
        out: list[Any] = [None] * len(names)
        if not names:
            return []

        def request(inst: SprintSubprocessInstance, b: int) -> None:
            out[b] = inst.export_allophone_state_fsa_by_segment_name(names[b])

        self._spread(len(names), request)
        return out

    def close(self) -> None:
        """Stop all children of this pool."""
        with self.lock:
            instances, self.instances = self.instances, []
        for inst in instances:
            inst.close()


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


atexit.register(SprintInstancePool.close_all)
