"""Layers that keep statistics of their input: ``accumulate_mean`` and ``framewise_statistics``.

Both hold non-trainable parameters that training steps update (like RETURNN's custom updates); evaluation only
reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.shape import axis_list, static_dims
from returnn_core.network import LayerRef


def _reduce_axes(layer: Layer, src: LayerOutput, axes: Any) -> list[int]:
    """RETURNN's axes of accumulate_mean: ``"bt"`` (batch and time) or a list of B, T, F, ints; batch and time
    must be among them."""
    if isinstance(axes, str) and axes.lower() == "bt":
        axes = ["B", "T"]
    idx = sorted(axis_list(src, axes, layer=layer.name)) if src.has_time else []
    if 0 not in idx or 1 not in idx:
        raise layer.error(f"axes must contain the batch and the time axis (of a time input), got {axes!r}")
    return idx


class AccumulateMeanLayer(Layer):
    """The running mean of its input over ``axes`` (default ``"bt"``: batch and time, padding left out), kept in
    the parameter ``mean``: each training step moves it by ``exp_average`` towards the batch mean. Its output is
    that parameter (as it was before the step), repeated over the batch."""

    options = frozenset({"exp_average", "axes", "initial_value", "is_prob_distribution"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The accumulated mean; in training also its update."""
        ops = ctx.ops
        src = self.single_source(sources)
        if "exp_average" not in self.opts:
            raise self.error("needs 'exp_average', the momentum of the running mean")
        alpha = self.float_opt("exp_average", 0.0)
        axes = _reduce_axes(self, src, self.opts.get("axes", "bt"))
        x = src.dense()
        dims = static_dims(src, x)
        shape = tuple(d for i, d in enumerate(dims) if i not in axes)
        if any(d is None for d in shape):
            raise self.error(f"the axes it keeps must have a fixed size, got {shape}")
        initial = self.opts.get("initial_value")
        if self.opts.get("is_prob_distribution"):
            if len(shape) != 1:
                raise self.error("is_prob_distribution needs a result with one (feature) axis")
            if initial is None:
                initial = 1.0 / shape[0]
        mean_var = self.param("mean", shape, 0.0 if initial is None else float(initial), trainable=False)
        out = mean_var * 1.0
        if ctx.train:
            mask = src.mask()
            for _ in range(ops.ndim(x) - 2):
                mask = ops.expand_dims(mask, -1)
            mean = ops.masked_reduce(x, mask, "mean", axes)
            ops.assign(mean_var, mean_var + np.float32(alpha) * (ops.stop_gradient(mean) - mean_var))
        tiled = ops.tile(ops.expand_dims(out, 0), [ctx.batch_size] + [1] * len(shape))
        return LayerOutput(tiled, None, shape[-1] if shape else None)


#: the three frame subsets of framewise_statistics: all, silence only, all but silence
SUBSETS = ("", "_sil", "_no_sil")


def stat_names(num_bins: int) -> list[str]:
    """The entries of framewise_statistics' output vector, in order (histograms take ``num_bins`` entries each)."""
    names = [f"{kind}_seq_length{sub}" for kind in ("batch", "accumulated") for sub in SUBSETS]
    for stat in ("loss_ce", "frame_error", "loss_perplexity"):
        names += [f"{kind}_{stat}{sub}" for kind in ("batch", "accumulated") for sub in SUBSETS]
    for kind in ("batch", "accumulated"):
        for sub in SUBSETS:
            names += [f"{kind}_true_label_prob_histogram{sub}[{i}]" for i in range(num_bins)]
    return names


