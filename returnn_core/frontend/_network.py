"""The network every backend runs: layer objects from the resolved dict, their parameters, outputs and losses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from returnn_core.datasets import DataSpec
from returnn_core.errors import NetworkError, ReturnnError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._loss import Loss, LossContext, make_loss
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.network import DataRef, LayerRef, NetworkDescription, initial_value, resolve_layer_class

#: ``LayerOutput.extra`` key where an output layer gives its loss the target to use instead of the data's (the
#: Theano era's ``copy_output``: targets resampled by a ``downsample`` layer)
LOSS_TARGET = "loss_target"


class VariableFactory(Protocol):
    """What a backend supplies to hold parameters."""

    def create(self, key: str, value: np.ndarray, *, trainable: bool) -> Any:
        """A new variable named ``key`` (``<layer>/<param>``) with initial ``value``."""
        ...

    def shape(self, variable: Any) -> tuple[int, ...]:
        """The static shape of ``variable``."""
        ...


@dataclass
class LossTerm:
    """One output layer's loss: what it sums and how it enters the objective."""

    layer: str
    loss: Any
    loss_name: str
    target: str | None
    scale: float


class Network:
    """Layers in build order; parameters by canonical name ``<layer>/<param>``; outputs per graph."""

    def __init__(
        self,
        description: NetworkDescription,
        extern_data: Mapping[str, DataSpec],
        *,
        manager: Any,
        log: Any,
        backend: str,
        variables: VariableFactory | None = None,
        seed: int = 42,
        parent: Network | None = None,
        prefix: str = "",
    ) -> None:
        self.description = description
        self.extern_data = dict(extern_data)
        self.manager = manager
        self.log = log
        self.backend = backend
        self.parent = parent
        self.prefix = prefix
        self.root: Network = parent.root if parent is not None else self
        if parent is None:
            if variables is None:
                raise NetworkError("a top-level network needs the backend's variable factory")
            self.variables = variables
            self.params: dict[str, Any] = {}
            self.param_l2: dict[str, float] = {}
            self.trainable: dict[str, bool] = {}
            self.rng = np.random.RandomState(seed)
            self.building = False
        self._data: dict[str, LayerOutput] = {}
        self.layers: dict[str, Layer] = {}
        for spec in description:
            cls = resolve_layer_class(manager, spec, backend)
            self.layers[spec.name] = cls(prefix + spec.name, spec.layer_class, spec.opts, self)
        self.loss_terms = self._make_loss_terms() if parent is None else []
        for term in self.loss_terms:
            layer = self.layers[term.layer]
            if layer.n_out is None and term.target in self.extern_data:
                # like RETURNN: an output layer without n_out gets the target's dim (CTC: plus the blank)
                dim = self.extern_data[term.target].dim
                layer.n_out = None if dim is None else dim + (1 if term.loss_name == "ctc" else 0)
        if parent is None:  # sub-layers of rec units with a loss count like outer layers
            for layer in self.layers.values():
                self.loss_terms.extend(getattr(layer, "inner_loss_terms", ()))

    def make_subnetwork(self, description: NetworkDescription, *, prefix: str) -> Network:
        """A nested network whose parameters live in this one's root under ``prefix``."""
        return Network(description, {}, manager=self.manager, log=self.log, backend=self.backend,
                       parent=self, prefix=prefix)

    # -- parameters -----------------------------------------------------------------------------------------
    def param(self, owner: str, name: str, shape: tuple[int, ...], init: Any, *, trainable: bool, l2: float,
              layer: str) -> Any:
        """The variable ``<owner>/<name>``, created (only while building) with ``init``."""
        root = self.root
        key = f"{owner}/{name}"
        var = root.params.get(key)
        if var is not None:
            have = tuple(root.variables.shape(var))
            if have != shape:
                raise NetworkError(
                    f"layer {layer!r}: parameter {key!r} has shape {have} but is needed as {shape} "
                    "(dimension mismatch, e.g. through reuse_params)"
                )
            return var
        if not root.building:
            raise NetworkError(f"layer {layer!r}: parameter {key!r} is created after the network was built")
        value = initial_value(init, shape, root.rng, what=f"layer {layer!r} parameter {name!r}")
        var = root.variables.create(key, value, trainable=trainable)
        root.params[key] = var
        root.trainable[key] = trainable
        if l2 and trainable:
            root.param_l2[key] = l2
        return var

    def trainable_params(self) -> dict[str, Any]:
        """The parameters the optimizer updates, in creation order."""
        return {k: v for k, v in self.params.items() if self.trainable[k]}

    # -- data -----------------------------------------------------------------------------------------------
    def input_keys(self) -> list[str]:
        """Extern data keys the layers read (not counting loss targets)."""
        keys: list[str] = []
        for spec in self.description:
            for src in spec.sources:
                if isinstance(src, DataRef) and src.key in self.extern_data:
                    keys.append(src.key)
            if spec.layer_class == "source":
                keys.append(spec.opts.get("data_key", "data"))
            sub = spec.opts.get("subnetwork")
            if isinstance(sub, Mapping):
                keys.extend(_subnet_data_keys(sub))
        for layer in self.layers.values():  # data a layer reads through its options (e.g. a decoder's target)
            keys.extend(getattr(layer, "read_data_keys", ()))
        for key in keys:
            if key not in self.extern_data:
                raise NetworkError(f"the network reads data key {key!r}, which is not in the data "
                                   f"({', '.join(sorted(self.extern_data))})")
        return sorted(set(keys))

    def target_keys(self) -> list[str]:
        """Extern data keys the losses need."""
        return sorted({t.target for t in self.loss_terms if t.target and not t.target.startswith("layer:")})

    def data_output(self, key: str, *, layer: str) -> LayerOutput:
        """The extern data ``key`` of the current graph."""
        if key not in self._data:
            if self.parent is not None and key.startswith("base:"):
                return self.parent.data_output(key[len("base:"):], layer=layer)
            known = ", ".join(sorted(self._data)) or "(none)"
            raise NetworkError(f"layer {layer!r}: data key {key!r} is not available here (have: {known})")
        return self._data[key]

    def make_data(self, data: Mapping[str, Any], seq_lens: Mapping[str, Any]) -> dict[str, LayerOutput]:
        """Wrap the fed tensors (batch-major, with their seq lengths) as layer outputs."""
        out = {}
        for key, tensor in data.items():
            spec = self.extern_data[key]
            out[key] = LayerOutput(tensor, seq_lens[key], spec.dim, spec.sparse)
        return out

    # -- computation ----------------------------------------------------------------------------------------
    def compute(self, ops: Ops, data: Mapping[str, LayerOutput], *, train: bool, outer: Context | None = None,
                batch_size: Any = None) -> dict[str, LayerOutput]:
        """All layer outputs for one batch (``data`` by key; in a subnetwork, ``outer`` is the parent's context)."""
        self._data = dict(data)
        if batch_size is None:
            first = next(iter(data.values()), None)
            batch_size = ops.dynamic_dim(first.tensor, 0) if first is not None else outer.batch_size if outer else None
        ctx = Context(ops=ops, train=train, net=self, batch_size=batch_size)
        for spec in self.description:
            sources = []
            for src in spec.sources:
                if isinstance(src, LayerRef):
                    sources.append(ctx.outputs[src.name])
                else:
                    sources.append(self._source_data(src.key, outer, layer=self.prefix + spec.name))
            layer = self.layers[spec.name]
            if self.root.building:
                try:
                    ctx.outputs[spec.name] = layer(sources, ctx)
                except ReturnnError:
                    raise
                except (ValueError, TypeError, IndexError, *getattr(ops, "error_types", ())) as exc:
                    msg = str(getattr(exc, "message", exc)).strip().splitlines()
                    raise NetworkError(f"layer {layer.name!r} (class {spec.layer_class!r}): "
                                       f"{msg[0] if msg else type(exc).__name__}") from None
            else:
                ctx.outputs[spec.name] = layer(sources, ctx)
        return ctx.outputs

    def _source_data(self, key: str, outer: Context | None, *, layer: str) -> LayerOutput:
        if key.startswith("base:") and outer is not None:
            ref = key[len("base:"):]
            if ref == "data" or ref.startswith("data:"):
                return outer.net.data_output(ref[5:] or "data", layer=layer)
            return outer.get(ref, layer=layer)
        return self.data_output(key, layer=layer)

    def build(self, ops: Ops, data: Mapping[str, LayerOutput], *, train: bool = False) -> dict[str, LayerOutput]:
        """Compute once with parameter creation allowed (TF: an eager pass on a small batch; theano: the graph)."""
        self.building = True
        try:
            outputs = self.compute(ops, data, train=train)
        finally:
            self.building = False
        for term in self.loss_terms:
            self._check_loss_dims(term, outputs[term.layer])
        return outputs

    # -- losses ---------------------------------------------------------------------------------------------
    def _make_loss_terms(self) -> list[LossTerm]:
        terms = []
        # register_as_extern_data (on any layer of the whole network): its output serves as that data key (a target)
        registered = self.root.description.registered_data
        for spec in self.description.loss_layers:
            raw = spec.opts.get("loss")
            opts = dict(spec.opts.get("loss_opts") or {})
            if isinstance(raw, Mapping):
                opts.update({k: v for k, v in raw.items() if k != "class"})
            name = spec.loss
            loss = make_loss(self.manager.losses.get(name, backend=self.backend), name, opts, layer=spec.name)
            needs_target = getattr(loss, "needs_target", True)
            target = spec.opts.get("target", "classes") if needs_target else spec.opts.get("target")
            if target in registered:
                target = f"layer:{registered[target]}"
            if needs_target:
                if not target:
                    raise NetworkError(f"layer {spec.name!r}: loss {name!r} needs a 'target'")
                if not target.startswith("layer:") and target not in self.extern_data:
                    raise NetworkError(
                        f"layer {spec.name!r}: loss {name!r} needs target {target!r}, which is not in the data "
                        f"({', '.join(sorted(self.extern_data))}); set 'target' or extern_data"
                    )
            scale = float(spec.opts.get("loss_scale", 1.0))
            terms.append(LossTerm(spec.name, loss, name, target, scale))
        return terms

    def _check_loss_dims(self, term: LossTerm, out: LayerOutput) -> None:
        if not term.target or term.target.startswith("layer:"):
            return
        spec = self.extern_data[term.target]
        if not out.has_time and term.loss_name not in ("mse", "l1"):
            raise NetworkError(f"layer {term.layer!r}: loss {term.loss_name!r} needs an output with a time axis")
        want = out.dim
        if term.loss_name == "ctc":
            want = None if out.dim is None else out.dim - 1
        if spec.sparse and term.loss_name in ("ce", "generic_ce", "ctc") and want is not None and spec.dim != want:
            extra = " (CTC needs one more output class for the blank)" if term.loss_name == "ctc" else ""
            raise NetworkError(
                f"layer {term.layer!r}: output dim {out.dim} does not fit target {term.target!r} with "
                f"{spec.dim} classes{extra}; set n_out"
            )
        if not spec.sparse and spec.dim is not None and out.dim is not None and spec.dim != out.dim:
            raise NetworkError(
                f"layer {term.layer!r}: output dim {out.dim} does not match the dim {spec.dim} of target {term.target!r}"
            )

    def loss_values(self, ops: Ops, outputs: Mapping[str, LayerOutput], data: Mapping[str, LayerOutput],
                    seq_tags: Any = None) -> list[tuple[Any, Any | None, Any]]:
        """``(loss_sum, error_sum or None, frames)`` per loss term, in :attr:`loss_terms` order (float32 scalars)."""
        results = []
        for term in self.loss_terms:
            out = outputs[term.layer]
            target = None
            if term.target:
                target = outputs[term.target[6:]] if term.target.startswith("layer:") else data[term.target]
                target = out.extra.get(LOSS_TARGET, target)
            get = _layer_getter(outputs, term.layer)
            if isinstance(term.loss, Loss):
                ctx = LossContext(ops=ops, layer=term.layer, seq_tags=seq_tags, get_layer_output=get)
                loss_sum, error_sum, frames = term.loss(out, target, ctx)
            else:
                loss_sum, error_sum, frames = self._legacy_loss(ops, term, out, target, seq_tags, get)
            results.append((ops.cast(loss_sum, "float32"),
                            None if error_sum is None else ops.cast(error_sum, "float32"), ops.cast(frames, "float32")))
        return results

    @staticmethod
    def _legacy_loss(ops: Ops, term: LossTerm, out: LayerOutput, target: LayerOutput | None, seq_tags: Any,
                     get: Callable[[str], LayerOutput]) -> tuple[Any, Any, Any]:
        """The keyword protocol of TF losses written before :class:`Loss` existed (still accepted)."""
        mask = out.mask() if out.has_time else ops.ones_like(out.tensor[..., 0])
        seq_lens = out.seq_lens if out.has_time else ops.cast(ops.ones_like(out.tensor[:, 0]), "int32")
        return term.loss(
            logits=out.logits if out.logits is not None else out.tensor,
            output=out.tensor,
            target=target.tensor if target is not None else None,
            target_seq_lens=target.seq_lens if target is not None else None,
            output_mask=mask,
            output_seq_lens=seq_lens,
            seq_tags=seq_tags if getattr(term.loss, "needs_seq_tags", False) else None,
            target_dim=target.dim if target is not None else None,
            activation=out.activation,
            get_layer_output=lambda name: get(name).tensor,
        )

    def objective(self, ops: Ops, results: list[tuple[Any, Any | None, Any]], *, frames: list[Any] | None = None,
                  l2_scale: float = 1.0) -> Any:
        """Sum over loss terms of ``loss_scale * loss / frames``, plus the layers' ``L2`` terms."""
        frames = frames if frames is not None else [f for _, _, f in results]
        total = ops.constant(0.0)
        for term, (loss, _, _), n in zip(self.loss_terms, results, frames):
            total = total + np.float32(term.scale) * loss / ops.maximum(n, 1.0)
        for key, l2 in self.param_l2.items():
            total = total + np.float32(l2 * l2_scale) * ops.reduce(ops.square(self.params[key]), "sum")
        return total


def _layer_getter(outputs: Mapping[str, LayerOutput], layer: str) -> Callable[[str], LayerOutput]:
    def get(name: str) -> LayerOutput:
        if name not in outputs:
            raise NetworkError(f"layer {layer!r}: its loss refers to layer {name!r}, which is not in the network")
        return outputs[name]

    return get


def _subnet_data_keys(sub: Mapping[str, Any]) -> list[str]:
    keys = []
    for layer in sub.values():
        if not isinstance(layer, Mapping):
            continue
        raw = layer.get("from", ["data"])
        for src in [raw] if isinstance(raw, str) else raw:
            if isinstance(src, str) and src.startswith("base:data:"):
                keys.append(src[len("base:data:"):])
    return keys
