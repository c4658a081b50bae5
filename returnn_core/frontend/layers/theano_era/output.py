"""The Theano-era output layer options of ``softmax`` (NetworkOutputLayer.OutputLayer), applied on top of the one
``softmax`` definition in ``layers/basic.py``.

``softmax_smoothing`` scales the logits; ``sigmoid_outputs``/``exp_outputs``/``gauss_outputs``/``apply_softmax``
replace the softmax; ``grad_clip_z`` clips the gradient of the logits; ``compute_priors`` keeps the average output
over the present frames as the non-trainable parameter ``priors`` (exponential moving average with
``compute_priors_exp_average``, else the running mean over all training steps); ``log_prior`` reads log priors from a
text file; ``subtract_prior_from_output`` divides the output by ``prior ** prior_scale``; ``copy_output`` (a
``downsample`` layer with ``sample_target``, or ``segment_class_targets``) makes the loss use that layer's target.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._network import LOSS_TARGET
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.theano_era.time import RESAMPLED_TARGET, target_data
from returnn_core.frontend.layers.theano_era.twod import HEIGHTS

OPTIONS = frozenset({
    "softmax_smoothing", "sigmoid_outputs", "exp_outputs", "gauss_outputs", "apply_softmax", "grad_clip_z",
    "compute_priors", "compute_priors_exp_average", "prior_scale", "log_prior", "subtract_prior_from_output",
    "copy_output",
})
#: manual options with no effect at their defaults; other values get a clear error
UNSUPPORTED = {
    "dtype": None, "reshape_target": False, "copy_input": None, "time_limit": 0,
    "use_source_index": False, "auto_fix_target_length": False, "use_label_priors": 0,
    "compute_priors_via_baum_welch": False, "compute_priors_accumulate_batches": None,
    "compute_distortions": False, "grad_discard_out_of_bound_z": None, "normalize_length": False,
    "exclude_labels": [], "input_output_similarity": None, "input_output_similarity_scale": 1,
    "copy_weights": False,
}
_PROB_FLOOR = np.float32(1e-20)


def check_options(layer: Layer) -> None:
    """A clear error for a Theano output option this implementation does not have, at a non-default value."""
    for key, default in UNSUPPORTED.items():
        if key in layer.opts and layer.opts[key] not in (default, None, False, 0, [], ()):
            raise layer.error(f"the Theano output option {key}={layer.opts[key]!r} is not supported; remove it")
    replacements = [k for k in ("sigmoid_outputs", "exp_outputs", "gauss_outputs") if layer.opts.get(k)]
    if layer.opts.get("apply_softmax", True) is False:
        replacements.append("apply_softmax=False")
    if len(replacements) > 1 or (replacements and "activation" in layer.opts):
        raise layer.error(f"choose one output function, got {', '.join(replacements)}"
                          f"{' and activation' if 'activation' in layer.opts else ''}")


def output_function(layer: Layer) -> str | None:
    """The activation name the Theano output options ask for instead of softmax (``None``: keep the default)."""
    if layer.opts.get("apply_softmax", True) is False:
        return "linear"
    for key, act in (("sigmoid_outputs", "sigmoid"), ("exp_outputs", "exp"), ("gauss_outputs", "gauss")):
        if layer.opts.get(key):
            return act
    return None


def collapse_images(sources: list[LayerOutput], ops: Any) -> list[LayerOutput]:
    """Image sources (from the 2D layers) summed over their height, as RETURNN's output layer collapsed a 4D input."""
    out = []
    for src in sources:
        if HEIGHTS in src.extra:
            extra = {k: v for k, v in src.extra.items() if k != HEIGHTS}
            src = src.with_tensor(ops.reduce(src.tensor, "sum", axis=2), dim=src.dim, extra=extra)
        out.append(src)
    return out


def scale_logits(layer: Layer, z: Any, ctx: Context) -> Any:
    """``z`` times ``softmax_smoothing``, its gradient clipped by ``grad_clip_z``."""
    ops = ctx.ops
    clip = layer.opts.get("grad_clip_z")
    if clip is not None:
        z = ops.clip_gradient(z, -float(clip), float(clip))
    smoothing = layer.float_opt("softmax_smoothing", 1.0)
    return z * np.float32(smoothing) if smoothing != 1.0 else z


