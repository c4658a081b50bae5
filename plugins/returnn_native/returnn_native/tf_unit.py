"""The ``nativelstm`` rec unit for the TensorFlow backend (implements :class:`returnn_core.network.RecUnit`)."""

from __future__ import annotations

from typing import Any

from returnn_core.network import GatedUnit
from returnn_native.lstm_layouts import LowMemLayout, RecWeightDropoutOption
from returnn_native.toolchain import missing_compiler


class NativeLstmUnit(GatedUnit):
    """LSTM over the whole sequence with the fused NativeLstm TF op; params ``W``, ``W_re``, ``b``."""

    blocks = 4
    num_states = 2
    #: ``unit: lstm`` takes this unit only when this returns None (see ``returnn_core.frontend.resolve_unit``)
    unusable_reason = staticmethod(missing_compiler)

    def __call__(
        self,
        params: dict[str, Any],
        x: Any,
        mask: Any,
        *,
        initial_state: tuple[Any, ...] | None = None,
        direction: int = 1,
    ) -> tuple[Any, tuple[Any, ...]]:
        """Run over x (B, T, n_in) with mask (B, T); returns y (B, T, n) and (h, c)."""
        import tensorflow as tf

        from returnn_native.tf_ops import native_lstm, projection_matmul

        x = tf.convert_to_tensor(x, tf.float32)
        shape = tf.shape(x)
        z = projection_matmul(self.n_in, self.n_out)(tf.reshape(x, [-1, self.n_in]), params["W"]) + params["b"]
        z = tf.reshape(z, [shape[0], shape[1], 4 * self.n_out])
        if initial_state is None:
            zeros = tf.zeros([shape[0], self.n_out], tf.float32)
            initial_state = (zeros, zeros)
        h0, c0 = initial_state
        mask = tf.cast(mask, tf.float32)
        y, h, c = native_lstm(z, params["W_re"], mask, h0, c0, direction=direction)
        return y, (h, c)


class NativeLstm2Unit(RecWeightDropoutOption, NativeLstmUnit):
    """``nativelstm2``: the same LSTM and parameters as ``nativelstm`` (see :mod:`returnn_native.lstm_layouts`)."""


class NativeLstmLowMemUnit(LowMemLayout, NativeLstmUnit):
    """``nativelstmlowmem``: the same LSTM with one stacked ``W`` (n_in + n, 4n) and ``b``."""
