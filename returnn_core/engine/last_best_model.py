"""RETURNN's ``use_last_best_model``: before an epoch, go back to an earlier model that scored clearly better."""

from __future__ import annotations

from typing import Any

from returnn_core.errors import ConfigError
from returnn_core.learning_rate import LearningRateControl

#: the options of the dict form, with RETURNN's defaults (``get_last_best_epoch``'s keyword arguments and ``modulo``)
OPTIONS = {"modulo": 1, "filter_score": float("inf"), "only_last_n": -1, "min_score_dist": 0.0, "first_epoch": 1}


def last_best_options(value: Any) -> dict[str, Any] | None:
    """The options of a ``use_last_best_model`` value (True or a dict), or None when it is off."""
    if not value:
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on")):
        return dict(OPTIONS)
    if not isinstance(value, dict):
        raise ConfigError(f"use_last_best_model must be True or a dict of {', '.join(OPTIONS)}; got {value!r}")
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"use_last_best_model: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    return {**OPTIONS, **value}


def epoch_to_go_back_to(lrc: LearningRateControl, epoch: int, opts: dict[str, Any]) -> int | None:
    """The earlier epoch whose model ``epoch`` should start from instead of ``epoch - 1``'s, as RETURNN's engine."""
    previous = epoch - 1
    if previous < 1:
        return None
    if epoch % max(int(opts["modulo"]), 1) != 0:
        # off the modulo only a really bad last score (above filter_score) makes us look back
        if (lrc.epoch_error(previous) or 0) <= opts["filter_score"]:
            return None
    best = lrc.last_best_epoch(previous, first_epoch=int(opts["first_epoch"]), filter_score=opts["filter_score"],
                               only_last_n=int(opts["only_last_n"]), min_score_dist=float(opts["min_score_dist"]))
    return best if best and best != previous else None
