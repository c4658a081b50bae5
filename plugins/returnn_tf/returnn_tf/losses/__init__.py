"""TF losses: the duck-typed loss interface (see :mod:`returnn_tf.losses.base`) and the built-in losses."""
