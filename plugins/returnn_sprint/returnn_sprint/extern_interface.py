"""The module Sprint loads for :class:`~returnn_sprint.extern_dataset.ExternSprintDataset` (runs inside the child).

Sprint calls, in this order: ``getSegmentList`` (PythonSegmentOrder: RETURNN's seq order is applied here),
``init`` (PythonTrainer, lazily on the first segment; or PythonControl with ``name="Sprint.PythonControl"``),
``feedInput*`` per segment with features (dim, time), and ``exit``. Each is forwarded to the parent as a framed
pickle: ``("init", (input_dim, output_dim, num_segments))``, ``("data", (name, features, targets))``,
``("exit", None)``. Names and signatures are fixed by Sprint.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from returnn_sprint.pipe_protocol import parse_config_str, write_message

segment_order_list: list[str] | None = None
_source: _DatasetSource | None = None


class _DatasetSource:
    """Our end of the pipes in the child."""

    def __init__(self, c2p_fd: int, p2c_fd: int, input_dim: int, output_dim: int, num_segments: int | None) -> None:
        self.c2p = os.fdopen(c2p_fd, "wb")
        self.p2c = os.fdopen(p2c_fd, "rb")
        self.send("init", (int(input_dim), int(output_dim), num_segments))

    def send(self, kind: str, args: Any = None) -> None:
        write_message(self.c2p, (kind, args))

    def close(self) -> None:
        self.send("exit", None)
        self.c2p.close()
        self.p2c.close()


def _log(msg: str) -> None:
    print(f"RETURNN ExternSprintInterface[pid {os.getpid()}]: {msg}", file=sys.stdout, flush=True)


def _ordered(segment_list: list[str], config: dict[str, str]) -> list[str]:
    """The segments in RETURNN's order: an explicit list file, or ``seq_ordering`` with ``seed``."""
    list_file = config.get("segment_list_file")
    if list_file:
        with open(list_file, encoding="utf8") as f:
            wanted = [line.strip() for line in f if line.strip()]
        known = set(segment_list)
        missing = [s for s in wanted if s not in known]
        if missing:
            raise ValueError(f"segment list {list_file}: segments not in the Sprint corpus: {', '.join(missing[:5])}")
        return wanted
    from returnn_core.datasets.seq_order import seq_order

    ordering = config.get("seq_ordering", "default")
    order = seq_order(ordering, len(segment_list), None, int(config.get("seed", "1")))
    return [segment_list[i] for i in order]


# -- Sprint PythonSegmentOrder ----------------------------------------------------------------------
def getSegmentList(corpusName: str, segmentList: list[str], config: str = "", **kwargs: Any) -> list[str]:  # noqa: N802, N803
    """Called by Sprint (python-segment-order): the segments to visit, in RETURNN's order."""
    global segment_order_list
    segment_order_list = _ordered(list(segmentList), parse_config_str(config or ""))
    _log(f"getSegmentList({corpusName!r}): {len(segment_order_list)} of {len(segmentList)} segments")
    return segment_order_list


# -- Sprint PythonTrainer ---------------------------------------------------------------------------
def init(**kwargs: Any) -> Any:
    """Called by Sprint: PythonTrainer init (``inputDim``, ``outputDim``, ``config``, ``targetMode``) or PythonControl."""
    if kwargs.get("name") == "Sprint.PythonControl":
        return PythonControl.init(**kwargs)
    return _init_python_trainer(**kwargs)


def _init_python_trainer(inputDim: int, outputDim: int, config: str, targetMode: str | None = None, **kwargs: Any) -> None:  # noqa: N803
    cfg = parse_config_str(config)
    if cfg.get("action") != "ExternSprintDataset":
        raise ValueError(f"pymod-config action is {cfg.get('action')!r}, expected 'ExternSprintDataset'")
    if targetMode == "criterion-by-sprint":
        raise ValueError("ExternSprintDataset cannot be used with targetMode criterion-by-sprint")
    _log(f"init inputDim={inputDim} outputDim={outputDim} targetMode={targetMode}")
    _open_source(cfg, inputDim, outputDim)


def _open_source(cfg: dict[str, str], input_dim: int, output_dim: int) -> None:
    global _source
    if _source is None:
        num = len(segment_order_list) if segment_order_list is not None else None
        _source = _DatasetSource(int(cfg["c2p_fd"]), int(cfg["p2c_fd"]), input_dim, output_dim, num)


def exit() -> None:  # noqa: A001 - the name Sprint calls
    """Called by Sprint at the end: tell the parent the epoch is complete."""
    global _source
    _log("exit")
    if _source is not None:
        _source.close()
        _source = None


def feedInputAndTarget(  # noqa: N802
    features: Any,
    weights: Any = None,
    segmentName: str | None = None,  # noqa: N803
    orthography: str | None = None,
    alignment: Any = None,
    speaker_name: str | None = None,
    speaker_gender: str | None = None,
    **kwargs: Any,
) -> None:
    """Called by Sprint per segment: features (dim, time) and optional alignment (time,)."""
    if _source is None:
        raise RuntimeError("feedInput before init: Sprint did not initialise the PythonTrainer")
    targets = {}
    if alignment is not None:
        targets["classes"] = alignment
    if orthography is not None:
        targets["orth"] = orthography
    _source.send("data", (segmentName, features, targets))


def feedInput(features: Any, weights: Any = None, segmentName: str | None = None) -> None:  # noqa: N802, N803
    """Unsupervised: features only."""
    feedInputAndTarget(features, weights=weights, segmentName=segmentName)


feedInputUnsupervised = feedInput


def feedInputAndTargetAlignment(features: Any, targetAlignment: Any, weights: Any = None, segmentName: str | None = None) -> None:  # noqa: N802, N803, E501
    """Features with a frame-wise alignment."""
    feedInputAndTarget(features, weights=weights, segmentName=segmentName, alignment=targetAlignment)


def feedInputAndTargetSegmentOrth(features: Any, targetSegmentOrth: str, weights: Any = None, segmentName: str | None = None) -> None:  # noqa: N802, N803, E501
    """Features with the orthography."""
    feedInputAndTarget(features, weights=weights, segmentName=segmentName, orthography=targetSegmentOrth)


# -- Sprint PythonControl (Sprint iterates the corpus and hands over each segment) --------------------
class PythonControl:
    """PythonControl flavour of the same interface: ``init_processing``, ``process_segment``, ``exit``."""

    instance: PythonControl | None = None

    @classmethod
    def init(cls, **kwargs: Any) -> PythonControl:
        """One instance per process."""
        if cls.instance is None:
            cls.instance = cls(**kwargs)
        return cls.instance

    def __init__(self, config: str, **kwargs: Any) -> None:
        self.config = parse_config_str(config)

    def init_processing(self, input_dim: int, output_dim: int, **kwargs: Any) -> None:
        """Called by Sprint before the first segment."""
        _open_source(self.config, input_dim, output_dim)

    def process_segment(self, name: str, orthography: str | None, features: Any, alignment: Any = None, soft_alignment: Any = None, **kwargs: Any) -> None:  # noqa: E501
        """Called by Sprint per segment."""
        feedInputAndTarget(features, segmentName=name, orthography=orthography, alignment=alignment)

    def exit(self, **kwargs: Any) -> None:
        """Called by Sprint at the end."""
        exit()
