"""RETURNN 2017's network description without a ``network`` key: ``hidden_size``, ``hidden_type``, ``activation``, ...

As RETURNN's ``LayerNetworkDescription``: one chain of hidden layers from the input (named ``hidden_0``, ... or
``hidden_name``), a softmax ``output`` layer on top. With ``bidirectional`` (default True) each recurrent hidden layer
runs twice, ``<name>_fw`` and ``<name>_bw`` (``reverse``, or ``direction`` -1), each chain from the input, and the
output reads both ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from returnn_core.errors import ConfigError

#: ``accepts(layer_class, option)``: whether that layer class takes that option
Accepts = Callable[[str, str], bool]


def registry_accepts(manager: Any, backend: str) -> Accepts:
    """``accepts`` from the layer classes registered for ``backend``; ``activation`` is False for the LSTM classes
    whose activations are fixed (RETURNN ignores the description's activation for them)."""
    from returnn_core.frontend.layers.theano_era.lstm_layers import Lstm2Layer

    def accepts(layer_class: str, option: str) -> bool:
        cls = manager.layers.get(layer_class, backend=backend)
        if option == "activation":
            return not (isinstance(cls, type) and issubclass(cls, Lstm2Layer) and cls.activation_slots == 0)
        return option in getattr(cls, "options", ())

    return accepts


def _per_layer(values: list[Any], n: int, fill: Any) -> list[Any]:
    return values + [fill] * (n - len(values))


def network_from_topology(config: Any, accepts: Accepts) -> dict[str, Any]:
    """The layer dict that RETURNN 2017 builds from ``hidden_size``/``hidden_type``/... (no ``network`` key)."""
    sizes = config.int_list("hidden_size")
    if not sizes:
        raise ConfigError("the config has no 'network' and no 'hidden_size'; set network = {...} or, in the 2017 "
                          "style, hidden_size (e.g. 500,500) with hidden_type and activation")
    n = len(sizes)
    types = config.list("hidden_type")
    names = config.list("hidden_name")
    for key, given in (("hidden_type", types), ("hidden_name", names)):
        if len(given) > n:
            raise ConfigError(f"config key {key!r}: {len(given)} values for {n} hidden layers (hidden_size); give at "
                              "most one per layer")
    # one type is every layer's type; of several, the missing ones are forward layers
    types = _per_layer(types, n, types[0] if len(types) == 1 else "forward")
    names = [f"hidden_{i}" if name == "_" else name for i, name in enumerate(_per_layer(names, n, "_"))]
    acts = config.list("activation")
    if not acts:
        raise ConfigError("hidden_size needs 'activation' (e.g. activation tanh, or one per layer: tanh,sigmoid)")
    acts = _per_layer(acts, n, acts[-1])
    dropout = [float(d) for d in config.list("dropout", [0.0])]
    dropout = _per_layer(dropout, n + 1, dropout[-1])
    if config.float("L1_reg", 0.0):
        raise ConfigError("config key 'L1_reg': L1 regularisation is not supported here; remove it (or use L2_reg)")
    if config.value("substitute_param_expr", None):
        raise ConfigError("config key 'substitute_param_expr' (a Theano expression per parameter) is not supported; "
                          "remove it")
    common: dict[str, Any] = {}
    if config.float("L2_reg", 0.0):
        common["L2"] = config.float("L2_reg", 0.0)
    for key in ("forward_weights_init", "bias_init"):
        if config.value(key, None):
            common[key] = config.value(key)
    bidirectional = config.bool("bidirectional", True)
    truncation = config.int("truncation", -1)
    sharpgates = config.value("sharpgates", "none")

    net: dict[str, Any] = {}

    def chain(reverse: bool) -> str:
        last = "data"
        for i in range(n):
            layer: dict[str, Any] = {"class": types[i], "n_out": sizes[i], "from": [last], **common}
            if accepts(types[i], "activation"):
                layer["activation"] = acts[i]
            if dropout[i]:
                layer["dropout"] = dropout[i]
            name = names[i]
            takes_reverse = accepts(types[i], "reverse")
            if takes_reverse or accepts(types[i], "direction"):  # RETURNN's recurrent layer classes
                layer["truncation"] = truncation
                if bidirectional:
                    name += "_bw" if reverse else "_fw"
                    if reverse:
                        layer.update({"reverse": True} if takes_reverse else {"direction": -1})
                if accepts(types[i], "sharpgates"):
                    layer["sharpgates"] = sharpgates
            net[name] = layer
            last = name
        return last

    sources = [chain(reverse=False)]
    if bidirectional:
        backward = chain(reverse=True)
        # without a recurrent layer both chains are the same layers: the output reads them once
        if backward not in sources:
            sources.append(backward)
    output: dict[str, Any] = {"class": "softmax", "loss": config.value("loss", "ce"), "from": sources, **common}
    if dropout[-1]:
        output["dropout"] = dropout[-1]
    if config.has("target"):
        output["target"] = config.value("target")
    net["output"] = output
    return net


def has_topology(config: Any) -> bool:
    """Whether the config describes its network the 2017 way (``hidden_size``, no ``network``)."""
    return not config.has("network") and config.has("hidden_size")
