"""Backend-neutral reading of the optimizer settings: ``optimizer = {"class": ...}`` or legacy flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from returnn_core.errors import ConfigError

#: legacy boolean flags (``adam = True``) -> optimizer class name
LEGACY_FLAGS = ("adam", "nadam", "adadelta", "adagrad", "rmsprop", "momentum")


@dataclass
class OptimizerSettings:
    """Which optimizer and how gradients are treated, as the config asks."""

    name: str = "sgd"
    opts: dict[str, Any] = field(default_factory=dict)
    gradient_clip: float | None = None
    gradient_clip_global_norm: float | None = None
    gradient_noise: float | None = None
    gradient_clip_norm: float | None = None
    gradient_nan_inf_filter: bool = False
    accum_grad_multiple_step: int = 1
    #: ``optimizer_epsilon``: RETURNN gives it to every optimizer that has an epsilon and is not given one
    epsilon: float = 1e-16

    @classmethod
    def from_config(cls, config: Any) -> OptimizerSettings:
        """Read ``optimizer`` (dict or class name) or a legacy flag, plus the gradient options."""
        opt = config.typed_value("optimizer")
        if isinstance(opt, str) and opt.startswith("{"):
            opt = config.dict("optimizer")
        if isinstance(opt, dict):
            opts = dict(opt)
            name = opts.pop("class", None)
            if not name:
                raise ConfigError(f"optimizer {opt!r} has no 'class'")
        elif isinstance(opt, str):
            name, opts = opt, {}
        elif opt is None:
            flags = [f for f in LEGACY_FLAGS if config.bool(f, False)]
            if len(flags) > 1:
                raise ConfigError(f"several optimizer flags set: {', '.join(flags)}; choose one")
            name, opts = (flags[0] if flags else "sgd"), {}
            if name == "momentum":
                opts["momentum"] = config.float("momentum", 0.9)
            elif config.float("momentum", 0.0) and name == "sgd":
                name, opts = "momentum", {"momentum": config.float("momentum", 0.0)}
        else:
            raise ConfigError(f"optimizer: expected a dict or a name, got {opt!r}")
        name = str(name).lower()
        for suffix in ("optimizer",):
            if name.endswith(suffix) and name != suffix:
                name = name[: -len(suffix)]
        return cls(
            name=name,
            opts=opts,
            gradient_clip=config.float("gradient_clip", None) or None,
            gradient_clip_global_norm=config.float("gradient_clip_global_norm", None) or None,
            gradient_noise=config.float("gradient_noise", None) or None,
            gradient_clip_norm=config.float("gradient_clip_norm", None) or None,
            gradient_nan_inf_filter=bool(config.bool("gradient_nan_inf_filter", False)),
            accum_grad_multiple_step=config.int("accum_grad_multiple_step", 1) or 1,
            epsilon=config.float("optimizer_epsilon", 1e-16),
        )

    def gradient_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`returnn_core.frontend.process_gradients` these settings ask for."""
        return {"clip": self.gradient_clip, "global_norm": self.gradient_clip_global_norm,
                "noise": self.gradient_noise, "clip_norm": self.gradient_clip_norm,
                "nan_inf_filter": self.gradient_nan_inf_filter}

    def create(self, cls: type) -> Any:
        """The optimizer ``cls`` with the config's options; an epsilon it takes defaults to ``optimizer_epsilon``
        (RETURNN's 1e-16, as its Theano updaters had; not the frameworks' own defaults)."""
        opts = dict(self.opts)
        if "epsilon" in getattr(cls, "defaults", {}) and "epsilon" not in opts:
            opts["epsilon"] = self.epsilon
        return cls(**opts)
