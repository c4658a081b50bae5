"""The recurrent-unit protocol shared by all backends, so a unit plugin needs no backend plugin's code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from returnn_core.errors import NetworkError


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a unit needs; the backend creates it and hands it back by name.

    ``init`` is one of ``"glorot_uniform"``, ``"orthogonal"``, ``"zeros"``, ``"ones"``, or
    ``"uniform:<scale>"`` / ``"normal:<stddev>"``.
    """

    shape: tuple[int, ...]
    init: str = "glorot_uniform"


@runtime_checkable
class RecUnit(Protocol):
    """A unit registered under ``rec_units`` for one backend.

    Constructed as ``unit_cls(n_in, n_out, **unit_opts)``. The backend creates the tensors for
    :meth:`param_specs` (named ``<layer>/<param>``) and calls the unit with backend tensors, batch-major:
    ``x`` (B, T, n_in) float32 and ``mask`` (B, T) float32 (1 = frame present). It returns ``y`` (B, T, n_out)
    and the final state as a tuple of (B, n) tensors (``(h, c)`` for an LSTM). ``direction=-1`` runs
    backwards over each seq's present frames and returns ``y`` in the original time order.
    """

    n_in: int
    n_out: int

    def param_specs(self) -> dict[str, ParamSpec]:
        """Parameters by name."""
        ...

    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state tensors (initial and final state)."""
        ...

    def __call__(
        self,
        params: dict[str, Any],
        x: Any,
        mask: Any,
        *,
        initial_state: tuple[Any, ...] | None = None,
        direction: int = 1,
    ) -> tuple[Any, tuple[Any, ...]]:
        """Run over the whole padded batch."""
        ...


class GatedUnit:
    """Base of units with the canonical parameters ``W`` (n_in, k*n), ``W_re`` (n, k*n), ``b`` (k*n,).

    ``k`` is :attr:`blocks` (4 for an LSTM in :data:`LSTM_GATE_ORDER`, 3 for a GRU, 1 for a plain RNN). The same
    names and shapes on every backend let parameters move between backends and implementations.
    """

    #: n-sized blocks in the weight matrices
    blocks: ClassVar[int] = 1
    #: n-sized state tensors (2 for an LSTM: h, c)
    num_states: ClassVar[int] = 1
    #: unit options accepted (``None``: any, left to the subclass)
    options: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, n_in: int, n_out: int, **opts: Any) -> None:
        if self.options is not None and set(opts) - self.options:
            unknown = ", ".join(sorted(set(opts) - self.options))
            raise NetworkError(f"rec unit {type(self).__name__}: unknown option(s) {unknown}")
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.opts = opts

    def param_specs(self) -> dict[str, ParamSpec]:
        """``W``, ``W_re`` (glorot uniform) and ``b`` (zeros)."""
        k = self.blocks * self.n_out
        return {
            "W": ParamSpec((self.n_in, k), "glorot_uniform"),
            "W_re": ParamSpec((self.n_out, k), "glorot_uniform"),
            "b": ParamSpec((k,), "zeros"),
        }

    def state_sizes(self) -> tuple[int, ...]:
        """One n-sized state per state tensor."""
        return (self.n_out,) * self.num_states


#: The gate order of every LSTM unit's 4n blocks (NativeLSTM's layout): cell input, input, forget, output.
LSTM_GATE_ORDER = ("cell_in", "input", "forget", "output")
