"""``subnetwork``: a nested network dict; ``data`` is the layer's input, ``base:<layer>`` reaches outer layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._output import LayerOutput
from returnn_core.network import resolve_network

if TYPE_CHECKING:
    from returnn_core.frontend._network import Network


def _rewrite(net: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Turn ``base:x`` sources into data keys ``base:x`` (the core resolves ``data:<key>``)."""
    out, base_keys = {}, []
    for name, layer in net.items():
        if not isinstance(layer, Mapping):
            out[name] = layer
            continue
        layer = dict(layer)
        raw = layer.get("from", ["data"])
        srcs = [raw] if isinstance(raw, str) else list(raw)
        new = []
        for s in srcs:
            if isinstance(s, str) and s.startswith("base:"):
                base_keys.append(s)
                new.append("data:" + s)
            else:
                new.append(s)
        layer["from"] = new
        out[name] = layer
    return out, base_keys


class SubnetworkLayer(Layer):
    """The ``output`` layer of the nested ``subnetwork`` dict; its parameters are ``<layer>/<inner>/<param>``."""

    options = frozenset({"subnetwork", "concat_sources"})

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        super().__init__(name, layer_class, opts, net)
        self.subnet = self.nested_network(f"{self.name}/")

    def nested_network(self, prefix: str) -> Network:
        """The ``subnetwork`` dict built as a nested network whose parameters are named ``<prefix><inner>/...``."""
        sub = self.opts.get("subnetwork")
        if not isinstance(sub, Mapping) or not sub:
            raise self.error("needs 'subnetwork', a dict of layers")
        if "output" not in sub:
            raise NetworkError(f"layer {self.name!r}: its subnetwork needs a layer named 'output'")
        rewritten, base_keys = _rewrite(sub)
        try:
            desc = resolve_network(rewritten, ["data", *base_keys])
        except NetworkError as exc:
            raise NetworkError(f"layer {self.name!r} subnetwork: {exc}") from None
        return self.net.make_subnetwork(desc, prefix=prefix)

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Run the nested layers on the sources, concatenated (RETURNN's ``concat_sources=True``, the only mode)."""
        data = {"data": self.single_source(sources)} if sources else {}
        outputs = self.subnet.compute(ctx.ops, data, train=ctx.train, outer=ctx, batch_size=ctx.batch_size)
        return outputs["output"]
