"""The recurrent transforms of RETURNN's Theano ``rec`` layer (RecurrentTransform): ``attention_list`` (attention
over the ``base`` layers, added to the LSTM's gate input every step) and the LM feedback of ``lm``/``attention_lm``
(the previous label's embedding), written on :class:`Ops` for one decoder step.

Each transform creates its parameters once per graph (:meth:`setup`, outside the loop), hands the loop its tensors
as a dict and adds its part to the unit's input ``z_t`` from the previous output ``y_p`` (:meth:`step`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput

if TYPE_CHECKING:
    from returnn_core.frontend._layer import Layer

_FLOOR = np.float32(1e-20)
_BIG = np.float32(1e30)

#: the distances between the templates of the base frames C (B, T, n) and the query H (B, 1, n) -> (B, T)
DISTANCES = {
    "l2": lambda ops, c, h: _sqrt(ops, ops.reduce(ops.square(c - h), "sum", -1)),
    "sqr": lambda ops, c, h: ops.reduce(ops.square(c - h), "mean", -1),
    "l1": lambda ops, c, h: ops.reduce(ops.abs(c - h), "sum", -1),
    "dot": lambda ops, c, h: ops.reduce(c * h, "sum", -1),
    "cos": lambda ops, c, h: ops.reduce(_unit_norm(ops, c) * _unit_norm(ops, h), "sum", -1),
    "logl2": lambda ops, c, h: _sqrt(ops, ops.reduce(ops.square(_half_log(ops, c) - _half_log(ops, h)), "sum", -1)),
}
NORMS = ("exp", "sigmoid", "linear")

#: attention options whose non-default values this implementation does not cover: option -> (default, why)
_UNSUPPORTED = {
    "attention_beam": (0, "a beam of base frames around a moving focus"),
    "attention_momentum": ("none", "conv1d/conv2d/mono momentum over the previous weights"),
    "attention_smooth": (False, "the smoothness penalty on the weights"),
    "attention_memory": (0, "the write memory"),
    "attention_loss": (0, "the attention loss against a given alignment"),
    "attention_bn": (0, "batch norm of the base templates"),
    "attention_accumulator": ("sum", "the 'rnn' accumulator"),
    "attention_align": (False, "DTW alignment of the weights"),
}


def _sqrt(ops: Ops, x: Any) -> Any:
    # floored: a template equal to the query (zero padding frames against a zero state) would give an infinite
    # gradient, and a NaN once the softmax's zero weight of that frame multiplies it
    return ops.sqrt(ops.maximum(x, _FLOOR))


def _unit_norm(ops: Ops, x: Any) -> Any:
    return x / (ops.sqrt(ops.reduce(ops.square(x), "sum", -1, keepdims=True)) + np.float32(1e-5))


def _half_log(ops: Ops, x: Any) -> Any:
    return ops.log((x + np.float32(1.0)) / np.float32(2.0))


class AttentionList:
    """RecurrentTransform.AttentionList: per base layer i, templates ``C_i = tanh(B_i W_att_bs_i + b_att_bs_i)``
    minus their mean over the seq's frames (``C_i = B_i`` if the base dim is ``attention_template``), a query
    ``H = tanh(y_p W_att_re_i + b_att_re_i)`` (``y_p`` itself if ``n_out`` is the template size), weights from
    ``attention_distance`` (l2, sqr, l1, dot, cos, logl2) scaled by ``attention_sharpening`` and normalised by
    ``attention_norm`` (exp: softmax of minus the distance; sigmoid: ``1 - tanh(d)^2``; linear:
    ``1 - d / sum(d)``), ``attention_glimpse`` rounds (each adds the previous round's weighted templates to the
    query), then ``z += (sum_t w_t B_i,t) W_att_in_i + b_att_in_i`` (``attention_nbest`` 1: the best frame).

    Weights cover each seq's present frames only; RETURNN's exp and linear norms also gave the padded frames of
    the batch weight. The glimpses are kept per base (RETURNN's shared one list across all bases).
    """

    def __init__(self, layer: Layer, opts: Mapping[str, Any], bases: list[LayerOutput], n_out: int,
                 z_dim: int) -> None:
        self.layer, self.bases, self.n_out, self.z_dim = layer, bases, n_out, z_dim
        for key, (default, what) in _UNSUPPORTED.items():
            if opts.get(key, default) not in (default, None, 0, False):
                raise layer.error(f"{key}={opts[key]!r} ({what}) is not supported; leave it at {default!r}")
        self.template = _positive_int(layer, opts, "attention_template", 128)
        self.glimpse = max(_positive_int(layer, opts, "attention_glimpse", 1, allow_zero=True), 1)
        self.distance = opts.get("attention_distance", "l2")
        if self.distance not in DISTANCES:
            raise layer.error(f"attention_distance {self.distance!r} is not supported; use one of "
                              f"{', '.join(DISTANCES)}")
        self.norm = opts.get("attention_norm", "exp")
        if self.norm not in NORMS:
            raise layer.error(f"attention_norm {self.norm!r} is not supported; use one of {', '.join(NORMS)}")
        self.nbest = _positive_int(layer, opts, "attention_nbest", 0, allow_zero=True)
        if self.nbest > 1:
            raise layer.error(f"attention_nbest={self.nbest} (keep the n best frames) is not supported; use 0 (all "
                              "frames) or 1 (the best frame)")
        self.sharpening = np.float32(layer.float_opt("attention_sharpening", 1.0))

    def setup(self, ops: Ops) -> dict[str, Any]:
        """The parameters and the per-seq tensors the loop needs: ``B_i``, ``C_i``, ``I_i`` and the weights."""
        layer, n_tmp = self.layer, self.template
        tensors: dict[str, Any] = {}
        for i, base in enumerate(self.bases):
            dim = int(base.dim or 0)
            mask = base.mask()
            tensors[f"B_{i}"] = base.tensor
            tensors[f"I_{i}"] = mask
            w_re = layer.param(f"W_att_re_{i}", (self.n_out, n_tmp), "glorot_uniform")
            b_re = layer.param(f"b_att_re_{i}", (n_tmp,), "zeros")
            if n_tmp != self.n_out:  # RETURNN creates them either way and uses the output itself as the query then
                tensors[f"W_att_re_{i}"], tensors[f"b_att_re_{i}"] = w_re, b_re
            if dim == n_tmp:
                tensors[f"C_{i}"] = base.tensor
            else:
                h = ops.tanh(ops.dot(base.tensor, layer.param(f"W_att_bs_{i}", (dim, n_tmp), "glorot_uniform"))
                             + layer.param(f"b_att_bs_{i}", (n_tmp,), "zeros"))
                m = ops.expand_dims(mask, -1)
                mean = ops.reduce(h * m, "sum", 1, keepdims=True) / ops.maximum(
                    ops.reduce(m, "sum", 1, keepdims=True), np.float32(1.0))
                tensors[f"C_{i}"] = h - mean
            tensors[f"W_att_in_{i}"] = layer.param(f"W_att_in_{i}", (dim, self.z_dim), "glorot_uniform")
            tensors[f"b_att_in_{i}"] = layer.param(f"b_att_in_{i}", (self.z_dim,), "zeros")
        return tensors

    def weights(self, ops: Ops, c: Any, query: Any, mask: Any) -> Any:
        """The attention weights (B, T) of the templates ``c`` (B, T, n) for ``query`` (B, n)."""
        dist = DISTANCES[self.distance](ops, c, ops.expand_dims(query, 1)) * self.sharpening
        if self.norm == "exp":
            return ops.softmax(-dist + (mask - np.float32(1.0)) * _BIG, axis=-1) * mask
        if self.norm == "sigmoid":
            return (np.float32(1.0) - ops.square(ops.tanh(dist))) * mask
        dist = dist * mask
        return (np.float32(1.0) - dist / ops.maximum(ops.reduce(dist, "sum", -1, keepdims=True), _FLOOR)) * mask

    def step(self, ops: Ops, y_p: Any, t: Mapping[str, Any]) -> Any:
        """The attention's part of the gate input ``z_t`` (B, z_dim) for the previous output ``y_p`` (B, n_out)."""
        out = None
        for i in range(len(self.bases)):
            c, mask = t[f"C_{i}"], t[f"I_{i}"]
            query = ops.dot(y_p, t[f"W_att_re_{i}"]) + t[f"b_att_re_{i}"] if f"W_att_re_{i}" in t else y_p
            glimpse = None
            for _ in range(self.glimpse):
                w = self.weights(ops, c, ops.tanh(query if glimpse is None else query + glimpse), mask)
                glimpse = ops.reduce(c * ops.expand_dims(w, -1), "sum", 1)
            if self.nbest == 1:
                best = ops.cast(ops.equal(w, ops.reduce(w, "max", -1, keepdims=True)), "float32") * mask
                w = ops.stop_gradient(best / ops.maximum(ops.reduce(best, "sum", -1, keepdims=True), _FLOOR))
            context = ops.reduce(t[f"B_{i}"] * ops.expand_dims(w, -1), "sum", 1)
            part = ops.dot(context, t[f"W_att_in_{i}"]) + t[f"b_att_in_{i}"]
            out = part if out is None else out + part
        return out


class LmFeedback:
    """The Theano ``rec`` layer's LM (``lm``, ``attention_lm``, RecurrentTransform.LM): each step adds a label
    embedding (rows of ``W_lm_out`` (classes, z_dim)) to the gate input: the previous target label's (class 0
    before the first label) where the target is fed (training, or ``force_lm``), chosen per frame with probability
    ``1 - droplm``; otherwise the model's own prediction ``p = softmax(y_p W_lm_in + b_lm_in)``, as ``p W_lm_out``
    or, for ``attention_lm`` "hard", the row of its best label.

    ``W_lm_in`` and ``b_lm_in`` exist whatever ``droplm`` is (RETURNN skipped them while training with
    ``droplm`` 0, so its train and eval networks differed); the target is always the previous label, also with
    ``droplm`` 0 (where RETURNN's shortcut added the current one).
    """

    def __init__(self, layer: Layer, opts: Mapping[str, Any], n_out: int, z_dim: int, n_classes: int) -> None:
        self.layer, self.n_out, self.z_dim, self.n_classes = layer, n_out, z_dim, n_classes
        self.droplm = layer.float_opt("droplm", 1.0)
        if not 0.0 <= self.droplm <= 1.0:
            raise layer.error(f"droplm must be in [0, 1], got {self.droplm}")
        self.force = bool(opts.get("force_lm", False))
        self.hard = opts.get("attention_lm", "none") == "hard"

    def setup(self, ops: Ops, target: LayerOutput | None, train: bool, direction: int, seq_lens: Any,
              ) -> tuple[dict[str, Any], list[Any]]:
        """The parameters (non-sequences) and the per-frame sequences: the fed labels' embeddings (B, T, z_dim)
        and the (B, T, 1) choice of the fed label, or none where only predictions are fed."""
        layer = self.layer
        tensors = {"W_lm_in": layer.param("W_lm_in", (self.n_out, self.n_classes), "glorot_uniform"),
                   "b_lm_in": layer.param("b_lm_in", (self.n_classes,), "zeros"),
                   "W_lm_out": layer.param("W_lm_out", (self.n_classes, self.z_dim), "glorot_uniform")}
        if not (train or self.force) or self.droplm >= 1.0:
            return tensors, []
        if target is None or not target.sparse or not target.has_time:
            raise layer.error("lm needs 'target', sparse labels with a time axis (the previous label is fed back)")
        labels = target.tensor
        if direction == -1:
            labels = ops.reverse_sequence(labels, seq_lens)
        emb = ops.gather(tensors["W_lm_out"], labels)
        first = ops.expand_dims(ops.zeros([ops.dynamic_dim(emb, 0), self.z_dim]) + tensors["W_lm_out"][0], 1)
        fed = ops.concat([first, emb[:, :-1]], axis=1)
        if direction == -1:
            fed = ops.reverse_sequence(fed, seq_lens)
        shape = [ops.dynamic_dim(fed, 0), ops.dynamic_dim(fed, 1), 1]
        choice = ops.fill(shape, 1.0) if self.droplm <= 0.0 else ops.cast(
            ops.less(ops.random_uniform(shape), np.float32(1.0 - self.droplm)), "float32")
        return tensors, [fed, choice]

    def step(self, ops: Ops, y_p: Any, t: Mapping[str, Any], frames: list[Any]) -> Any:
        """The embedding for this step (B, z_dim): ``frames`` are this step's fed embedding and choice, if any."""
        if frames and self.droplm <= 0.0:
            return frames[0]
        probs = ops.softmax(ops.dot(y_p, t["W_lm_in"]) + t["b_lm_in"], axis=-1)
        if self.hard:
            predicted = ops.gather(t["W_lm_out"], ops.argmax(probs, -1))
        else:
            predicted = ops.matmul(probs, t["W_lm_out"])
        if not frames:
            return predicted
        fed, choice = frames
        return fed * choice + predicted * (np.float32(1.0) - choice)


def _positive_int(layer: Layer, opts: Mapping[str, Any], key: str, default: int, *, allow_zero: bool = False) -> int:
    value = opts.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise layer.error(f"{key} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
    return value
