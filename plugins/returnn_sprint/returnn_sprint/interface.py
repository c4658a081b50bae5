"""The PythonTrainer / PythonFeatureScorer module Sprint loads to run RETURNN inside Sprint.

``--*.pymod-config`` holds ``action:train|forward,configfile:<RETURNN config>,epoch:<N>`` (plus for the feature
scorer ``prior_file:<log priors, one per line>,prior_scale:<float>``).

PythonTrainer (``--*.trainer=python-trainer``): Sprint calls ``init(inputDim, outputDim, config, targetMode)``
(also reachable as ``init_python_trainer``), then ``feedInput*`` per segment with features (dim, time), then
``exit()``. With ``action:train`` the segments fill a :class:`SprintDatasetBase` that the core training driver
consumes in a thread as epoch ``epoch`` (checkpoints of earlier epochs are resumed from ``model``). With
``action:forward`` ``feedInput`` returns the posteriors (output_dim, time) of the model of epoch ``epoch``.
Sprint computing the criterion itself (``finishError``) is not supported by the core driver's training step.

PythonFeatureScorer (PythonControl with ``sprint_unit="PythonFeatureScorer"``): ``init(input_dim, output_dim)``,
``get_feature_buffer_size()``, ``add_feature(feature, time)``, ``compute(num_frames)``, ``get_scores(time)``
(-log posteriors minus the scaled log priors), ``reset(num_frames)``, ``exit()``.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

from returnn_core.config import Config
from returnn_core.datasets import Batch, DatasetSeq, DataSpec, ExternData, SeqSlice
from returnn_core.errors import ConfigError
from returnn_sprint.extern_dataset import SprintDatasetBase
from returnn_sprint.pipe_protocol import parse_config_str

_state: dict[str, Any] = {}


def _log(msg: str) -> None:
    print(f"RETURNN SprintInterface[pid {os.getpid()}]: {msg}", file=sys.stdout, flush=True)


def _load_config(opts: dict[str, str]) -> Config:
    path = opts.get("configfile")
    if not path:
        raise ConfigError("Sprint pymod-config needs configfile:<RETURNN config>")
    config = Config()
    config.load_file(path)
    return config


class _Forwarder:
    """A model loaded for inference: features (time, dim) -> posteriors (time, classes)."""

    def __init__(self, config: Config, input_dim: int, output_dim: int, epoch: int | None) -> None:
        from returnn_core.engine.driver import Engine

        if epoch is not None:
            config.set("load_epoch", epoch)
        self.engine = Engine(config)
        extern = config.typed_value("extern_data") or None
        if not extern and not config.has("num_inputs"):
            config.set("num_inputs", input_dim)
        if not extern and not config.has("num_outputs"):
            config.set("num_outputs", output_dim)
        self.engine._load_for_inference(None)
        self.layer = config.value("forward_output_layer", "output")
        if self.layer not in self.engine.network.layers:
            raise ConfigError(f"forward_output_layer {self.layer!r} is not in the network")
        self.specs: ExternData = self.engine.extern_data

    def posteriors(self, features: np.ndarray, name: str = "seg") -> np.ndarray:
        batch = Batch()
        seq = DatasetSeq(0, name, {"data": np.asarray(features, dtype=np.float32)})
        batch.add(SeqSlice(seq, 0, len(features), frozenset({"data"})))
        data = batch.to_data({"data": self.specs.get("data", DataSpec(features.shape[1]))}, keys=["data"])
        out, lens = self.engine.backend.forward_step(data, self.layer)
        return np.asarray(out[0, : int(lens[0])], dtype=np.float32)


# -- PythonTrainer ----------------------------------------------------------------------------------
def init(**kwargs: Any) -> Any:
    """Called by Sprint: PythonTrainer init, or PythonControl init for the feature scorer."""
    if kwargs.get("name") == "Sprint.PythonControl":
        if kwargs.get("sprint_unit") != "PythonFeatureScorer":
            raise ValueError(f"this module serves PythonControl only as PythonFeatureScorer, not {kwargs.get('sprint_unit')!r}")
        return init_python_feature_scorer(**kwargs)
    return init_python_trainer(**kwargs)


def init_python_trainer(inputDim: int, outputDim: int, config: str, targetMode: str | None = None, **kwargs: Any) -> None:  # noqa: N803
    """Set up training or forwarding for this Sprint run."""
    opts = parse_config_str(config)
    action = opts.get("action", "train")
    epoch = int(opts.get("epoch", "1"))
    _log(f"init action={action} epoch={epoch} inputDim={inputDim} outputDim={outputDim} targetMode={targetMode}")
    rconfig = _load_config(opts)
    _state.update(action=action, input_dim=int(inputDim), output_dim=int(outputDim), epoch=epoch)
    if action == "train":
        if targetMode == "criterion-by-sprint":
            raise ConfigError("targetMode criterion-by-sprint (Sprint computes the loss) is not supported for training; "
                              "use the 'sprint' loss with ExternSprintDataset instead")
        _start_training(rconfig, int(inputDim), int(outputDim), epoch)
    elif action == "forward":
        _state["forwarder"] = _Forwarder(rconfig, int(inputDim), int(outputDim), epoch)
    elif action != "nop":
        raise ConfigError(f"Sprint pymod-config action {action!r}: expected train, forward or nop")


def _start_training(config: Config, input_dim: int, output_dim: int, epoch: int) -> None:
    from returnn_core.engine.driver import Engine

    dataset = SprintDatasetBase(input_dim=input_dim, output_dim=output_dim or None, name="SprintDataset",
                                buffer_size=config.int("sprint_buffer_size", 40) or 40,
                                reading_timeout=config.float("sprint_reading_timeout", 3600.0) or 3600.0)
    config.set("train", dataset)
    config.set("num_epochs", epoch)
    config.set("task", "train")
    engine = Engine(config)
    last = engine.last_epoch() or 0
    if last != epoch - 1:
        raise ConfigError(f"Sprint runs epoch {epoch}, but the newest checkpoint of model {engine.model!r} is epoch {last}; "
                          f"each Sprint run trains exactly one epoch (run epoch {last + 1} next)")
    errors: list[BaseException] = []

    def train() -> None:
        try:
            engine.run()
        except BaseException as exc:  # re-raised in exit(), in Sprint's thread
            errors.append(exc)
            dataset.stop_epoch()

    thread = threading.Thread(target=train, name="RETURNN train thread", daemon=True)
    thread.start()
    _state.update(dataset=dataset, thread=thread, errors=errors)


def _check_training() -> None:
    errors = _state.get("errors")
    if errors:
        raise errors[0]


def feedInputAndTarget(features: Any, weights: Any = None, segmentName: str | None = None, orthography: str | None = None,  # noqa: N802, N803
                       alignment: Any = None, **kwargs: Any) -> Any:
    """One segment from Sprint: train on it, or return its posteriors (output_dim, time) when forwarding."""
    action = _state.get("action")
    if action == "forward":
        post = _state["forwarder"].posteriors(np.asarray(features, dtype=np.float32).T, segmentName or "seg")
        return np.ascontiguousarray(post.T)
    if action == "train":
        _check_training()
        if not _state["dataset"].add_new_data(features, alignment, segment_name=segmentName):
            _check_training()
        return None
    if action == "nop":
        return None
    raise RuntimeError("feedInput before init")


def feedInput(features: Any, weights: Any = None, segmentName: str | None = None) -> Any:  # noqa: N802, N803
    """Features only (training without targets, or forwarding)."""
    return feedInputAndTarget(features, weights=weights, segmentName=segmentName)


feedInputUnsupervised = feedInput
feedInputForwarding = feedInput


def feedInputAndTargetAlignment(features: Any, targetAlignment: Any, weights: Any = None, segmentName: str | None = None) -> Any:  # noqa: N802, N803, E501
    """Features with a frame-wise alignment."""
    return feedInputAndTarget(features, weights=weights, segmentName=segmentName, alignment=targetAlignment)


def finishError(error: Any, errorSignal: Any, naturalPairingType: str | None = None) -> None:  # noqa: N802, N803
    """Sprint's criterion result: only meaningful with targetMode criterion-by-sprint, which is refused in init."""
    raise RuntimeError("finishError: Sprint-computed criteria are not supported here (see init)")


