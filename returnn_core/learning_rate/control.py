"""Learning-rate controls: constant, newbob (relative, absolute, multi-epoch) and fixed schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from returnn_core.errors import ConfigError
from returnn_core.learning_rate.state_file import EpochData, load_state, save_state


class LearningRateControl:
    """Gives each epoch's learning rate from the scores of earlier ones; keeps them in the state file.

    ``learning_rates`` fixes the rates of the first epochs (a list for epochs 1, 2, ... or a dict epoch -> rate);
    later epochs are decided by :meth:`calc_learning_rate` of the subclass.
    """

    def __init__(
        self,
        default_learning_rate: float,
        *,
        learning_rates: Sequence[float] | Mapping[int, float] | None = None,
        min_learning_rate: float = 0.0,
        error_measure: str | None = None,
        filename: str | None = None,
    ) -> None:
        self.default_learning_rate = float(default_learning_rate)
        if isinstance(learning_rates, Mapping):
            self.schedule = {int(k): float(v) for k, v in learning_rates.items()}
        else:
            self.schedule = {i + 1: float(v) for i, v in enumerate(learning_rates or [])}
        self.min_learning_rate = float(min_learning_rate)
        self.error_measure = error_measure
        self.filename = filename
        self.epoch_data: dict[int, EpochData] = load_state(filename) if filename else {}

    @classmethod
    def options_from_config(cls, config: Any) -> dict[str, Any]:
        """Constructor options from the config keys RETURNN uses."""
        rates = config.typed_value("learning_rates")
        if isinstance(rates, str):
            import ast

            rates = ast.literal_eval(rates)
        return {
            "default_learning_rate": config.float("learning_rate", 1.0),
            "learning_rates": rates,
            "min_learning_rate": config.float("min_learning_rate", 0.0),
            "error_measure": config.value("learning_rate_control_error_measure", None),
            "filename": config.value("learning_rate_file", None),
        }

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Build from the config (subclasses add their own keys)."""
        return cls(**cls.options_from_config(config), **extra)

    # -- decisions ------------------------------------------------------------------------------
    def learning_rate(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (decided once, then remembered)."""
        data = self.epoch_data.get(epoch)
        if data is not None and data.learning_rate is not None:
            return data.learning_rate
        if epoch in self.schedule:
            lr = self.schedule[epoch]
        elif self._last_epoch(epoch) is None:
            lr = self.default_learning_rate
        else:
            lr = max(self.calc_learning_rate(epoch), self.min_learning_rate)
        self.epoch_data.setdefault(epoch, EpochData(None)).learning_rate = lr
        return lr

    def calc_learning_rate(self, epoch: int) -> float:
        """Subclass decision for an epoch with history; default: keep the last rate."""
        return self._last_rate(epoch)

    def set_epoch_error(self, epoch: int, errors: Mapping[str, float]) -> None:
        """Record the scores of ``epoch``."""
        self.epoch_data.setdefault(epoch, EpochData(None)).error.update({k: float(v) for k, v in errors.items()})

    def save(self) -> None:
        """Write the state file (atomically), if one is configured."""
        if self.filename:
            save_state(self.filename, self.epoch_data)

    # -- helpers for subclasses -----------------------------------------------------------------
    def _last_epoch(self, epoch: int) -> int | None:
        earlier = [e for e, d in self.epoch_data.items() if e < epoch and d.learning_rate is not None]
        return max(earlier) if earlier else None

    def _last_rate(self, epoch: int) -> float:
        last = self._last_epoch(epoch)
        return self.default_learning_rate if last is None else self.epoch_data[last].learning_rate  # type: ignore[return-value]

    def error_key(self, epoch: int) -> str | None:
        """Which recorded score drives decisions: the configured one, else ``dev_score``, else a dev/train score."""
        errors = self.epoch_data.get(epoch, EpochData(None)).error
        if self.error_measure:
            return self.error_measure if self.error_measure in errors else None
        for key in ("dev_score", *sorted(k for k in errors if k.startswith("dev_score")), "train_score"):
            if key in errors:
                return key
        return None

    def epoch_error(self, epoch: int) -> float | None:
        """The driving score of ``epoch``, if recorded."""
        key = self.error_key(epoch)
        return None if key is None else self.epoch_data[epoch].error[key]


class ConstantLearningRate(LearningRateControl):
    """The configured rate (or schedule) in every epoch."""


class NewbobRelative(LearningRateControl):
    """Decay when the relative improvement of the score between the last two epochs is below a threshold."""

    #: config key of the threshold
    threshold_key = "newbob_relative_error_threshold"

    def __init__(self, *args: Any, relative_error_threshold: float = -0.01, learning_rate_decay: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relative_error_threshold = float(relative_error_threshold)
        self.learning_rate_decay = float(learning_rate_decay)

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Also reads the threshold (:attr:`threshold_key`, default -0.01) and ``newbob_learning_rate_decay``."""
        return super().from_config(
            config,
            relative_error_threshold=config.float(cls.threshold_key, -0.01),
            learning_rate_decay=config.float("newbob_learning_rate_decay", 0.5),
            **extra,
        )

    def change(self, old: float, new: float) -> float:
        """How much the score moved: relative here."""
        return (new - old) / abs(old) if old else 0.0

    def calc_learning_rate(self, epoch: int) -> float:
        """Previous rate, decayed if the last epoch did not improve enough over the one before."""
        lr = self._last_rate(epoch)
        last = self._last_epoch(epoch)
        before = self._last_epoch(last) if last is not None else None
        if last is None or before is None:
            return lr
        old, new = self.epoch_error(before), self.epoch_error(last)
        if old is None or new is None:
            return lr
        if self.change(old, new) > self.relative_error_threshold:
            lr *= self.learning_rate_decay
        return lr


class NewbobAbs(NewbobRelative):
    """Like newbob, but on the absolute change of the score (``newbob_error_threshold``)."""

    threshold_key = "newbob_error_threshold"

    def change(self, old: float, new: float) -> float:
        """Absolute change."""
        return new - old


class NewbobMultiEpoch(NewbobRelative):
    """Every ``newbob_multi_update_interval`` epochs, compare the score with ``newbob_multi_num_epochs`` epochs ago.

    Both epochs must have run at the current rate; decay if the relative improvement over that span is below
    the threshold.
    """

    def __init__(self, *args: Any, num_epochs: int = 5, update_interval: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if num_epochs < 1:
            raise ConfigError("newbob_multi_num_epochs must be >= 1")
        self.num_epochs = int(num_epochs)
        self.update_interval = int(update_interval or num_epochs)

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Also reads ``newbob_multi_num_epochs`` and ``newbob_multi_update_interval``."""
        return super().from_config(
            config,
            num_epochs=config.int("newbob_multi_num_epochs", 5),
            update_interval=config.int("newbob_multi_update_interval", None),
            **extra,
        )

    def calc_learning_rate(self, epoch: int) -> float:
        """Previous rate, decayed at interval epochs when the span shows too little improvement."""
        lr = self._last_rate(epoch)
        last = epoch - 1
        first = last - self.num_epochs
        if (epoch - 1) % self.update_interval != 0 or first < 1:
            return lr
        span = [self.epoch_data.get(e) for e in range(first, last + 1)]
        if any(d is None or d.learning_rate != lr for d in span[1:]):
            return lr
        old, new = self.epoch_error(first), self.epoch_error(last)
        if old is None or new is None:
            return lr
        if self.change(old, new) > self.relative_error_threshold:
            lr *= self.learning_rate_decay
        return lr


def learning_rate_control_from_config(config: Any, manager: Any) -> LearningRateControl:
    """The control named by ``learning_rate_control`` (default ``constant``), resolved through the registry."""
    name = config.value("learning_rate_control", "constant")
    cls = manager.lr_controls.get(name)
    return cls.from_config(config)