def gauss(ops: Any, z: Any) -> Any:
    """``exp(-z**2)``, the ``gauss_outputs`` function."""
    return ops.exp(-ops.square(z))


def apply_priors(layer: Layer, out: LayerOutput, ctx: Context) -> LayerOutput:
    """Update ``priors`` (``compute_priors``) and divide them out of the output (``subtract_prior_from_output``)."""
    ops = ctx.ops
    log_prior = None
    if layer.opts.get("compute_priors"):
        dim = int(out.dim or 0)
        priors = layer.param("priors", (dim,), float(1.0 / dim), trainable=False)
        alpha = layer.float_opt("compute_priors_exp_average", 0.0)
        # the step count of the running mean exists also when the network is built for evaluation only
        steps = None if alpha else layer.param("priors_steps", (1,), 0.0, trainable=False)
        if ctx.train:
            probs = ops.stop_gradient(out.tensor)
            axes = [0, 1] if out.has_time else [0]
            weights = ops.expand_dims(out.mask(), -1) if out.has_time else ops.ones_like(probs[..., :1])
            mean = ops.masked_reduce(probs, weights * ops.ones_like(probs), "mean", axes)
            if steps is None:
                ops.assign(priors, priors * np.float32(1.0 - alpha) + mean * np.float32(alpha))
            else:
                ops.assign(priors, (priors * steps + mean) / (steps + 1.0))
                ops.assign(steps, steps + 1.0)
        log_prior = ops.log(ops.maximum(priors, _PROB_FLOOR))
    elif layer.opts.get("log_prior") is not None:
        log_prior = ops.constant(_read_log_prior(layer, int(out.dim or 0)))
    if not layer.opts.get("subtract_prior_from_output"):
        return out
    if log_prior is None:
        raise layer.error("subtract_prior_from_output needs compute_priors=True or a log_prior file")
    scale = np.float32(layer.float_opt("prior_scale", 1.0))
    log_out = ops.log(ops.clip(out.tensor, float(_PROB_FLOOR), 1e20))
    # the loss stays on the logits, as RETURNN's (its cost uses z, not the prior-divided output)
    return out.with_tensor(ops.exp(log_out - log_prior * scale), dim=out.dim, logits=out.logits,
                           activation=out.activation)


def _read_log_prior(layer: Layer, dim: int) -> np.ndarray:
    """The whitespace-separated log priors of the ``log_prior`` text file (one per output class)."""
    path = Path(str(layer.opts["log_prior"]))
    try:
        values = np.array(path.read_text().split(), dtype="float32")
    except OSError as exc:
        raise layer.error(f"cannot read log_prior file {str(path)!r}: {exc.strerror}") from None
    except ValueError:
        raise layer.error(f"log_prior file {str(path)!r} must hold numbers separated by whitespace") from None
    if values.shape != (dim,):
        raise layer.error(f"log_prior file {str(path)!r} has {values.size} values, the layer has {dim} outputs")
    return values


def copied_target(layer: Layer, out: LayerOutput, ctx: Context) -> LayerOutput:
    """``out`` with the loss target of the layer ``copy_output`` names (RETURNN's ``y_out``/``index_out``)."""
    name = layer.opts.get("copy_output")
    if not name:
        return out
    if not isinstance(name, str):
        raise layer.error(f"copy_output must name a layer, got {name!r}")
    target = ctx.get(name, layer=layer.name).extra.get(RESAMPLED_TARGET)
    if target is None:
        if target_data(layer, ctx) is None:
            return out  # no targets fed (forward): no loss to compute
        raise layer.error(f"copy_output {name!r} gives no resampled target; name a downsample layer with "
                          "sample_target=True (or one whose base has it) or a segment_class_targets layer")
    # the loss is normalised by the resampled frames; RETURNN scaled its sum by (target frames / resampled frames)
    return replace(out, extra={**out.extra, LOSS_TARGET: target})
