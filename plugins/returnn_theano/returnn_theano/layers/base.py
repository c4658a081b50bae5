"""What every Theano-backend layer builds on: its output, the parameter store and the build context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.network import COMMON_OPTIONS, LayerSpec, initial_value
from returnn_theano._pt import floatX, pt, pytensor


@dataclass
class LayerOutput:
    """A layer's symbolic output: ``value`` is (B, T, *feature) with a time axis, else (B, *feature).

    Sparse outputs are int32 class indices (B, T) with ``dim`` classes. ``logits`` is the pre-activation
    of a softmax/sigmoid output, kept so that losses can be computed stably.
    """

    value: Any
    seq_lens: Any | None
    dim: int | None
    sparse: bool = False
    logits: Any | None = None
    activation: str | None = None
    #: final state of a recurrent layer (``(h, c)`` for an LSTM)
    final_state: tuple[Any, ...] | None = None

    @property
    def has_time(self) -> bool:
        """Whether axis 1 is time."""
        return self.seq_lens is not None

    @property
    def feature_ndim(self) -> int:
        """Number of axes after batch (and time)."""
        return self.value.ndim - 1 - int(self.has_time)

    def dense(self) -> Any:
        """The value as float features (sparse indices become one-hot)."""
        if not self.sparse:
            return self.value
        return pt.eq(self.value[..., None], pt.arange(int(self.dim or 0))).astype(floatX)

    def mask(self) -> Any:
        """(B, T) float32, 1 where a frame is present."""
        if self.seq_lens is None:
            raise NetworkError("a layer output without time axis has no frame mask")
        time = pt.arange(self.value.shape[1])
        return pt.lt(time[None, :], self.seq_lens[:, None]).astype(floatX)


class ParamStore:
    """All parameters of a network as PyTensor shared variables named ``<layer>/<param>``."""

    def __init__(self, seed: int = 42) -> None:
        self.params: dict[str, Any] = {}
        self.trainable: dict[str, bool] = {}
        self.rng = np.random.RandomState(seed)

    def get(self, name: str, shape: tuple[int, ...], init: Any, *, trainable: bool = True) -> Any:
        """The shared variable ``name``, created with ``init`` on first request; a second request must agree on shape."""
        shape = tuple(int(s) for s in shape)
        existing = self.params.get(name)
        if existing is not None:
            old_shape = existing.get_value(borrow=True).shape
            if old_shape != shape:
                raise NetworkError(f"parameter {name!r} is shared with shape {old_shape}, but is asked for as {shape}")
            return existing
        value = initial_value(init, shape, self.rng, what=f"parameter {name!r}")
        var = pytensor.shared(value, name=name)
        self.params[name] = var
        self.trainable[name] = trainable
        return var

    def trainable_params(self) -> list[Any]:
        """The shared variables the optimizer updates, in creation order."""
        return [p for n, p in self.params.items() if self.trainable[n]]


class RandomSource:
    """One shared generator threaded through the random draws of a graph; :meth:`updates` advances it per call."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared
        self.current = shared

    def uniform(self, shape: Any) -> Any:
        """Uniform [0, 1) float32 of ``shape``."""
        self.current, x = self.current.uniform(0.0, 1.0, size=shape)
        return x.astype(floatX)

    def normal(self, std: float, shape: Any) -> Any:
        """Normal(0, ``std``) float32 of ``shape``."""
        self.current, x = self.current.normal(0.0, std, size=shape)
        return x.astype(floatX)

    def updates(self) -> list[tuple[Any, Any]]:
        """The update that moves the shared generator past this graph's draws."""
        return [] if self.current is self.shared else [(self.shared, self.current)]


