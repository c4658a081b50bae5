"""The ``nativelstm`` rec unit for the Theano-API (PyTensor) backend (implements ``returnn_core.network.RecUnit``)."""

from __future__ import annotations

from typing import Any

from returnn_core.network import ParamSpec
from returnn_native.errors import NativeOpError


class NativeLstmUnit:
    """LSTM over the whole sequence with the fused NativeLstm PyTensor op; params ``W``, ``W_re``, ``b``."""

    def __init__(self, n_in: int, n_out: int, **opts: Any) -> None:
        if opts:
            raise NativeOpError(f"rec unit 'nativelstm' has no options {sorted(opts)}; it takes only n_in and n_out")
        self.n_in = int(n_in)
        self.n_out = int(n_out)

    def param_specs(self) -> dict[str, ParamSpec]:
        """``W`` (n_in, 4n), ``W_re`` (n, 4n), ``b`` (4n,), blocks [cell input, input, forget, output]."""
        n4 = 4 * self.n_out
        return {
            "W": ParamSpec((self.n_in, n4), "glorot_uniform"),
            "W_re": ParamSpec((self.n_out, n4), "glorot_uniform"),
            "b": ParamSpec((n4,), "zeros"),
        }

    def state_sizes(self) -> tuple[int, ...]:
        """(h, c)."""
        return (self.n_out, self.n_out)

    def __call__(
        self,
        params: dict[str, Any],
        x: Any,
        mask: Any,
        *,
        initial_state: tuple[Any, ...] | None = None,
        direction: int = 1,
    ) -> tuple[Any, tuple[Any, ...]]:
        """Symbolic run over x (B, T, n_in) with mask (B, T); returns y (B, T, n) and (h, c)."""
        import pytensor.tensor as pt

        from returnn_native.pytensor_ops import native_lstm

        x = pt.as_tensor_variable(x)
        z = pt.dot(x.reshape((-1, self.n_in)), params["W"]) + params["b"]
        z = z.reshape((x.shape[0], x.shape[1], 4 * self.n_out))
        if initial_state is None:
            zeros = pt.zeros((x.shape[0], self.n_out), dtype="float32")
            initial_state = (zeros, zeros)
        h0, c0 = initial_state
        y, h, c = native_lstm(z, params["W_re"], pt.cast(mask, "float32"), h0, c0, direction=direction)
        return y, (h, c)