def exit() -> None:  # noqa: A001 - the name Sprint calls
    """Called by Sprint at the end: finish the epoch, wait for training (checkpoint written), report errors."""
    _log("exit")
    if _state.get("action") == "train":
        _state["dataset"].finish_sprint_epoch()
        _state["thread"].join()
        _check_training()
    _state.clear()


# -- PythonSegmentOrder -----------------------------------------------------------------------------
def getSegmentList(corpusName: str, segmentList: list[str], **kwargs: Any) -> list[str]:  # noqa: N802, N803
    """Called by Sprint: keep Sprint's order."""
    return list(segmentList)


# -- PythonFeatureScorer ----------------------------------------------------------------------------
def init_python_feature_scorer(config: str, callback: Any = None, version_number: int | None = None, **kwargs: Any) -> PythonFeatureScorer:
    """The scorer object Sprint's PythonFeatureScorer talks to."""
    return PythonFeatureScorer(parse_config_str(config))


class PythonFeatureScorer:
    """Scores (-log posteriors, prior-corrected) of the buffered features of one segment."""

    def __init__(self, opts: dict[str, str]) -> None:
        if opts.get("action", "forward") != "forward":
            raise ConfigError(f"PythonFeatureScorer: action must be 'forward', got {opts.get('action')!r}")
        self.opts = opts
        self.config = _load_config(opts)
        self.epoch = int(opts["epoch"]) if "epoch" in opts else None
        self.features: list[np.ndarray] = []
        self.scores: np.ndarray | None = None
        self.priors: np.ndarray | None = None
        self.forwarder: _Forwarder | None = None
        self.segment_count = 0

    def init(self, input_dim: int, output_dim: int) -> None:
        """Called by Sprint with the feature dim and the number of emission classes."""
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.forwarder = _Forwarder(self.config, self.input_dim, self.output_dim, self.epoch)
        scale = float(self.opts.get("prior_scale", "0") or 0)
        if scale:
            path = self.opts.get("prior_file")
            if not path or not os.path.exists(path):
                raise ConfigError(f"PythonFeatureScorer: prior_scale {scale} needs an existing prior_file, got {path!r}")
            log_priors = np.loadtxt(path, dtype=np.float32).reshape(-1)
            if log_priors.shape != (self.output_dim,):
                raise ConfigError(f"prior_file {path}: {log_priors.shape[0]} values, expected {self.output_dim}")
            self.priors = log_priors * np.float32(scale)

    def get_feature_buffer_size(self) -> int:
        """-1: no limit (a bidirectional model needs the whole segment)."""
        return -1

    def add_feature(self, feature: np.ndarray, time: int) -> None:
        """One frame (input_dim,)."""
        if time != len(self.features):
            raise ValueError(f"add_feature: got time {time}, expected {len(self.features)}")
        self.features.append(np.asarray(feature, dtype=np.float32).reshape(-1))

    def compute(self, num_frames: int) -> None:
        """Forward the buffered frames."""
        if num_frames != len(self.features) or not self.features:
            raise ValueError(f"compute({num_frames}) but {len(self.features)} frames are buffered")
        post = self.forwarder.posteriors(np.stack(self.features), f"seg-{self.segment_count}")
        scores = -np.log(np.maximum(post, 1e-30))
        if self.priors is not None:
            scores = scores + self.priors[None, :]
        self.scores = scores.astype(np.float32)

    def get_scores(self, time: int) -> np.ndarray:
        """Scores (output_dim,) of one frame."""
        return self.scores[time]

    def reset(self, num_frames: int) -> None:
        """The segment is done."""
        if num_frames > 0:
            self.segment_count += 1
        self.features = []
        self.scores = None

    def exit(self) -> None:
        """Called by Sprint at the end."""
        if self.forwarder is not None and self.forwarder.engine.backend is not None:
            self.forwarder.engine.backend.close()
