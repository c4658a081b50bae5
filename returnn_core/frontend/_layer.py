"""The layer base class every backend runs: option checking, parameters, dropout, activation, ``n_out`` checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from returnn_core.errors import NetworkError
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import LOGIT_ACTIVATIONS, get_activation
from returnn_core.frontend.batch_norm import batch_norm
from returnn_core.network import COMMON_OPTIONS

if TYPE_CHECKING:
    from returnn_core.frontend._network import Network

#: a value's static shape after the batch axis (one frame inside a loop: no time axis), None for an unknown size
FrameShape = tuple[int | None, ...]


@dataclass
class Context:
    """What a layer sees while it is computed: the backend's ops, the mode and the outputs built so far."""

    ops: Ops
    train: bool
    net: Network
    outputs: dict[str, LayerOutput] = field(default_factory=dict)
    #: batch size as a scalar int tensor
    batch_size: Any = None

    def get(self, name: str, *, layer: str) -> LayerOutput:
        """The output of layer ``name`` (built earlier), for options that name layers; ``data``/``data:KEY`` are
        the extern data."""
        if name not in self.outputs and (name == "data" or name.startswith("data:")):
            return self.net.data_output(name[5:] or "data", layer=layer)
        if name not in self.outputs:
            raise NetworkError(f"layer {layer!r}: refers to layer {name!r}, which is not built before it")
        return self.outputs[name]


