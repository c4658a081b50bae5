"""The TF network: layer objects from the resolved network dict, their parameters, outputs and loss terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.datasets import DataSpec
from returnn_core.errors import NetworkError, ReturnnError
from returnn_core.network import DataRef, LayerRef, NetworkDescription, initial_value, resolve_layer_class
from returnn_tf.data import LayerOutput
from returnn_tf.layers.base import Context, Layer

#: frames per seq of the dummy batch that creates the parameters
BUILD_FRAMES = 16


@dataclass
class LossTerm:
    """One output layer's loss: what it sums and how it enters the objective."""

    layer: str
    loss: Any
    loss_name: str
    target: str | None
    scale: float


class TFNetwork:
    """Layers in build order; parameters by canonical name ``<layer>/<param>``; outputs per step."""

    def __init__(
        self,
        description: NetworkDescription,
        extern_data: Mapping[str, DataSpec],
        *,
        manager: Any,
        log: Any,
        seed: int = 42,
        parent: TFNetwork | None = None,
        prefix: str = "",
    ) -> None:
        self.description = description
        self.extern_data = dict(extern_data)
        self.manager = manager
        self.log = log
        self.parent = parent
        self.prefix = prefix
        self.root: TFNetwork = parent.root if parent is not None else self
        if parent is None:
            self.params: dict[str, tf.Variable] = {}
            self.param_l2: dict[str, float] = {}
            self.rng = np.random.RandomState(seed)
            self.building = False
        self._data: dict[str, LayerOutput] = {}
        self.layers: dict[str, Layer] = {}
        for spec in description:
            cls = resolve_layer_class(manager, spec, "tf")
            self.layers[spec.name] = cls(prefix + spec.name, spec.layer_class, spec.opts, self)
        self.loss_terms = self._make_loss_terms() if parent is None else []
        for term in self.loss_terms:
            layer = self.layers[term.layer]
            if layer.n_out is None and term.target in self.extern_data:
                # like RETURNN: an output layer without n_out gets the target's dim (CTC: plus the blank)
                dim = self.extern_data[term.target].dim
                layer.n_out = None if dim is None else dim + (1 if term.loss_name == "ctc" else 0)

    # -- parameters -----------------------------------------------------------------------------------------
    def param(self, owner: str, name: str, shape: tuple[int, ...], init: Any, *, trainable: bool, l2: float,
              layer: str) -> tf.Variable:
        """The variable ``<owner>/<name>``, created (only while building) with ``init``."""
        root = self.root
        key = f"{owner}/{name}"
        var = root.params.get(key)
        if var is not None:
            if tuple(var.shape) != shape:
                raise NetworkError(
                    f"layer {layer!r}: parameter {key!r} has shape {tuple(var.shape)} but is needed as {shape} "
                    "(dimension mismatch, e.g. through reuse_params)"
                )
            return var
        if not root.building:
            raise NetworkError(f"layer {layer!r}: parameter {key!r} is created after the network was built")
        value = initial_value(init, shape, root.rng, what=f"layer {layer!r} parameter {name!r}")
        var = tf.Variable(value, trainable=trainable, name=key.replace("/", "__"))
        root.params[key] = var
        if l2:
            root.param_l2[key] = l2
        return var

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
        for key in keys:
            if key not in self.extern_data:
                raise NetworkError(f"the network reads data key {key!r}, which is not in the data "
                                   f"({', '.join(sorted(self.extern_data))})")
        return sorted(set(keys))

    def target_keys(self) -> list[str]:
        """Extern data keys the losses need."""
        return sorted({t.target for t in self.loss_terms if t.target and not t.target.startswith("layer:")})

    def data_output(self, key: str, *, layer: str) -> LayerOutput:
        """The extern data ``key`` of the current step."""
        if key not in self._data:
            if self.parent is not None and key.startswith("base:"):
                return self.parent.data_output(key[len("base:"):], layer=layer)
            known = ", ".join(sorted(self._data)) or "(none)"
            raise NetworkError(f"layer {layer!r}: data key {key!r} is not available here (have: {known})")
        return self._data[key]

    def make_data(self, data: Mapping[str, tf.Tensor], seq_lens: Mapping[str, tf.Tensor]) -> dict[str, LayerOutput]:
        """Wrap fed tensors as layer outputs."""
        out = {}
        for key, tensor in data.items():
            spec = self.extern_data[key]
            out[key] = LayerOutput(tensor, seq_lens[key], spec.dim, spec.sparse)
        return out

    # -- computation ----------------------------------------------------------------------------------------
    def compute(self, data: Mapping[str, LayerOutput], *, train: bool, outer: Context | None = None,
                batch_size: tf.Tensor | None = None) -> dict[str, LayerOutput]:
        """All layer outputs for one batch (``data`` by key; in a subnetwork, ``outer`` is the parent's context)."""
        self._data = dict(data)
        if batch_size is None:
            first = next(iter(data.values()), None)
            batch_size = tf.shape(first.tensor)[0] if first is not None else outer.batch_size if outer else None
        ctx = Context(train=train, net=self, batch_size=batch_size)
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
                except (tf.errors.OpError, ValueError, TypeError, IndexError) as exc:
                    msg = str(getattr(exc, "message", exc)).strip().splitlines()[0]
                    raise NetworkError(f"layer {layer.name!r} (class {spec.layer_class!r}): {msg}") from None
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

    def build(self, train_keys: list[str]) -> None:
        """Create every parameter by running the layers once eagerly on a small dummy batch."""
        rng = np.random.RandomState(0)
        data, lens = {}, {}
        for key in train_keys:
            spec = self.extern_data[key]
            if spec.sparse:
                data[key] = tf.constant(rng.randint(0, max(int(spec.dim or 1), 1), size=(2, BUILD_FRAMES)), tf.int32)
            else:
                data[key] = tf.constant(rng.uniform(-0.1, 0.1, size=(2, BUILD_FRAMES, int(spec.dim or 1))), tf.float32)
            lens[key] = tf.constant([BUILD_FRAMES, BUILD_FRAMES - 3], tf.int32)
        self.building = True
        try:
            outputs = self.compute(self.make_data(data, lens), train=False)
        finally:
            self.building = False
        for term in self.loss_terms:
            self._check_loss_dims(term, outputs[term.layer])

    # -- losses ---------------------------------------------------------------------------------------------
    def _make_loss_terms(self) -> list[LossTerm]:
        terms = []
        for spec in self.description.loss_layers:
            raw = spec.opts.get("loss")
            opts = dict(spec.opts.get("loss_opts") or {})
            if isinstance(raw, Mapping):
                opts.update({k: v for k, v in raw.items() if k != "class"})
            name = spec.loss
            cls = self.manager.losses.get(name, backend="tf")
            try:
                loss = cls(**opts)
            except TypeError as exc:
                raise NetworkError(f"layer {spec.name!r}: loss {name!r} rejects loss_opts {opts!r}: {exc}") from None
            target = spec.opts.get("target", "classes") if getattr(loss, "needs_target", True) else spec.opts.get("target")
            if getattr(loss, "needs_target", True):
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

    def loss_values(self, outputs: Mapping[str, LayerOutput], data: Mapping[str, LayerOutput],
                    seq_tags: tf.Tensor | None = None) -> list[tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]]:
        """``(loss_sum, error_sum or None, frames)`` per loss term, in :attr:`loss_terms` order."""
        results = []
        for term in self.loss_terms:
            out = outputs[term.layer]
            target = None
            if term.target:
                target = outputs[term.target[6:]] if term.target.startswith("layer:") else data[term.target]
            mask = out.mask() if out.has_time else tf.ones_like(out.tensor[..., 0])
            seq_lens = out.seq_lens if out.has_time else tf.ones_like(out.tensor[:, 0], tf.int32)
            loss_sum, error_sum, frames = term.loss(
                logits=out.logits if out.logits is not None else out.tensor,
                output=out.tensor,
                target=target.tensor if target is not None else None,
                target_seq_lens=target.seq_lens if target is not None else None,
                output_mask=mask,
                output_seq_lens=seq_lens,
                seq_tags=seq_tags if getattr(term.loss, "needs_seq_tags", False) else None,
                target_dim=target.dim if target is not None else None,
                activation=out.activation,
                get_layer_output=lambda name, _layer=term.layer: _layer_tensor(outputs, name, _layer),
            )
            results.append((tf.cast(loss_sum, tf.float32), None if error_sum is None else tf.cast(error_sum, tf.float32),
                            tf.cast(frames, tf.float32)))
        return results


def _layer_tensor(outputs: Mapping[str, LayerOutput], name: str, layer: str) -> tf.Tensor:
    if name not in outputs:
        raise NetworkError(f"layer {layer!r}: its loss refers to layer {name!r}, which is not in the network")
    return outputs[name].tensor


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
