"""Learning-rate controls: constant, newbob (relative, absolute, multi-epoch) and fixed schedules, as RETURNN's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from returnn_core.config import parse_literal
from returnn_core.errors import ConfigError
from returnn_core.learning_rate.state_file import EpochData, load_state, save_state
from returnn_core.plugin import get_plugin_manager


def flatten_errors(errors: Mapping[str, Any]) -> dict[str, float]:
    """Scores as the learning-rate file keeps them: nested dicts flattened as RETURNN's ``set_epoch_error``.

    ``{"dev_score": {"cost:output": v}}`` becomes ``{"dev_score": v}``; with several entries
    ``{"dev_score": {"cost:out1": a, "cost:out2": b}}`` becomes ``{"dev_score_out1": a, "dev_score_out2": b}``.
    """
    out: dict[str, float] = {}
    for key, value in errors.items():
        if isinstance(value, Mapping):
            if len(value) == 1:
                out[key] = float(next(iter(value.values())))
                continue
            for sub, v in value.items():
                out[f"{key}_{sub.split(':', 1)[-1]}"] = float(v)
        else:
            out[key] = float(value)
    return out


class LearningRateControl:
    """Gives each epoch's learning rate from the scores of earlier ones; keeps them in the state file.

    ``learning_rates`` fixes the rates of some epochs (a list for epochs 1, 2, ... or a dict epoch -> rate); they
    are entered in :attr:`epoch_data` (and so in the file) up front, as RETURNN does. Every other epoch, the first
    included, is decided by :meth:`calc_learning_rate` of the subclass.
    """

    def __init__(
        self,
        default_learning_rate: float,
        *,
        learning_rates: Sequence[float] | Mapping[int, float] | None = None,
        min_learning_rate: float = 0.0,
        error_measure: str | None = None,
        relative_error_also_relative_to_learning_rate: bool = False,
        min_num_epochs_per_new_learning_rate: int = 0,
        filename: str | None = None,
    ) -> None:
        self.default_learning_rate = float(default_learning_rate)
        self.min_learning_rate = float(min_learning_rate)
        self.error_measure = error_measure
        self.relative_error_also_relative_to_learning_rate = bool(relative_error_also_relative_to_learning_rate)
        self.min_num_epochs_per_new_learning_rate = int(min_num_epochs_per_new_learning_rate)
        self.filename = filename
        self.epoch_data: dict[int, EpochData] = load_state(filename) if filename else {}
        if isinstance(learning_rates, Mapping):
            schedule = {int(k): float(v) for k, v in learning_rates.items()}
        else:
            schedule = {i + 1: float(v) for i, v in enumerate(learning_rates or [])}
        for epoch, lr in sorted(schedule.items()):
            self.set_default_learning_rate_for_epoch(epoch, lr)  # a rate already in the file wins

    @classmethod
    def options_from_config(cls, config: Any) -> dict[str, Any]:
        """Constructor options from the config keys RETURNN uses."""
        rates = config.typed_value("learning_rates")
        if isinstance(rates, str):
            try:
                rates = parse_literal(rates) if rates.strip()[:1] in "[{(" else config.float_list("learning_rates")
            except ValueError as exc:
                raise ConfigError(f"config key 'learning_rates': expected a list or dict of rates: {exc}") from None
        if rates is not None and not isinstance(rates, (Sequence, Mapping)):
            raise ConfigError(f"config key 'learning_rates': expected a list or dict of rates, got {rates!r}")
        return {
            "default_learning_rate": config.float("learning_rate", 1.0),
            "learning_rates": rates,
            "min_learning_rate": config.float("min_learning_rate", 0.0),
            "error_measure": config.value("learning_rate_control_error_measure", None),
            "relative_error_also_relative_to_learning_rate": config.bool(
                "learning_rate_control_relative_error_relative_lr", False
            ),
            "min_num_epochs_per_new_learning_rate": config.int("learning_rate_control_min_num_epochs_per_new_lr", 0),
            "filename": config.value("learning_rate_file", None),
        }

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Build from the config (subclasses add their own keys)."""
        return cls(**cls.options_from_config(config), **extra)

    def set_default_learning_rate_for_epoch(self, epoch: int, learning_rate: float, *, overwrite: bool = False) -> None:
        """``epoch`` trains at ``learning_rate``; unless ``overwrite``, only when it has no rate yet (from
        ``learning_rates`` or the state file of an earlier run), as RETURNN's method of this name."""
        data = self.epoch_data.setdefault(epoch, EpochData(None))
        if overwrite or not data.learning_rate:
            data.learning_rate = float(learning_rate)

    # -- decisions ------------------------------------------------------------------------------
    def learning_rate(self, epoch: int) -> float:
        """The learning rate for ``epoch``: fixed or stored, else decided now (floored) and remembered."""
        data = self.epoch_data.get(epoch)
        if data is not None and data.learning_rate is not None:
            return data.learning_rate
        lr = self._new_learning_rate(epoch)
        self.epoch_data.setdefault(epoch, EpochData(None)).learning_rate = lr
        return lr

    def _new_learning_rate(self, epoch: int) -> float:
        if self.min_num_epochs_per_new_learning_rate > 1:
            recent = [e for e in sorted(self.epoch_data) if e < epoch][-self.min_num_epochs_per_new_learning_rate :]
            rates = [self.epoch_data[e].learning_rate for e in recent]
            if len(set(rates)) >= 2:
                return rates[-1]  # type: ignore[return-value]  # changed recently: keep it for a while
        return max(self.calc_learning_rate(epoch), self.min_learning_rate)

    def calc_learning_rate(self, epoch: int) -> float:
        """Subclass decision for an epoch (epoch 1 included); default: keep the last rate."""
        return self._last_rate(epoch)

    def set_epoch_error(self, epoch: int, errors: Mapping[str, Any]) -> None:
        """Record the scores of ``epoch`` (nested dicts are flattened, see :func:`flatten_errors`)."""
        self.epoch_data.setdefault(epoch, EpochData(None)).error.update(flatten_errors(errors))

    def save(self) -> None:
        """Write the state file (atomically), if one is configured."""
        if self.filename:
            save_state(self.filename, self.epoch_data)

    # -- helpers for subclasses -----------------------------------------------------------------
    def _last_epoch(self, epoch: int) -> int | None:
        earlier = [e for e in self.epoch_data if e < epoch]
        return max(earlier) if earlier else None

    def _last_rate(self, epoch: int) -> float:
        """The rate of the latest earlier epoch that has one, else the default (``learning_rate``)."""
        for e in sorted((e for e in self.epoch_data if e < epoch), reverse=True):
            lr = self.epoch_data[e].learning_rate
            if lr is not None:
                return lr
        return self.default_learning_rate

    def error_key(self, epoch: int) -> str | None:
        """Which recorded score drives decisions, as RETURNN's ``get_error_key``: the configured
        ``learning_rate_control_error_measure``, else ``dev_score``, else ``train_score``, else the alphabetically
        first key.

        Each of these in its ``_output`` variant where the epoch has that: with several output layers RETURNN
        records only the per-layer scores (``dev_score_output``, ``dev_score_out2``), so the output layer's drives;
        the sum our driver adds under the plain key must not.
        """
        errors = self.epoch_data.get(epoch, EpochData(None)).error
        if not errors:
            return None
        candidates = [self.error_measure] if self.error_measure else ["dev_score", "train_score"]
        for key in candidates:
            for variant in (f"{key}_output", key):
                if variant in errors:
                    return variant
        if self.error_measure:
            return self.error_measure  # not recorded: epoch_error says so, naming the keys there are
        return min(errors)

    def epoch_error(self, epoch: int) -> float | None:
        """The driving score of ``epoch``, if it has scores."""
        key = self.error_key(epoch)
        if key is None:
            return None
        errors = self.epoch_data[epoch].error
        if key not in errors:
            raise ConfigError(
                f"learning_rate_control_error_measure {key!r} is not among the scores of epoch {epoch} "
                f"({', '.join(sorted(errors))}); set it to one of them, e.g. 'dev_error'"
            )
        return errors[key]

    def last_best_epoch(self, last_epoch: int, first_epoch: int = 1, filter_score: float = float("inf"),
                        only_last_n: int = -1, min_score_dist: float = 0.0) -> int | None:
        """The epoch in ``[first_epoch, last_epoch]`` with the best driving score, as RETURNN's ``get_last_best_epoch``.

        Only epochs scored under the latest epoch's key count; those above ``filter_score`` drop out, then only the
        last ``only_last_n`` remain (when >= 1), then only those better than the latest by more than
        ``min_score_dist``. None when no epoch is left.
        """
        scored = [(self.error_key(ep), self.epoch_error(ep), ep) for ep in range(first_epoch, last_epoch + 1)]
        scored = [(key, value, ep) for key, value, ep in scored if value is not None]
        if not scored:
            return None
        latest_key, latest = scored[-1][0], scored[-1][1]
        values = [(value, ep) for key, value, ep in scored if key == latest_key and value <= filter_score]
        if only_last_n >= 1:
            values = values[-only_last_n:]
        values = [(value, ep) for value, ep in values if value + min_score_dist < latest]
        return min(values)[1] if values else None

    def epoch_error_dict(self, epoch: int) -> dict[str, float]:
        """All scores recorded for ``epoch`` (empty if none)."""
        data = self.epoch_data.get(epoch)
        return data.error if data is not None else {}

    # RETURNN's method names (its manual and tests), for code written against RETURNN's LearningRateControl
    get_learning_rate_for_epoch = learning_rate
    get_error_key = error_key
    get_epoch_error_value = epoch_error
    get_epoch_error_dict = epoch_error_dict
    get_last_best_epoch = last_best_epoch

    def relative_error(self, old_epoch: int, new_epoch: int) -> float | None:
        """``(new - old) / |new|`` of the driving score, as RETURNN's ``calc_relative_error``; None across keys."""
        if self.error_key(old_epoch) != self.error_key(new_epoch):
            return None  # e.g. a train_score against a dev_score: no comparison, as RETURNN
        old, new = self.epoch_error(old_epoch), self.epoch_error(new_epoch)
        if old is None or new is None or new == 0:
            return None
        rel = (new - old) / abs(new)
        if self.relative_error_also_relative_to_learning_rate:
            lr = self._last_rate(new_epoch + 1)
            if lr > 0:
                # a lower rate is expected to improve less: compare relative to the initial rate
                rel /= lr / self.default_learning_rate
        return rel


