"""Datasets fed by Sprint: :class:`SprintDatasetBase` (seqs pushed in by Sprint) and :class:`ExternSprintDataset`
(starts the Sprint trainer as a child per epoch and receives its seqs over a pipe)."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

import returnn_sprint
from returnn_core.datasets import Dataset, DatasetSeq, DataSpec
from returnn_core.errors import DatasetError
from returnn_sprint.child import SprintChild, SprintChildError, describe_status, split_args
from returnn_sprint.pipe_protocol import format_config_str

_END = object()
EXTERN_INTERFACE_MODULE = "returnn_sprint.extern_interface"


def pymod_path() -> str:
    """The directory Sprint must put on ``sys.path`` to import ``returnn_sprint.*`` modules."""
    return os.path.dirname(os.path.dirname(os.path.abspath(returnn_sprint.__file__)))


def _to_str(value: Any) -> Any:
    return value.decode("utf8") if isinstance(value, bytes) else value


class SprintDatasetBase(Dataset):
    """A streaming dataset whose seqs Sprint pushes in (:meth:`add_new_data`), buffered up to ``buffer_size``.

    Features arrive as (dim, time) like Sprint hands them over; seqs are delivered time-major as ``data``, the
    alignment as ``classes``. String targets (the orthography ``orth``) become RETURNN's byte sequences: uint8,
    sparse with 256 labels; ``str_add_final_zero`` also delivers ``orth0``, the same bytes ending with a 0. As in
    RETURNN they are not in :meth:`data_specs` (Sprint may or may not send them, which is known only once seqs
    arrive): a network that reads ``orth`` declares it, ``"orth": [256, 1]`` in ``extern_data``/``num_outputs``.
    """

    def __init__(
        self,
        *,
        input_dim: int | None = None,
        output_dim: int | None = None,
        buffer_size: int = 40,
        reading_timeout: float = 300.0,
        str_add_final_zero: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.str_add_final_zero = bool(str_add_final_zero)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.buffer_size = int(buffer_size)
        self.reading_timeout = float(reading_timeout)
        self._queue: queue.Queue = queue.Queue(maxsize=max(self.buffer_size, 1))
        self._stop = threading.Event()
        self._num_known: int | None = None
        self._num_received = 0
        self._epoch_done = False

    # -- shape ----------------------------------------------------------------------------------
    def set_dimensions(self, input_dim: int, output_dim: int) -> None:
        """Called once Sprint told the dims."""
        if self.input_dim is not None and self.input_dim != input_dim:
            raise DatasetError(f"{self.name}: Sprint sends input dim {input_dim}, configured input_dim {self.input_dim}")
        if self.output_dim is not None and self.output_dim != output_dim and output_dim > 0:
            raise DatasetError(f"{self.name}: Sprint sends output dim {output_dim}, configured output_dim {self.output_dim}")
        self.input_dim = input_dim
        if output_dim and output_dim > 0:
            self.output_dim = output_dim

    def data_specs(self) -> dict[str, DataSpec]:
        """``data`` (dense, Sprint's input dim) and ``classes`` (sparse, Sprint's output dim) if known."""
        if self.input_dim is None:
            raise DatasetError(f"{self.name}: input dim unknown (Sprint has not initialised yet); set input_dim")
        specs = {"data": DataSpec(int(self.input_dim))}
        if self.output_dim:
            specs["classes"] = DataSpec(int(self.output_dim), sparse=True)
        return specs

    # -- the Sprint side --------------------------------------------------------------------------
    def reset_buffer(self) -> None:
        """Start a new epoch: drop buffered seqs."""
        self._stop.clear()
        self._queue = queue.Queue(maxsize=max(self.buffer_size, 1))
        self._num_received = 0
        self._num_known = None
        self._epoch_done = False

    def add_new_data(self, features: np.ndarray, targets: Any = None, segment_name: str | None = None) -> bool:
        """Push one seq: ``features`` (dim, time); ``targets`` an alignment (time,) or dict key -> array.

        Blocks while the buffer is full; returns False if the consumer stopped the epoch.
        """
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2:
            raise DatasetError(f"{self.name}: features of {segment_name!r} must be 2-D (dim, time), got {feats.shape}")
        if self.input_dim is not None and feats.shape[0] != self.input_dim:
            raise DatasetError(
                f"{self.name}: features of {segment_name!r} have dim {feats.shape[0]}, expected {self.input_dim}"
            )
        out = {"data": np.ascontiguousarray(feats.T)}
        if targets is not None and not isinstance(targets, Mapping):
            targets = {"classes": targets}
        for key, value in (targets or {}).items():
            key = _to_str(key)
            if isinstance(value, (str, bytes)):
                raw = np.frombuffer(value.encode("utf8") if isinstance(value, str) else value, dtype=np.uint8)
                out[key] = raw.copy()
                if self.str_add_final_zero:
                    out[key + "0"] = np.append(raw, np.uint8(0))
            elif key == "classes" and value is not None:
                cls = np.asarray(value).astype(np.int32).reshape(-1)
                if cls.shape[0] != feats.shape[1]:
                    raise DatasetError(
                        f"{self.name}: seq {segment_name!r}: alignment has {cls.shape[0]} frames, features {feats.shape[1]}"
                    )
                out["classes"] = cls
        name = _to_str(segment_name) or f"seq-{self._num_received}"
        item = DatasetSeq(self._num_received, name, out)
        self._num_received += 1
        return self._put(item)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def finish_sprint_epoch(self, error: BaseException | None = None) -> None:
        """Sprint finished the epoch (or failed with ``error``)."""
        self._put(error if error is not None else _END)

    # -- the RETURNN side -----------------------------------------------------------------------
    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Sprint decides the seqs; only the epoch number is kept."""
        if seq_list is not None:
            raise DatasetError(f"{self.name}: Sprint feeds the seqs; a seq_list cannot be applied")
        self.epoch = epoch

    @property
    def num_seqs(self) -> int:
        """Seqs of this epoch: known once Sprint told (or the epoch is over); else what arrived so far."""
        if self._num_known is not None:
            return self._num_known
        return self._num_received

    def _on_timeout(self) -> BaseException:
        return DatasetError(f"{self.name}: no seq from Sprint within {self.reading_timeout:g} s (reading_timeout)")

    def _next_item(self) -> Any:
        try:
            return self._queue.get(timeout=self.reading_timeout)
        except queue.Empty:
            return self._on_timeout()

    def iter_seqs(self) -> Iterator[DatasetSeq]:
        """Seqs in the order Sprint sends them."""
        if self._epoch_done:
            return
        count = 0
        while True:
            item = self._next_item()
            if item is _END:
                self._epoch_done = True
                self._num_known = count
                return
            if isinstance(item, BaseException):
                self._epoch_done = True
                self._fail()
                raise item
            count += 1
            yield self._windowed(item)

    def _windowed(self, seq: DatasetSeq) -> DatasetSeq:
        if self.window <= 1:
            return seq
        return DatasetSeq(seq.seq_idx, seq.tag, self._apply_window(seq.features))

    def _fail(self) -> None:
        """Called before an error is raised to the consumer."""

    def get_seq(self, seq_idx: int) -> DatasetSeq:
        """Not available: seqs stream in once; iterate with :meth:`iter_seqs`."""
        raise DatasetError(f"{self.name}: seqs from Sprint stream in once; random access (seq {seq_idx}) is not possible")

    def stop_epoch(self) -> None:
        """The consumer stops reading: unblock the producer."""
        self._stop.set()


