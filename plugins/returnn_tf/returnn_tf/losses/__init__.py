"""The legacy keyword protocol of TF losses (:mod:`returnn_tf.losses.base`); the built-in losses are the core's."""