class ConstantLearningRate(LearningRateControl):
    """The configured rate in every epoch; after a ``learning_rates`` schedule, its last rate."""


class NewbobRelative(LearningRateControl):
    """Decay when the relative change of the score between the last two epochs is above a threshold."""

    #: config key of the threshold
    threshold_key = "newbob_relative_error_threshold"

    def __init__(self, *args: Any, relative_error_threshold: float = -0.01, learning_rate_decay: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relative_error_threshold = float(relative_error_threshold)
        self.learning_rate_decay = float(learning_rate_decay)

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Also reads the threshold (:attr:`threshold_key`, -0.01) and ``newbob_learning_rate_decay`` (0.5)."""
        return super().from_config(
            config,
            relative_error_threshold=config.float(cls.threshold_key, -0.01),
            learning_rate_decay=config.float("newbob_learning_rate_decay", 0.5),
            **extra,
        )

    def change(self, old_epoch: int, new_epoch: int) -> float | None:
        """How much the score moved between the epochs: relative here."""
        return self.relative_error(old_epoch, new_epoch)

    def calc_learning_rate(self, epoch: int) -> float:
        """Previous rate, decayed if the last epoch did not improve enough over the one before."""
        last = self._last_epoch(epoch)
        if last is None or self.epoch_data[last].learning_rate is None:
            return self.default_learning_rate
        lr = self.epoch_data[last].learning_rate
        before = self._last_epoch(last)
        if before is None:
            return lr  # type: ignore[return-value]
        change = self.change(before, last)
        if change is not None and change > self.relative_error_threshold:
            lr *= self.learning_rate_decay  # type: ignore[operator]
        return lr  # type: ignore[return-value]


class NewbobAbs(NewbobRelative):
    """Like newbob, but on the absolute change of the score (``newbob_error_threshold``)."""

    threshold_key = "newbob_error_threshold"

    def change(self, old_epoch: int, new_epoch: int) -> float | None:
        """Absolute change, only between scores of the same key."""
        if self.error_key(old_epoch) != self.error_key(new_epoch):
            return None
        old, new = self.epoch_error(old_epoch), self.epoch_error(new_epoch)
        return None if old is None or new is None else new - old


class NewbobMultiEpoch(NewbobRelative):
    """Newbob on the mean relative change over the last ``newbob_multi_num_epochs`` epochs.

    Decides at epochs 1, 1 + interval, 1 + 2 * interval, ... (``newbob_multi_update_interval``, default the number
    of epochs); useful with ``partition_epoch``.
    """

    def __init__(self, *args: Any, num_epochs: int = 5, update_interval: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if num_epochs < 1:
            raise ConfigError("newbob_multi_num_epochs must be >= 1")
        self.num_epochs = int(num_epochs)
        self.update_interval = int(update_interval or num_epochs)
        if self.update_interval < 1:
            raise ConfigError("newbob_multi_update_interval must be >= 1")

    @classmethod
    def from_config(cls, config: Any, **extra: Any) -> LearningRateControl:
        """Also reads ``newbob_multi_num_epochs`` (5) and ``newbob_multi_update_interval`` (the number of epochs)."""
        return super().from_config(
            config,
            num_epochs=config.int("newbob_multi_num_epochs", 5),
            update_interval=config.int("newbob_multi_update_interval", None),
            **extra,
        )

    def mean_relative_error(self, epoch: int) -> float | None:
        """Mean relative change over the ``num_epochs + 1`` epochs before ``epoch`` (None with fewer than two)."""
        recent = [e for e in sorted(self.epoch_data) if e < epoch][-(self.num_epochs + 1) :]
        # RETURNN 2017 compared an empty list with the threshold here (py2: always "worse"); its intent is no decision
        if len(recent) <= 1:
            return None
        changes = [self.relative_error(a, b) for a, b in zip(recent, recent[1:])]
        if any(c is None for c in changes):
            return None
        return sum(changes) / len(changes)  # type: ignore[arg-type]

    def calc_learning_rate(self, epoch: int) -> float:
        """Most recent rate, decayed at update epochs when the mean relative change is above the threshold."""
        lr = self._last_rate(epoch)
        if self.update_interval > 1 and epoch % self.update_interval != 1:
            return lr
        mean = self.mean_relative_error(epoch)
        if mean is not None and mean > self.relative_error_threshold:
            lr *= self.learning_rate_decay
        return lr


def learning_rate_control_from_config(config: Any, manager: Any = None) -> LearningRateControl:
    """The control named by ``learning_rate_control`` (default ``constant``), resolved through the registry of
    ``manager`` (default: the process's plugin manager)."""
    if manager is None:
        manager = get_plugin_manager()
    name = config.value("learning_rate_control", "constant")
    cls = manager.lr_controls.get(name)
    return cls.from_config(config)


#: RETURNN's name of :func:`learning_rate_control_from_config`
load_learning_rate_control_from_config = learning_rate_control_from_config
