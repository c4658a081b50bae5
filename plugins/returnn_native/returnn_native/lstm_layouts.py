"""The parameter layouts of RETURNN's other native LSTM units, mapped onto the one NativeLstm kernel.

RETURNN's TF demos name three native LSTM cells; all compute the same LSTM (gates [cell input, input, forget,
output], masked frames keep the previous state), so here they share the NativeLstm op and differ only in their
parameters and options:

* ``nativelstm``: ``W`` (n_in, 4n), ``b`` (4n,), ``W_re`` (n, 4n).
* ``nativelstm2``: the same parameters; RETURNN's NativeLstm2 op adds ``rec_weight_dropout`` (dropout on
  ``W_re`` in training).
* ``nativelstmlowmem``: one ``W`` (n_in + n, 4n) whose first n_in rows act on the input and the last n rows on the
  previous output, and ``b`` (4n,) (RETURNN's LstmLowMem op computes ``[x, h] W + b`` per frame).
"""

from __future__ import annotations

from typing import Any

from returnn_core.errors import NetworkError
from returnn_core.network import ParamSpec


class RecWeightDropoutOption:
    """Accepts NativeLstm2's ``rec_weight_dropout`` unit option; only 0 (the default) is supported, because the
    rec layer gives units no train flag to drop weights only in training."""

    options = frozenset({"rec_weight_dropout"})

    def __init__(self, n_in: int, n_out: int, **opts: Any) -> None:
        super().__init__(n_in, n_out, **opts)  # type: ignore[call-arg]
        rate = opts.get("rec_weight_dropout", 0.0)
        if rate:
            raise NetworkError(f"rec unit nativelstm2: rec_weight_dropout={rate!r} is not supported (only 0); "
                               "use dropout on the layer's input instead")


class LowMemLayout:
    """``W`` (n_in + n, 4n) and ``b`` (4n,), split into the NativeLstm parameters on each call."""

    n_in: int
    n_out: int

    def param_specs(self) -> dict[str, ParamSpec]:
        """``W`` (glorot uniform over the stacked matrix) and ``b`` (zeros)."""
        return {"W": ParamSpec((self.n_in + self.n_out, 4 * self.n_out), "glorot_uniform"),
                "b": ParamSpec((4 * self.n_out,), "zeros")}

    def __call__(self, params: dict[str, Any], x: Any, mask: Any, **kwargs: Any) -> tuple[Any, tuple[Any, ...]]:
        """Run the NativeLstm unit with ``W`` cut into its input and recurrent rows."""
        w = params["W"]
        split = {"W": w[: self.n_in], "W_re": w[self.n_in :], "b": params["b"]}
        return super().__call__(split, x, mask, **kwargs)  # type: ignore[misc]
