"""The ``network`` dict resolved once for every backend: sources, order, outputs, errors naming the layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from returnn_core.errors import NetworkError

#: options (besides ``from``) whose string value may name another layer that must be built first
LAYER_REF_OPTIONS = ("reuse_params", "initial_state", "chunking_layer", "size_base", "base", "base_ctx", "prefix",
                     "postfix", "copy_output", "copy_input", "encoder", "original_output")
#: options every layer accepts and the core interprets
COMMON_OPTIONS = frozenset(
    {"class", "from", "is_output_layer", "loss", "target", "loss_scale", "loss_opts", "n_out", "activation",
     "dropout", "L2", "trainable", "reuse_params", "with_bias", "forward_weights_init", "bias_init", "out_type",
     "register_as_extern_data"}
)


@dataclass(frozen=True)
class DataRef:
    """A source that is an extern data key (``"data"``, ``"data:classes"``)."""

    key: str
    #: the axis of a ``(source, axis)`` pair in ``from`` (only ``concat`` takes them)
    axis: str | int | None = None


@dataclass(frozen=True)
class LayerRef:
    """A source that is another layer."""

    name: str
    #: the axis of a ``(source, axis)`` pair in ``from`` (only ``concat`` takes them)
    axis: str | int | None = None


Source = DataRef | LayerRef


@dataclass
class LayerSpec:
    """One layer of the network dict with its sources resolved."""

    name: str
    layer_class: str
    sources: list[Source]
    opts: dict[str, Any]
    is_output: bool = False
    deps: list[str] = field(default_factory=list)

    @property
    def loss(self) -> str | None:
        """The loss name, if the layer has one."""
        loss = self.opts.get("loss")
        return loss if isinstance(loss, str) or loss is None else loss.get("class")

    @property
    def target(self) -> str | None:
        """The target data key of the loss (default ``classes``)."""
        return self.opts.get("target", "classes") if self.loss else self.opts.get("target")

    @property
    def n_out(self) -> int | None:
        """Declared output dim."""
        return self.opts.get("n_out")


@dataclass
class NetworkDescription:
    """All layers in build order; the output layers; the data keys they read."""

    layers: dict[str, LayerSpec]
    output_layers: list[str]
    data_keys: list[str]
    #: RETURNN's search flag (task search): ``choice`` layers run beam search instead of feeding the target
    search_flag: bool = False

    def __iter__(self):
        return iter(self.layers.values())

    def __getitem__(self, name: str) -> LayerSpec:
        return self.layers[name]

    @property
    def loss_layers(self) -> list[LayerSpec]:
        """Layers with a loss."""
        return [spec for spec in self.layers.values() if spec.loss]

    @property
    def registered_data(self) -> dict[str, str]:
        """Data key -> the layer whose output serves as it (``register_as_extern_data``, any layer class)."""
        return registered_data({name: spec.opts for name, spec in self.layers.items()})


def registered_data(layers: Mapping[str, Any]) -> dict[str, str]:
    """Data key -> the layer of ``layers`` (name -> options) that registers its output as it (RETURNN's
    ``register_as_extern_data``)."""
    return {layer["register_as_extern_data"]: name for name, layer in layers.items()
            if isinstance(layer, Mapping) and isinstance(layer.get("register_as_extern_data"), str)}


def resolve_layer_class(manager: Any, spec: LayerSpec, backend: str) -> Any:
    """The class registered for ``spec.layer_class`` on ``backend``; a failed lookup names the layer."""
    try:
        return manager.layers.get(spec.layer_class, backend=backend)
    except LookupError as exc:  # unknown name, or a failed/disabled plugin that provides it
        raise type(exc)(f"layer {spec.name!r}: {exc}") from exc


def _parse_source(layer: str, src: Any, layer_names: Iterable[str], data_keys: Iterable[str], default_input: str) -> Source:
    if isinstance(src, (tuple, list)) and len(src) == 2 and isinstance(src[0], str):
        return replace(_parse_source(layer, src[0], layer_names, data_keys, default_input), axis=src[1])
    if not isinstance(src, str):
        raise NetworkError(f"layer {layer!r}: 'from' entries must be strings, got {src!r}")
    if src == "data":
        return DataRef(default_input)
    if src.startswith("data:"):
        key = src[len("data:") :]
        if key not in data_keys:
            raise NetworkError(
                f"layer {layer!r}: 'from' names data key {key!r}, which is not in the data ({', '.join(sorted(data_keys))})"
            )
        return DataRef(key)
    if src not in layer_names:
        import difflib

        close = difflib.get_close_matches(src, list(layer_names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise NetworkError(f"layer {layer!r}: 'from' names layer {src!r}, which is not in the network{hint}")
    return LayerRef(src)


def resolve_network(
    net_dict: Mapping[str, Any],
    data_keys: Iterable[str],
    *,
    default_input: str = "data",
) -> NetworkDescription:
    """Check and order ``net_dict``: resolve ``from`` (default ``data``), find outputs, reject cycles."""
    if not isinstance(net_dict, Mapping) or not net_dict:
        raise NetworkError("the network must be a non-empty dict of layers")
    data_keys = list(data_keys)
    names = list(net_dict)
    # register_as_extern_data: a layer's output serves as that data key; layers whose target it is come after it
    registered = registered_data(net_dict)
    specs: dict[str, LayerSpec] = {}
    for name in names:
        layer = net_dict[name]
        if not isinstance(layer, Mapping):
            raise NetworkError(f"layer {name!r}: expected a dict, got {type(layer).__name__}")
        layer_class = layer.get("class")
        if not isinstance(layer_class, str):
            raise NetworkError(f"layer {name!r} has no 'class'")
        sources = [_parse_source(name, s, names, data_keys, default_input) for s in layer_sources(layer, net_dict)]
        if layer_class != "concat" and any(s.axis is not None for s in sources):
            raise NetworkError(f"layer {name!r}: (source, axis) pairs in 'from' are only for class 'concat'")
        opts = {k: v for k, v in layer.items() if k not in ("class", "from")}
        deps = [s.name for s in sources if isinstance(s, LayerRef)]
        for opt in LAYER_REF_OPTIONS:
            refs = opts.get(opt)
            # the Theano-era rec layer's base and encoder are lists of layer names
            for ref in refs if isinstance(refs, (list, tuple)) else [refs]:
                if isinstance(ref, str) and ref in net_dict and ref not in deps:
                    deps.append(ref)
        deps += [ref for ref in _base_refs(opts.get("subnetwork")) + _base_refs(opts.get("unit"))
                 if ref in net_dict and ref not in deps]
        deps += [registered[t] for t in _targets(opts) if t in registered and registered[t] not in (*deps, name)]
        is_output = bool(opts.get("is_output_layer")) or bool(opts.get("loss")) or name == "output"
        specs[name] = LayerSpec(name, layer_class, sources, opts, is_output, deps)
    order = _topological_order(specs)
    outputs = [n for n in order if specs[n].is_output]
    if not outputs:
        raise NetworkError("the network has no output layer (name one 'output', or set a loss or is_output_layer)")
    return NetworkDescription({n: specs[n] for n in order}, outputs, data_keys)


def layer_sources(layer: Mapping[str, Any], layer_names: Iterable[str] = ()) -> list[Any]:
    """A layer's ``from`` as a list: default ``["data"]``; none for None, or for RETURNN's Theano-era ``"null"``
    unless ``layer_names`` has a layer of that name."""
    src = layer.get("from", ["data"])
    if src is None or (src == "null" and "null" not in layer_names):
        return []
    return [src] if isinstance(src, str) else list(src)


def _targets(opts: Mapping[str, Any]) -> list[str]:
    """The data keys a layer names as ``target``/``size_target``, its own and those of its unit's layers."""
    found = [opts[k] for k in ("target", "size_target") if isinstance(opts.get(k), str)]
    for sub in (opts.get("unit"), opts.get("subnetwork")):
        if isinstance(sub, Mapping):
            for layer in sub.values():
                if isinstance(layer, Mapping):
                    found += _targets(layer)
    return found


def _base_refs(subnetwork: Any) -> list[str]:
    """Layers of the enclosing network that a ``subnetwork`` reads as ``base:NAME`` (at any depth)."""
    if not isinstance(subnetwork, Mapping):
        return []
    refs: list[str] = []
    for layer in subnetwork.values():
        if not isinstance(layer, Mapping):
            continue
        for key, value in layer.items():  # "from", and options naming layers (e.g. attention's "base")
            if key in ("class", "subnetwork", "unit"):
                continue
            for src in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(src, str) and src.startswith("base:"):
                    refs.append(src[len("base:") :])
        # a nested subnetwork's base: refers to this subnetwork, whose own base: refs bubble up here
        refs += [r[len("base:") :] for r in _base_refs(layer.get("subnetwork")) if r.startswith("base:")]
    return refs


def _topological_order(specs: Mapping[str, LayerSpec]) -> list[str]:
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    order: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise NetworkError(f"layer {name!r} depends on itself: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in specs[name].deps:
            visit(dep, path + [name])
        state[name] = 2
        order.append(name)

    for name in specs:
        visit(name, [])
    return order
