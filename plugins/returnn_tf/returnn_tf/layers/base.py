"""The TF layer base class: option checking, parameters, dropout, activation and ``n_out`` checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_core.network import COMMON_OPTIONS
from returnn_tf.activations import get_activation
from returnn_tf.data import LayerOutput

if TYPE_CHECKING:
    from returnn_tf.network import TFNetwork


@dataclass
class Context:
    """What a layer sees while it is computed: the mode and the outputs built so far."""

    train: bool
    net: TFNetwork
    outputs: dict[str, LayerOutput] = field(default_factory=dict)
    #: batch size as a scalar tensor
    batch_size: tf.Tensor | None = None

    def get(self, name: str, *, layer: str) -> LayerOutput:
        """The output of layer ``name`` (built earlier), for options that name layers."""
        if name not in self.outputs:
            raise NetworkError(f"layer {layer!r}: refers to layer {name!r}, which is not built before it")
        return self.outputs[name]


class Layer:
    """One layer of the network dict; subclasses implement :meth:`call` in plain TF ops.

    Parameters are created through :meth:`param` on the first (eager) pass and reused in every traced step.
    """

    #: options this class accepts besides the common ones
    options: ClassVar[frozenset[str]] = frozenset()
    #: activation when the config gives none
    default_activation: ClassVar[str | None] = None
    #: whether :meth:`call` applies ``activation`` itself (and sets ``logits``)
    handles_activation: ClassVar[bool] = False
    #: whether dropout applies to the inputs (layers like ``dropout`` handle it themselves)
    dropout_on_input: ClassVar[bool] = True

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: TFNetwork) -> None:
        self.name = name
        self.layer_class = layer_class
        self.opts = dict(opts)
        self.net = net
        unknown = sorted(set(self.opts) - COMMON_OPTIONS - self.options - {"is_output_layer"})
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "(none besides the common ones)"
            raise NetworkError(
                f"layer {name!r} (class {layer_class!r}): unknown option(s) {', '.join(unknown)}; "
                f"its own options: {allowed}"
            )
        self.activation_name = self.opts.get("activation", self.default_activation)
        self.activation = get_activation(self.activation_name, layer=name)
        self.dropout = float(self.opts.get("dropout", 0.0) or 0.0)
        if not 0.0 <= self.dropout < 1.0:
            raise NetworkError(f"layer {name!r}: dropout must be in [0, 1), got {self.dropout}")
        self.trainable = bool(self.opts.get("trainable", True))
        self.l2 = float(self.opts.get("L2", 0.0) or 0.0)
        reuse = self.opts.get("reuse_params")
        if isinstance(reuse, Mapping):
            reuse = reuse.get("layer") or reuse.get("reuse_layer")
        if reuse is not None and not isinstance(reuse, str):
            raise NetworkError(f"layer {name!r}: reuse_params must name a layer, got {reuse!r}")
        self.param_owner = self._owner_name(reuse) if reuse else name
        self.n_out = self.opts.get("n_out")

    def _owner_name(self, reuse: str) -> str:
        prefix = self.name.rpartition("/")[0]
        return f"{prefix}/{reuse}" if prefix and not reuse.startswith("base:") else reuse.replace("base:", "")

    # -- parameters -----------------------------------------------------------------------------------------
    def param(self, name: str, shape: tuple[int, ...], init: Any, *, trainable: bool | None = None) -> tf.Variable:
        """The variable ``<layer>/<name>`` (shared with the ``reuse_params`` layer), created on first use."""
        return self.net.param(
            self.param_owner, name, tuple(int(d) for d in shape), init,
            trainable=self.trainable if trainable is None else trainable, l2=self.l2, layer=self.name,
        )

    # -- computation ----------------------------------------------------------------------------------------
    def __call__(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        if self.dropout and self.dropout_on_input and ctx.train:
            sources = [s if s.sparse else s.with_tensor(tf.nn.dropout(s.tensor, rate=self.dropout),
                                                        dim=s.dim, seq_lens=s.seq_lens) for s in sources]
        out = self.call(sources, ctx)
        if self.activation is not None and not self.handles_activation:
            if out.sparse:
                raise NetworkError(f"layer {self.name!r}: activation {self.activation_name!r} on a sparse output")
            out = out.with_tensor(self.activation(out.tensor), dim=out.dim, logits=out.tensor,
                                  activation=self.activation_name, final_state=out.final_state)
        if self.n_out is not None and out.dim is not None and int(self.n_out) != int(out.dim):
            raise NetworkError(
                f"layer {self.name!r} (class {self.layer_class!r}): n_out is {self.n_out} but its output dim is {out.dim}"
            )
        return out

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Compute the output from the (dropped-out) sources."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------------------------
    def require_n_out(self) -> int:
        """``n_out``, which this layer needs."""
        if self.n_out is None:
            raise NetworkError(f"layer {self.name!r} (class {self.layer_class!r}) needs 'n_out'")
        return int(self.n_out)

    def single_source(self, sources: list[LayerOutput]) -> LayerOutput:
        """The sources concatenated on the feature axis (one source is returned as it is)."""
        if not sources:
            raise NetworkError(f"layer {self.name!r} (class {self.layer_class!r}) needs at least one source")
        if len(sources) == 1:
            return sources[0]
        return concat_features(sources, layer=self.name)

    def feature_dim(self, src: LayerOutput) -> int:
        """Static feature dim of a source."""
        if src.dim is None:
            raise NetworkError(f"layer {self.name!r}: the feature dim of its input is unknown")
        return int(src.dim)


def concat_features(sources: list[LayerOutput], *, layer: str) -> LayerOutput:
    """Concatenate sources on the feature axis (sparse ones as one-hot); they must share time and rank."""
    tensors = [s.dense() for s in sources]
    ranks = {t.shape.rank for t in tensors}
    has_time = {s.has_time for s in sources}
    if len(ranks) != 1 or len(has_time) != 1:
        desc = ", ".join(f"rank {t.shape.rank}{' with time' if s.has_time else ''}" for s, t in zip(sources, tensors))
        raise NetworkError(f"layer {layer!r}: cannot concatenate sources of different shapes ({desc})")
    dims = [t.shape[-1] for t in tensors]
    out = tf.concat(tensors, axis=-1)
    dim = sum(int(d) for d in dims) if all(d is not None for d in dims) else None
    return LayerOutput(out, sources[0].seq_lens, dim)
