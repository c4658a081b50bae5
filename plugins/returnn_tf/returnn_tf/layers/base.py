"""Compatibility: the layer base class now lives in the core (``returnn_core.frontend``); old TF plugins import it here.

A layer written against the old TF API (raw TF ops on ``src.tensor``, :meth:`Layer.param`,
:meth:`Layer.single_source`, :meth:`LayerOutput.with_tensor`) keeps working: on the TF backend its tensors are
TF tensors and its parameters ``tf.Variable``.
"""

from returnn_core.frontend import Context, Layer, concat_features

__all__ = ["Context", "Layer", "concat_features"]