class ExternSprintDataset(SprintDatasetBase):
    """Runs the Sprint trainer executable as a child per (sub-)epoch; it loads :mod:`returnn_sprint.extern_interface`
    and sends ``init``/``data``/``exit`` messages over a pipe, read by a thread into the bounded buffer.

    Options: ``sprintTrainerExecPath`` (path or argv list), ``sprintConfigStr`` (Sprint options, shell string or
    list), ``partitionEpoch`` (Sprint partitions the corpus), ``seq_ordering`` (applied on RETURNN's side through
    Sprint's python-segment-order: ``default``, ``reverse``, ``random[:seed]``), ``reading_timeout`` (seconds
    without a message before the child counts as hung), ``buffer_size``.
    """

    def __init__(
        self,
        sprintTrainerExecPath: str | Sequence[str],  # noqa: N803 - the RETURNN config name
        sprintConfigStr: str | Sequence[str] = "",  # noqa: N803
        *,
        partitionEpoch: int | None = None,  # noqa: N803
        child_exit_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if partitionEpoch is not None:
            kwargs.setdefault("partition_epoch", partitionEpoch)
        super().__init__(**kwargs)
        self.exec_args = split_args(sprintTrainerExecPath)
        if not self.exec_args:
            raise DatasetError(f"{self.name}: sprintTrainerExecPath is empty")
        if not os.path.exists(self.exec_args[0]):
            raise DatasetError(f"{self.name}: Sprint executable {self.exec_args[0]!r} does not exist")
        self.sprint_config = split_args(sprintConfigStr)
        if self.seq_ordering.partition(":")[0] not in ("default", "reverse", "random"):
            raise DatasetError(
                f"{self.name}: seq_ordering {self.seq_ordering!r} needs seq lengths, which Sprint's segment order "
                "cannot give up front; use 'default', 'reverse' or 'random'"
            )
        self.child_exit_timeout = float(child_exit_timeout)
        self.child: SprintChild | None = None
        self._reader: threading.Thread | None = None
        self._child_epoch: int | None = None
        self._child_seq_list: list[str] | None = None
        self._seq_list_file: str | None = None
        self._consumed = False

    # -- command line ---------------------------------------------------------------------------
    def _segment_order_config(self, epoch: int) -> dict[str, Any]:
        cfg: dict[str, Any] = {"seq_ordering": self.seq_ordering, "seed": self.random_seed(epoch), "epoch": epoch}
        if self._seq_list_file:
            cfg["segment_list_file"] = self._seq_list_file
        return cfg

    def build_sprint_args(self, c2p_fd: int, p2c_fd: int, epoch: int) -> list[str]:
        """The Sprint command line for one epoch, with the pipe fds in the pymod-config."""
        mod_path = pymod_path()
        trainer_cfg = format_config_str({"action": "ExternSprintDataset", "c2p_fd": c2p_fd, "p2c_fd": p2c_fd})
        args = list(self.exec_args) + list(self.sprint_config)
        # our options come after the user's so that they win
        args.append(f"--*.seed={(epoch - 1) // self.partition_epoch}")
        if self.partition_epoch > 1:
            args += [
                f"--*.corpus.partition={self.partition_epoch}",
                f"--*.corpus.select-partition={(epoch - 1) % self.partition_epoch}",
            ]
        args += [
            "--*.python-segment-order=true",
            f"--*.python-segment-order-pymod-path={mod_path}",
            f"--*.python-segment-order-pymod-name={EXTERN_INTERFACE_MODULE}",
            f"--*.python-segment-order-config={format_config_str(self._segment_order_config(epoch))}",
            "--*.use-data-source=false",
            "--*.trainer=python-trainer",
            f"--*.pymod-path={mod_path}",
            f"--*.pymod-name={EXTERN_INTERFACE_MODULE}",
            f"--*.pymod-config={trainer_cfg}",
        ]
        return args

    # -- child lifecycle ------------------------------------------------------------------------
    def _start_child(self, epoch: int, seq_list: list[str] | None) -> None:
        self._stop_child(kill=True)
        self.reset_buffer()
        if seq_list is not None:
            fd, self._seq_list_file = tempfile.mkstemp(prefix="returnn-sprint-seq-list-", suffix=".txt")
            with os.fdopen(fd, "w", encoding="utf8") as f:
                f.write("".join(tag + "\n" for tag in seq_list))
        try:
            self.child = SprintChild(lambda c2p, p2c: self.build_sprint_args(c2p, p2c, epoch), name=f"{self.name} Sprint child")
        except SprintChildError as exc:
            self._stop_child(kill=True)
            raise DatasetError(str(exc)) from None
        self._child_epoch, self._child_seq_list, self._consumed = epoch, seq_list, False
        try:
            msg = self.child.recv(timeout=self.reading_timeout)
            if not (isinstance(msg, tuple) and len(msg) == 2 and _to_str(msg[0]) == "init"):
                raise self.child.error(f"expected the ('init', (input_dim, output_dim, num_segments)) message, got {msg!r:.200}")
            input_dim, output_dim, num_segments = msg[1]
            self.set_dimensions(int(input_dim), int(output_dim))
        except SprintChildError as exc:
            self._stop_child(kill=True)
            raise DatasetError(str(exc)) from None
        except BaseException:
            self._stop_child(kill=True)
            raise
        self._num_known = int(num_segments) if num_segments is not None else None
        child = self.child
        self._reader = threading.Thread(target=self._read_loop, args=(child,), name=f"{self.name} reader", daemon=True)
        self._reader.start()

    def _read_loop(self, child: SprintChild) -> None:
        """Reader thread: messages -> buffer; ends with the end marker or the error."""
        try:
            while not self._stop.is_set():
                msg = child.recv(timeout=None)
                if not (isinstance(msg, tuple) and len(msg) == 2):
                    raise child.error(f"expected a (type, args) message, got {msg!r:.200}")
                kind = _to_str(msg[0])
                if kind == "data":
                    seg_name, features, targets = msg[1]
                    if not self.add_new_data(features, targets, segment_name=seg_name):
                        return
                elif kind == "exit":
                    self.finish_sprint_epoch()
                    return
                else:
                    raise child.error(f"unknown message type {kind!r}")
        except SprintChildError as exc:
            if not self._stop.is_set():
                self.finish_sprint_epoch(DatasetError(str(exc)))
        except (DatasetError, ValueError, TypeError) as exc:
            if not self._stop.is_set():
                self.finish_sprint_epoch(DatasetError(str(child.error(f"bad data message: {exc}"))))

    def _stop_child(self, *, kill: bool) -> int | None:
        """Stop the reader and the child (kill it unless it finished) and reap it; its return code."""
        child, self.child = self.child, None
        self.stop_epoch()
        code = None
        reader, self._reader = self._reader, None

        def join() -> None:
            if reader is not None:
                reader.join(timeout=10.0)

        if child is not None:
            code = child.stop(grace=0.0 if kill else self.child_exit_timeout, join=join)
        else:
            join()
        if self._seq_list_file:
            try:
                os.remove(self._seq_list_file)
            except OSError:
                pass
            self._seq_list_file = None
        return code

    # -- Dataset API ----------------------------------------------------------------------------
    def data_specs(self) -> dict[str, DataSpec]:
        """Starts the epoch-1 child if the dims are not known yet (it is kept for epoch 1)."""
        if self.input_dim is None:
            self._start_child(1, None)
        return super().data_specs()

    def init_seq_order(self, epoch: int | None = None, seq_list: list[str] | None = None) -> None:
        """Start Sprint for ``epoch`` (or for exactly the segments in ``seq_list``)."""
        epoch = epoch or 1
        if seq_list is not None and self.partition_epoch > 1:
            raise DatasetError(f"{self.name}: seq_list cannot be combined with partitionEpoch {self.partition_epoch}")
        self.epoch = epoch
        fresh = self.child is not None and not self._consumed
        if fresh and self._child_epoch == epoch and self._child_seq_list == seq_list:
            return
        self._start_child(epoch, list(seq_list) if seq_list is not None else None)

    def iter_seqs(self) -> Iterator[DatasetSeq]:
        """Seqs as the child sends them."""
        if self.child is None and not self._epoch_done:
            self.init_seq_order(self.epoch or 1)
        self._consumed = True
        yield from super().iter_seqs()

    def _on_timeout(self) -> BaseException:
        child = self.child
        if child is None:
            return super()._on_timeout()
        child.kill()
        return DatasetError(str(child.error(f"no seq within {self.reading_timeout:g} s (reading_timeout; hung?); killed it")))

    def _fail(self) -> None:
        self._stop_child(kill=True)

    def finish_epoch(self) -> None:
        """Reap the child: it must exit cleanly after a full epoch; a child stopped early is killed."""
        child = self.child
        if child is None:
            return
        error = None
        if self._epoch_done:
            code = child.wait(timeout=self.child_exit_timeout)
            if code != 0:
                what = "did not exit" if code is None else f"ended the epoch with {describe_status(code)}"
                error = DatasetError(str(child.error(f"after sending 'exit' the child {what}")))
        self._stop_child(kill=True)
        if error is not None:
            raise error

    def close(self) -> None:
        """Kill and reap any running child."""
        self._stop_child(kill=True)

    def __del__(self) -> None:
        try:
            self._stop_child(kill=True)
        except Exception:
            pass