@dataclass
class BuildContext:
    """What layers see while the graph is built: train or eval mode, inputs, built layers, parameters."""

    manager: Any
    params: ParamStore
    train: bool
    inputs: dict[str, LayerOutput]
    rand: RandomSource
    backend: str = "theano"
    outputs: dict[str, LayerOutput] = field(default_factory=dict)
    layers: dict[str, Layer] = field(default_factory=dict)
    #: extra updates a train step applies (running statistics of batch norm)
    updates: list[tuple[Any, Any]] = field(default_factory=list)
    #: layer name -> the parameters it uses (for its ``L2``)
    layer_params: dict[str, list[Any]] = field(default_factory=dict)


class Layer:
    """Base of the Theano-backend layers: checks options, creates parameters, builds the output."""

    #: options this class accepts besides :data:`returnn_core.network.COMMON_OPTIONS`
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, spec: LayerSpec, ctx: BuildContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.name = spec.name
        unknown = set(spec.opts) - COMMON_OPTIONS - self.options
        if unknown:
            raise NetworkError(
                f"layer {self.name!r} (class {spec.layer_class!r}): unknown option(s) {', '.join(sorted(unknown))}"
                f" for backend 'theano'; allowed: {', '.join(sorted(self.options | COMMON_OPTIONS))}"
            )

    def opt(self, key: str, default: Any = None) -> Any:
        """A layer option from the network dict."""
        return self.spec.opts.get(key, default)

    def error(self, msg: str) -> NetworkError:
        """A :class:`NetworkError` that names this layer."""
        return NetworkError(f"layer {self.name!r}: {msg}")

    def n_out(self) -> int:
        """``n_out``, or for a layer with a loss the target's dim (+1 blank for CTC)."""
        n_out = self.opt("n_out")
        if n_out is None and self.spec.target:
            target = self.ctx.inputs.get(self.spec.target)
            if target is not None and target.dim:
                n_out = int(target.dim) + (1 if self.spec.loss == "ctc" else 0)
        if not isinstance(n_out, int) or isinstance(n_out, bool) or n_out <= 0:
            raise self.error(f"needs a positive integer 'n_out', got {n_out!r}")
        return n_out

    def param(self, pname: str, shape: tuple[int, ...], init: Any, *, trainable: bool = True) -> Any:
        """Parameter ``<layer>/<pname>`` (``reuse_params`` takes another layer's)."""
        owner = self.opt("reuse_params") or self.name
        if not isinstance(owner, str):
            raise self.error(f"reuse_params must name a layer, got {owner!r}")
        trainable = trainable and bool(self.opt("trainable", True))
        var = self.ctx.params.get(f"{owner}/{pname}", shape, init, trainable=trainable)
        self.ctx.layer_params.setdefault(self.name, []).append(var)
        return var

    def dropout(self, x: Any, rate: float | None) -> Any:
        """Inverted dropout in train mode; identity otherwise."""
        if not rate or not self.ctx.train:
            return x
        keep = 1.0 - float(rate)
        if not 0.0 < keep <= 1.0:
            raise self.error(f"dropout must be in [0, 1), got {rate}")
        noise = pt.lt(self.ctx.rand.uniform(x.shape), keep).astype(floatX)
        return x * noise / np.float32(keep)

    def concat_sources(self, sources: list[LayerOutput], *, allow_sparse: bool = False) -> LayerOutput:
        """The sources concatenated on the feature axis (after input ``dropout`` if set)."""
        if not sources:
            raise self.error("needs at least one source ('from')")
        if len(sources) == 1 and sources[0].sparse and allow_sparse:
            return sources[0]
        has_time = {s.has_time for s in sources}
        if len(has_time) > 1:
            raise self.error("cannot concatenate sources with and without a time axis")
        out = sources[0]
        value = out.dense() if len(sources) == 1 else pt.concatenate([s.dense() for s in sources], axis=-1)
        value = self.dropout(value, self.opt("dropout"))
        dim = sum(int(s.dim or 0) for s in sources)
        return LayerOutput(value, out.seq_lens, dim)

    def build(self, sources: list[LayerOutput]) -> LayerOutput:
        """The output of this layer from its sources' outputs."""
        raise NotImplementedError
