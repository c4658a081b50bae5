"""The Backend interface a backend plugin implements; the core's driver calls only this."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from returnn_core.config import Config
    from returnn_core.datasets import BatchData, ExternData
    from returnn_core.log import Log
    from returnn_core.network import NetworkDescription
    from returnn_core.plugin import PluginManager


@dataclass
class StepResult:
    """Per output layer: summed loss, summed error and the frames they were summed over."""

    losses: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    frames: dict[str, float] = field(default_factory=dict)

    def add(self, other: StepResult) -> None:
        """Accumulate another step into this one."""
        for mine, theirs in ((self.losses, other.losses), (self.errors, other.errors), (self.frames, other.frames)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + float(v)

    def scores(self) -> dict[str, float]:
        """Loss per frame per layer."""
        return {k: v / max(self.frames.get(k, 0.0), 1.0) for k, v in self.losses.items()}

    def error_rates(self) -> dict[str, float]:
        """Error per frame per layer."""
        return {k: v / max(self.frames.get(k, 0.0), 1.0) for k, v in self.errors.items()}

    def is_finite(self) -> bool:
        """Whether every loss is a finite number."""
        return all(np.isfinite(v) for v in self.losses.values())


class Backend(abc.ABC):
    """A deep-learning framework behind the core: builds the network, steps, saves and loads parameters.

    Lifecycle: ``__init__(config, manager)`` -> :meth:`build` -> (:meth:`load`) -> steps -> :meth:`save`.
    Layers, rec units, losses and optimizers are looked up in ``manager``'s registries with ``backend=self.name``.
    """

    #: the config name (``backend = "tf"``)
    name: ClassVar[str] = ""
    #: suffix of the checkpoint file written last: ``<prefix><marker>`` existing means the checkpoint is complete
    checkpoint_marker: ClassVar[str] = ""

    def __init__(self, config: Config, manager: PluginManager, log: Log) -> None:
        self.config = config
        self.manager = manager
        self.log = log

    @abc.abstractmethod
    def build(self, network: NetworkDescription, extern_data: ExternData, *, train: bool) -> None:
        """Create the layers and fresh parameters (``train`` also sets up losses and the optimizer)."""

    @abc.abstractmethod
    def train_step(self, batch: BatchData, learning_rate: float) -> StepResult:
        """One update on ``batch``; returns the losses before the update."""

    @abc.abstractmethod
    def eval_step(self, batch: BatchData) -> StepResult:
        """Losses and errors on ``batch`` without updating (dropout off)."""

    @abc.abstractmethod
    def forward_step(self, batch: BatchData, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Output of ``layer`` as (B, T, D) (or (B, T) for sparse) and its seq lengths (B,)."""

    @abc.abstractmethod
    def save(self, prefix: str) -> list[str]:
        """Write all parameters and optimizer state under ``prefix``; return the files written.

        The file ending in :attr:`checkpoint_marker` must be among them: the core renames it last.
        """

    @abc.abstractmethod
    def load(self, prefix: str, *, params_only: bool = False) -> None:
        """Restore a checkpoint written by :meth:`save` (``params_only``: skip the optimizer state)."""

    @abc.abstractmethod
    def get_param_values(self) -> dict[str, np.ndarray]:
        """All parameters as ``{"<layer>/<param>": array}``."""

    @abc.abstractmethod
    def set_param_values(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite parameters by name (shapes must match)."""

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's files; with several data-parallel workers only one does.

        The others read the shared ``model`` directory to resume at the same epoch but never write it.
        """
        return True

    def epoch_summary(self, epoch: int, scores: dict[str, Any]) -> None:
        """Called after each epoch with its scores (a backend may write summaries)."""

    def close(self) -> None:
        """Release resources."""