class Layer:
    """One layer of the network dict; subclasses implement :meth:`call` with ``ctx.ops``.

    Constructed once per network as ``cls(name, layer_class, opts, net)``; :meth:`__call__` runs once per graph
    (TF: on the build pass and in every traced step; theano: once per compiled function). Parameters come from
    :meth:`param`, created on first use and shared by name afterwards.
    """

    #: options this class accepts besides the common ones (:data:`returnn_core.network.COMMON_OPTIONS`)
    options: ClassVar[frozenset[str]] = frozenset()
    #: activation when the config gives none
    default_activation: ClassVar[str | None] = None
    #: whether :meth:`call` applies ``activation`` itself (and sets ``logits``)
    handles_activation: ClassVar[bool] = False
    #: whether ``dropout`` applies to the inputs (layers like ``dropout`` handle it themselves)
    dropout_on_input: ClassVar[bool] = True
    #: RETURNN's ``recurrent``: whether the order of frames and the seq boundaries matter. A network of layers that
    #: all say False gets RETURNN's non-recurrent batches (frames of several seqs joined). Unlike RETURNN the
    #: default is True: a layer that does not say keeps its seqs apart, which is never wrong, only slower.
    recurrent: ClassVar[bool] = True

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        self.name = name
        self.layer_class = layer_class
        self.opts = dict(opts)
        self.net = net
        unknown = sorted(set(self.opts) - COMMON_OPTIONS - self.options - {"is_output_layer", "batch_norm"})
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "(none besides the common ones)"
            raise NetworkError(
                f"layer {name!r} (class {layer_class!r}): unknown option(s) {', '.join(unknown)}; "
                f"its own options: {allowed}"
            )
        self.activation_name = self.opts.get("activation", self.default_activation)
        self.activation = get_activation(self.activation_name, layer=name)
        self.dropout = self.float_opt("dropout", 0.0)
        if not 0.0 <= self.dropout < 1.0:
            raise NetworkError(f"layer {name!r}: dropout must be in [0, 1), got {self.dropout}")
        self.trainable = bool(self.opts.get("trainable", True))
        self.batch_norm = self.opts.get("batch_norm", False)
        if not isinstance(self.batch_norm, (bool, Mapping)):
            raise NetworkError(f"layer {name!r}: batch_norm must be True/False or a dict of its options "
                               f"(momentum, epsilon, ...), got {self.batch_norm!r}")
        self.l2 = self.float_opt("L2", 0.0)
        reuse = self.opts.get("reuse_params")
        if isinstance(reuse, Mapping):
            reuse = reuse.get("layer") or reuse.get("reuse_layer")
        if reuse is not None and not isinstance(reuse, str):
            raise NetworkError(f"layer {name!r}: reuse_params must name a layer, got {reuse!r}")
        self.param_owner = self._owner_name(reuse) if reuse else name
        n_out = self.opts.get("n_out")
        if n_out is not None and (isinstance(n_out, bool) or not isinstance(n_out, int) or n_out <= 0):
            raise NetworkError(f"layer {name!r} (class {layer_class!r}): n_out must be a positive integer, "
                               f"got {n_out!r}")
        self.n_out: int | None = n_out

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """The output's frame shape before the layer runs (RETURNN's ``get_out_data_from_opts``), from its options
        and its dense sources' frame shapes (None: unknown); ``layer_shape`` gives that of a layer an option names.

        None where it cannot tell. Here: ``(n_out,)``, else ``out_type``'s ``shape``; classes whose output
        follows from their sources say so by overriding this.
        """
        n_out = opts.get("n_out")
        if isinstance(n_out, int) and not isinstance(n_out, bool):
            return (n_out,)
        out_type = opts.get("out_type")
        shape = out_type.get("shape") if isinstance(out_type, Mapping) else None
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[-1], int):
            return tuple(d if isinstance(d, int) else None for d in shape)
        dim = out_type.get("dim") if isinstance(out_type, Mapping) else None
        if shape is None and isinstance(dim, int) and not isinstance(dim, bool) and not out_type.get("sparse"):
            return (dim,)  # RETURNN: a dense out_type of only a dim is one frame of that many features
        return None

    def _owner_name(self, reuse: str) -> str:
        prefix = self.name.rpartition("/")[0]
        return f"{prefix}/{reuse}" if prefix and not reuse.startswith("base:") else reuse.replace("base:", "")

    def float_opt(self, key: str, default: float) -> float:
        """A numeric option as float; a clear error naming the layer if it is not a number."""
        value = self.opts.get(key, default)
        if value is None:
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise NetworkError(f"layer {self.name!r}: option {key!r} must be a number, got {value!r}") from None

    def error(self, msg: str) -> NetworkError:
        """A :class:`NetworkError` naming this layer and its class."""
        return NetworkError(f"layer {self.name!r} (class {self.layer_class!r}): {msg}")

    # -- parameters -----------------------------------------------------------------------------------------
    def param(self, name: str, shape: tuple[int, ...], init: Any, *, trainable: bool | None = None) -> Any:
        """The variable ``<layer>/<name>`` (shared with the ``reuse_params`` layer), created on first use.

        ``init`` is an initializer name (``glorot_uniform``, ``zeros``, ``uniform:0.1``, ...) or a number.
        Layers with ``L2`` add ``L2 * sum(param**2)`` for their trainable parameters to the objective.
        """
        return self.net.param(
            self.param_owner, name, tuple(int(d) for d in shape), init,
            trainable=self.trainable if trainable is None else trainable, l2=self.l2, layer=self.name,
        )

    # -- computation ----------------------------------------------------------------------------------------
    def __call__(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        if self.dropout and self.dropout_on_input and ctx.train:
            sources = [s if s.sparse else s.with_tensor(ctx.ops.dropout(s.tensor, self.dropout), dim=s.dim,
                                                        seq_lens=s.seq_lens) for s in sources]
        out = self.call(sources, ctx)
        if self.activation is not None and not self.handles_activation:
            out = self.activate(out, ctx.ops)
        if self.n_out is not None and out.dim is not None and int(self.n_out) != int(out.dim):
            raise self.error(f"n_out is {self.n_out} but its output dim is {out.dim}")
        if self.batch_norm:
            # RETURNN normalises the final output; its params are named after the layer and its output
            local = self.name.rpartition("/")[2]
            out = batch_norm(self, out, ctx, self.batch_norm if isinstance(self.batch_norm, Mapping) else {},
                             param_prefix=f"batch_norm/{local}_{local}_output_")
        return out

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Compute the output from the (dropped-out) sources."""
        raise NotImplementedError

    def activate(self, out: LayerOutput, ops: Ops) -> LayerOutput:
        """``activation`` applied to ``out``, keeping the pre-activation as logits where a loss can use them."""
        if self.activation is None:
            return out
        if out.sparse:
            raise NetworkError(f"layer {self.name!r}: activation {self.activation_name!r} on a sparse output")
        logits = out.tensor if self.activation_name in LOGIT_ACTIVATIONS else None
        return out.with_tensor(self.activation(ops, out.tensor), dim=out.dim, logits=logits,
                               activation=self.activation_name, final_state=out.final_state)

    # -- helpers --------------------------------------------------------------------------------------------
    def require_n_out(self) -> int:
        """``n_out``, which this layer needs (set in the config or inferred from the loss target)."""
        if self.n_out is None:
            raise self.error("needs 'n_out'")
        return int(self.n_out)

    def single_source(self, sources: list[LayerOutput]) -> LayerOutput:
        """The sources concatenated on the feature axis (one source is returned as it is)."""
        if not sources:
            raise self.error("needs at least one source")
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
    ops = sources[0].ops
    ranks = [ops.ndim(t) for t in tensors]
    if len(set(ranks)) != 1 or len({s.has_time for s in sources}) != 1:
        desc = ", ".join(f"rank {r}{' with time' if s.has_time else ''}" for s, r in zip(sources, ranks))
        raise NetworkError(f"layer {layer!r}: cannot concatenate sources of different shapes ({desc})")
    dims = [s.dim for s in sources]
    dim = sum(int(d) for d in dims) if all(d is not None for d in dims) else None
    return LayerOutput(ops.concat(tensors, axis=-1), sources[0].seq_lens, dim)
