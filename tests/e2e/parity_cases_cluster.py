"""Cross-backend case of the Theano-era ``clustersubnet`` (its cluster index read by a ``source`` layer)."""

from __future__ import annotations

from typing import Any

#: case -> (network, config, data kind), gathered by test_theano_vs_tf.py
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "theano-era-clustersubnet-adam": (
        {"fw0": {"class": "forward", "n_out": 4, "activation": "tanh"},
         # the seq's first label stands in for a cluster index here (3 clusters, as 'classes' has 3 labels)
         "cluster": {"class": "source", "data_key": "classes", "from": "null", "sparse": True},
         "sub": {"class": "clustersubnet", "n_out": 3, "n_clusters": 3, "from": ["fw0", "cluster"],
                 "subnetwork": {"h": {"class": "forward", "n_out": 5, "activation": "tanh"},
                                "output": {"class": "forward", "n_out": 3, "activation": "identity", "from": "h"}}},
         "output": {"class": "softmax", "loss": "ce", "from": "sub"}},
        {"optimizer": {"class": "adam"}}, "ce",
    ),
}
