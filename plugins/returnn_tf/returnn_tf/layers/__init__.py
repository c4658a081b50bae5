"""TF-only layers (``eval``) and the compatibility import of the layer base class (:mod:`returnn_tf.layers.base`)."""
