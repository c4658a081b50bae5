"""The PythonControl module Sprint loads for the error-signal side (runs inside the Sprint child).

The parent (:mod:`returnn_sprint.error_signals`) sends requests ``(cmd, *args)`` over a pipe and gets
``("ok", *result)`` or ``("exception", message)``. Commands: ``("init", name, version)`` ->
``("SprintControl", version)``; ``("get_loss_and_error_signal", seg_name, seg_len, log_posteriors (time, dim))``
-> ``(loss, error_signal (time, dim))``; ``("export_allophone_state_fsa_by_segment_name", seg_name)`` ->
``(num_states, edges (3, E) [from, to, emission], weights (E,))``; ``("exit",)`` ends the loop.

Two ways Sprint drives it:

- PythonControl with a control loop (``--*.action=python-control``): Sprint calls :func:`init` with a ``callback``
  and then :meth:`PythonControl.run_control_loop`; requests are answered by Sprint's callback.
- Segment-wise training (Sprint's own NN with a :class:`SprintNnPythonLayer`): Sprint asks
  :func:`getSegmentList` for segments (PythonSegmentOrder); the control loop runs in a thread here and yields each
  requested segment; the layer's ``forward`` returns the posteriors and ``backpropagate`` receives the error
  signal, ``notify_segment_loss`` the loss.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from returnn_sprint.pipe_protocol import parse_config_str, read_message, write_message

PROTOCOL_VERSION = 1


def _log(msg: str) -> None:
    print(f"RETURNN SprintControl[pid {os.getpid()}]: {msg}", file=sys.stdout, flush=True)


# -- Sprint PythonControl ---------------------------------------------------------------------------
def init(
    name: str,
    reference: Any = None,
    config: str = "",
    sprint_unit: str | None = None,
    version_number: int | None = None,
    callback: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> PythonControl:
    """Called by Sprint PythonControl (and by :func:`getSegmentList` / :class:`SprintNnPythonLayer`)."""
    cfg = parse_config_str(config)
    _log(f"init name={name!r} sprint_unit={sprint_unit!r} version={version_number!r}")
    return PythonControl.create(cfg, name=name, sprint_unit=sprint_unit, version_number=version_number, callback=callback)


class PythonControl:
    """One per process: the pipe to RETURNN plus the state shared by the control loop and the Sprint calls."""

    instance: PythonControl | None = None

    @classmethod
    def create(cls, cfg: dict[str, str], **kwargs: Any) -> PythonControl:
        """The process-wide instance (created on the first call, updated by later ones)."""
        if cls.instance is None:
            cls.instance = cls(cfg)
        cls.instance._update(**kwargs)
        return cls.instance

    def __init__(self, cfg: dict[str, str]) -> None:
        self.cfg = cfg
        self.c2p = os.fdopen(int(cfg["c2p_fd"]), "wb")
        self.p2c = os.fdopen(int(cfg["p2c_fd"]), "rb")
        self.min_version = int(cfg.get("minPythonControlVersion", "1"))
        self.sprint_callback: Callable[..., Any] | None = None
        self.callback: Callable[..., Any] | None = None
        self.cond = threading.Condition()
        self.loop_started = False
        self.loop_exited = False
        self.current: dict[str, Any] | None = None
        self.new_segment = False

    def _update(self, *, name: str, sprint_unit: str | None, version_number: int | None, callback: Any) -> None:
        if name == "Sprint.PythonControl":
            if (version_number or 0) < self.min_version:
                raise RuntimeError(
                    f"Sprint PythonControl version {version_number} is older than the required {self.min_version}"
                )
            if callback is not None:
                self.sprint_callback = callback

    # -- the control loop -----------------------------------------------------------------------
    def run_control_loop(self, callback: Callable[..., Any], **kwargs: Any) -> None:
        """Called by Sprint: answer RETURNN's requests until ``exit`` (or the pipe closes)."""
        _log(f"run_control_loop: Sprint {callback('version')!r}")
        self.callback = callback
        with self.cond:
            self.loop_started = True
            self.cond.notify_all()
        try:
            while self.handle_next():
                pass
        finally:
            with self.cond:
                self.loop_exited = True
                self.cond.notify_all()

    def handle_next(self) -> bool:
        """Answer one request; False when the loop should end."""
        try:
            msg = read_message(self.p2c)
        except EOFError:
            _log("parent closed the pipe")
            return False
        if not isinstance(msg, tuple) or not msg:
            write_message(self.c2p, ("exception", f"expected a (cmd, *args) tuple, got {msg!r:.100}"))
            return True
        cmd, args = msg[0], msg[1:]
        if cmd == "exit":
            _log("exit requested")
            self.c2p.close()
            self.p2c.close()
            return False
        handler = getattr(self, f"_cmd_{cmd}", None)
        try:
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}")
            result = handler(*args)
        except Exception as exc:  # reported to the parent, which raises it there
            _log(f"command {cmd!r} failed: {type(exc).__name__}: {exc}")
            write_message(self.c2p, ("exception", f"{type(exc).__name__}: {exc}"))
        else:
            write_message(self.c2p, ("ok", *result))
        return True

    def _cmd_init(self, name: str, version: int) -> tuple:
        if version != PROTOCOL_VERSION:
            raise ValueError(f"{name} speaks protocol version {version}, this SprintControl {PROTOCOL_VERSION}")
        return ("SprintControl", PROTOCOL_VERSION)

    def _cmd_get_loss_and_error_signal(self, seg_name: str, seg_len: int, posteriors: np.ndarray) -> tuple:
        posteriors = np.asarray(posteriors)
        if posteriors.ndim != 2 or posteriors.shape[0] != seg_len:
            raise ValueError(f"posteriors of {seg_name!r} have shape {posteriors.shape}, expected ({seg_len}, dim)")
        loss, error_signal = self.callback("get_loss_and_error_signal", seg_name, int(seg_len), posteriors)
        error_signal = np.asarray(error_signal, dtype=np.float32)
        if error_signal.shape != posteriors.shape:
            raise ValueError(f"error signal of {seg_name!r} has shape {error_signal.shape}, posteriors {posteriors.shape}")
        return (float(loss), error_signal)

    def _cmd_export_allophone_state_fsa_by_segment_name(self, seg_name: str) -> tuple:
        num_states, edges, weights = self.callback("export_allophone_state_fsa_by_segment_name", seg_name)
        return (int(num_states), np.asarray(edges, dtype=np.int32), np.asarray(weights, dtype=np.float32))

    def exit(self, **kwargs: Any) -> None:
        """Called by Sprint at the end."""
        _log("PythonControl exit")

    # -- segment-wise training: our own control loop thread -----------------------------------------
    def ensure_control_loop(self) -> None:
        """Run the control loop in a thread, answering requests through the Sprint NN layer."""
        with self.cond:
            if self.loop_started:
                return
        thread = threading.Thread(target=self.run_control_loop, args=(self._own_callback,), daemon=True)
        thread.start()
        with self.cond:
            self.cond.wait_for(lambda: self.loop_started)

    def _own_callback(self, action: str, *args: Any) -> Any:
        if action == "version":
            return "RETURNN threaded control loop"
        if action == "get_loss_and_error_signal":
            seg_name, seg_len, posteriors = args
            with self.cond:
                self.current = {"name": seg_name, "len": seg_len, "posteriors": posteriors, "loss": None, "error": None}
                self.new_segment = True
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.current.get("done", False))
                return self.current["loss"], self.current["error"]
        raise ValueError(f"the segment-wise control loop cannot answer {action!r}")

    def segment_names(self) -> Iterator[str]:
        """Segments as RETURNN asks for them; ends when RETURNN sends ``exit``."""
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.new_segment or self.loop_exited)
                if not self.new_segment:
                    return
                self.new_segment = False
                name = self.current["name"]
            yield name
            # Sprint is back for the next segment: whatever it did not deliver counts as skipped
            with self.cond:
                cur = self.current
                if cur["loss"] is None:
                    _log(f"segment {name!r}: Sprint gave no loss; skipped")
                    cur["loss"] = float("inf")
                if cur["error"] is None:
                    cur["error"] = np.zeros_like(cur["posteriors"], dtype=np.float32)
                cur["done"] = True
                self.cond.notify_all()

    def current_posteriors(self, seg_len: int) -> np.ndarray:
        """Log posteriors (time, dim) of the segment being processed."""
        with self.cond:
            if self.current is None or self.current["len"] != seg_len:
                raise RuntimeError(f"Sprint asks for {seg_len} frames, current segment has {self.current and self.current['len']}")
            return self.current["posteriors"]

    def set_error_signal(self, seg_len: int, error_signal: np.ndarray) -> None:
        """Error signal (time, dim) of the current segment."""
        with self.cond:
            if self.current is None or error_signal.shape[0] != self.current["len"]:
                raise RuntimeError(f"error signal for {seg_len} frames does not match the current segment")
            self.current["error"] = np.asarray(error_signal, dtype=np.float32)
            self.cond.notify_all()

    def init_segment(self, segment_name: str) -> None:
        """Called by Sprint's segment-wise trainer when it starts a segment."""
        with self.cond:
            if self.current is None or self.current["name"] != segment_name:
                raise RuntimeError(f"Sprint started segment {segment_name!r}, RETURNN asked for another one")

    def notify_segment_loss(self, segment_name: str, loss: float) -> None:
        """Called by Sprint's segment-wise trainer with the loss of the current segment."""
        with self.cond:
            if self.current is None or self.current["name"] != segment_name:
                raise RuntimeError(f"loss for segment {segment_name!r}, but the current one is another")
            self.current["loss"] = float(loss)
            self.cond.notify_all()