class FramewiseStatisticsLayer(Layer):
    """Frame statistics of a softmax output layer (its source) against its target: cross entropy, frame error,
    perplexity and a histogram of the true label's probability (``histogram_num_bins``), each over all frames,
    the silence frames (target ``sil_label_idx``) and the others, for the batch and accumulated over training.

    The target is a second source if given, else the source layer's ``target`` (default ``classes``). The output is
    the vector of :func:`stat_names` (B, K), repeated over the batch; ``extra["stats"]`` maps each name to its
    value. Empty subsets give 0 (RETURNN gave NaN).
    """

    options = frozenset({"sil_label_idx", "histogram_num_bins"})

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Compute the batch statistics; in training also add them to the accumulators."""
        ops = ctx.ops
        if "sil_label_idx" not in self.opts:
            raise self.error("needs 'sil_label_idx', the target label of silence")
        sil = int(self.opts["sil_label_idx"])
        bins = int(self.opts.get("histogram_num_bins", 20))
        if not sources or len(sources) > 2:
            raise self.error("needs one source (a softmax output layer) and optionally its target as a second")
        out = sources[0]
        if out.activation != "softmax" or out.logits is None or not out.has_time:
            raise self.error("its source must be a softmax layer with a time axis")
        target = sources[1] if len(sources) == 2 else self._source_target(ctx)
        if not target.sparse:
            raise self.error("needs a sparse target (a framewise alignment)")
        mask = out.mask()
        labels = ops.cast(target.tensor, "int32")
        log_probs = ops.log_softmax(out.logits)
        ce = ops.cross_entropy_sparse(log_probs, labels)
        error = ops.cast(ops.not_equal(ops.cast(ops.argmax(out.logits), "int32"), labels), "float32")
        prob = ops.exp(-ce)
        hist = ops.one_hot(ops.cast(ops.clip(ops.round(prob * float(bins)), 0.0, bins - 1.0), "int32"), bins)
        is_sil = ops.cast(ops.equal(labels, sil), "float32")
        stats: dict[str, Any] = {}
        for sub, sub_mask in zip(SUBSETS, (mask, mask * is_sil, mask * (1.0 - is_sil))):
            count = ops.reduce(sub_mask, "sum")
            acc_count = self._accumulate(ctx, f"seq_length{sub}", count, ())
            stats[f"batch_seq_length{sub}"] = count
            stats[f"accumulated_seq_length{sub}"] = acc_count
            for stat, value in (("loss_ce", ce), ("frame_error", error), ("true_label_prob_histogram", hist)):
                m = sub_mask if stat != "true_label_prob_histogram" else ops.expand_dims(sub_mask, -1)
                total = ops.reduce(value * m, "sum", [0, 1])
                acc = self._accumulate(ctx, f"{stat}{sub}", total, () if stat != "true_label_prob_histogram" else (bins,))
                stats[f"batch_{stat}{sub}"] = total / ops.maximum(count, 1.0)
                stats[f"accumulated_{stat}{sub}"] = acc / ops.maximum(acc_count, 1.0)
            for kind in ("batch", "accumulated"):
                stats[f"{kind}_loss_perplexity{sub}"] = ops.exp(stats[f"{kind}_loss_ce{sub}"])
        names = stat_names(bins)
        flat = []
        for name in names:
            if "[" in name:
                key, i = name[:-1].split("[")
                if int(i) == 0:
                    flat.append(stats[key])
            else:
                flat.append(ops.reshape(stats[name], [1]))
        vector = ops.concat(flat, axis=0)
        result = LayerOutput(ops.tile(ops.expand_dims(vector, 0), [ctx.batch_size, 1]), None, len(names))
        result.extra["stats"] = stats
        return result

    def _source_target(self, ctx: Context) -> LayerOutput:
        spec = ctx.net.description[self.name[len(ctx.net.prefix):]]
        first = spec.sources[0]
        if not isinstance(first, LayerRef):
            raise self.error("its source must be a layer (with a target), or give the target as second source")
        term = next((t for t in ctx.net.root.loss_terms if t.layer == first.name), None)
        key = term.target if term is not None else ctx.net.description[first.name].opts.get("target", "classes")
        if key and key.startswith("layer:"):
            return ctx.get(key[len("layer:"):], layer=self.name)
        return ctx.get(f"data:{key}", layer=self.name)

    def _accumulate(self, ctx: Context, name: str, value: Any, shape: tuple[int, ...]) -> Any:
        """The accumulator ``accumulated_<name>`` after adding ``value`` (only training steps add)."""
        var = self.param(f"accumulated_{name}", shape, 0.0, trainable=False)
        new = var + ctx.ops.stop_gradient(value)
        if ctx.train:
            ctx.ops.assign(var, new)
            return new
        return var * 1.0
