"""Theano-era ``clustersubnet`` (NetworkHiddenLayer.ClusterDependentSubnetworkLayer): one subnetwork per cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from returnn_core.frontend._layer import Context
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.layers.subnetwork import SubnetworkLayer

if TYPE_CHECKING:
    from returnn_core.frontend._network import Network


class ClusterSubnetworkLayer(SubnetworkLayer):
    """``n_clusters`` copies of ``subnetwork`` over the sources but the last; the last source is the seqs' cluster
    index (e.g. ClusteringDataset's ``cluster_idx``) and picks, per seq, the copy whose output this layer gives.

    Each copy has its own parameters ``<layer>/<k>/<inner layer>/<param>``. RETURNN put every copy's parameters
    under the same names, so only the last copy's were trained, and it summed the outputs of every copy named
    anywhere in the batch (correct only with ClusteringDataset's ``single_cluster``); here each seq gets its own
    cluster's copy, the documented intent.
    """

    options = frozenset({"subnetwork", "n_clusters", "load", "data_map", "trainable", "concat_sources"})

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        super(SubnetworkLayer, self).__init__(name, layer_class, opts, net)
        n = self.opts.get("n_clusters")
        if not isinstance(n, int) or n < 1:
            raise self.error(f"n_clusters must be an int >= 1, got {n!r}")
        if self.opts.get("load", "<random>") != "<random>":
            raise self.error("load (a Theano HDF model for the subnetworks) is not supported; train them here, or "
                             "initialise with preload_from_files")
        if self.opts.get("data_map") or not self.opts.get("concat_sources", True):
            raise self.error("only concat_sources=True (the default, without data_map) is supported: the sources but "
                             "the last are concatenated as the subnetworks' 'data'")
        if not self.opts.get("trainable", True):
            raise self.error("trainable=False is not supported; set the subnetwork's layers' trainable instead")
        self.subnets = [self.nested_network(f"{self.name}/{k}/") for k in range(n)]

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Every copy on the inputs; each seq takes the output of its cluster's copy."""
        if len(sources) < 2:
            raise self.error("needs the input layers and, as the last source, the layer of the cluster index")
        *inputs, cluster = sources
        if not cluster.sparse:
            raise self.error("the last source must be the sparse cluster index (e.g. a 'source' layer of cluster_idx)")
        ops = ctx.ops
        data = {"data": self.single_source(inputs)}
        outs = [sub.compute(ops, data, train=ctx.train, outer=ctx, batch_size=ctx.batch_size)["output"]
                for sub in self.subnets]
        # the seq's cluster is its first index frame, as RETURNN read it
        weights = ops.one_hot(ops.gather(cluster.tensor, ops.constant(0, "int32"), axis=1), len(outs))  # (B, n)
        first = outs[0]
        weights = ops.expand_dims(weights, 1)
        for _ in range(ops.ndim(first.tensor) - 2):
            weights = ops.expand_dims(weights, 2)  # (B, 1, [1,] n): over the time and feature axes
        chosen = ops.reduce(ops.stack([o.tensor for o in outs], axis=-1) * weights, "sum", axis=-1)
        return first.with_tensor(chosen, dim=first.dim)