# -- Sprint PythonSegmentOrder ----------------------------------------------------------------------
def getSegmentList(corpusName: str, segmentList: list[str], config: str = "", **kwargs: Any) -> Iterator[str]:  # noqa: N802, N803
    """Called by Sprint: the segments RETURNN asks the loss for, one by one."""
    ctrl = init(name="RETURNN.PythonSegmentOrder", reference=corpusName, config=config)
    ctrl.ensure_control_loop()
    known = set(segmentList)
    for name in ctrl.segment_names():
        if name not in known:
            _log(f"segment {name!r} requested by RETURNN is not in Sprint's corpus {corpusName!r}")
        yield name


# -- Sprint NN PythonLayer --------------------------------------------------------------------------
class SprintNnPythonLayer:
    """The layer in Sprint's network that hands RETURNN's posteriors to Sprint and takes back the error signal."""

    def __init__(self, config: str = "", **kwargs: Any) -> None:
        self.ctrl = init(name="RETURNN.SprintNnPythonLayer", reference=self, config=config)
        self.input_size: int | None = None
        self.output_size: int | None = None

    def setInputDimension(self, stream: int, size: int) -> None:  # noqa: N802
        """Called by Sprint."""
        if stream != 0:
            raise ValueError(f"only one input stream is supported, got stream {stream}")
        self.input_size = int(size)

    def setOutputDimension(self, size: int) -> None:  # noqa: N802
        """Called by Sprint."""
        self.output_size = int(size)

    def initializeNetworkParameters(self) -> None:  # noqa: N802
        """Called by Sprint; RETURNN owns the parameters."""

    def loadNetworkParameters(self, filename: str) -> None:  # noqa: N802
        """Called by Sprint; RETURNN owns the parameters."""

    def saveNetworkParameters(self, filename: str) -> None:  # noqa: N802
        """Called by Sprint; RETURNN owns the parameters."""

    def isTrainable(self) -> bool:  # noqa: N802
        """Called by Sprint."""
        return True

    def getNumberOfFreeParameters(self) -> int:  # noqa: N802
        """Called by Sprint."""
        return 0

    def forward(self, input: tuple[np.ndarray, ...]) -> np.ndarray:  # noqa: A002 - Sprint's keyword
        """Input matrices (input_size, time) -> RETURNN's log posteriors (output_size, time)."""
        if len(input) != 1 or input[0].ndim != 2:
            raise ValueError("expected one (input_size, time) matrix")
        posteriors = self.ctrl.current_posteriors(int(input[0].shape[1]))
        if self.output_size is not None and posteriors.shape[1] != self.output_size:
            raise ValueError(f"posteriors have dim {posteriors.shape[1]}, Sprint's layer {self.output_size}")
        return np.ascontiguousarray(posteriors.T)

    def backpropagate(self, errorSignalIn: np.ndarray) -> tuple[np.ndarray]:  # noqa: N803
        """Error signal (output_size, time) for RETURNN; returns a zero signal (input_size, time) for Sprint."""
        seg_len = int(errorSignalIn.shape[1])
        self.ctrl.set_error_signal(seg_len, np.asarray(errorSignalIn).T)
        return (np.zeros((self.input_size or 0, seg_len), dtype=np.float32),)

    def finalize(self) -> None:
        """Called by Sprint at exit."""
