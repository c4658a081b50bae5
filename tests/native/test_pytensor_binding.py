"""The PyTensor NativeLstm C op and ``nativelstm`` unit against a plain PyTensor (scan) LSTM, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

pytensor = pytest.importorskip("pytensor")

import pytensor.tensor as pt  # noqa: E402
from returnn_native.pytensor_unit import NativeLstmUnit  # noqa: E402

from returnn_core.network import RecUnit  # noqa: E402

from .lstm_cases import LstmCase, make_case  # noqa: E402

TOL = 1e-4
NAMES = ("x", "W", "W_re", "b", "h0", "c0")


def reference_lstm(p: dict, x, mask, h0, c0, direction: int):
    """Plain PyTensor LSTM via scan: gate blocks [cell in, input, forget, output], masked frames keep state."""
    n = p["W_re"].shape[0]

    def step(x_t, m_t, h, c):
        z = pt.dot(x_t, p["W"]) + pt.dot(h, p["W_re"]) + p["b"]
        a = pt.tanh(z[:, :n])
        i = pt.sigmoid(z[:, n : 2 * n])
        f = pt.sigmoid(z[:, 2 * n : 3 * n])
        o = pt.sigmoid(z[:, 3 * n :])
        c_new = f * c + i * a
        h_new = o * pt.tanh(c_new)
        m = m_t[:, None]
        return m * h_new + (1 - m) * h, m * c_new + (1 - m) * c, m * h_new

    xs, ms = x.dimshuffle(1, 0, 2), mask.T
    if direction == -1:
        xs, ms = xs[::-1], ms[::-1]
    hs, cs, ys = pytensor.scan(step, sequences=[xs, ms], outputs_info=[h0, c0, None], return_updates=False)
    if direction == -1:
        ys = ys[::-1]
    return ys.dimshuffle(1, 0, 2), (hs[-1], cs[-1])


def native(p, x, mask, h0, c0, direction):
    """The unit under test."""
    unit = NativeLstmUnit(int(p["W"].type.shape[0] or 0) or p["_n_in"], p["_n"])
    return unit(p, x, mask, initial_state=(h0, c0), direction=direction)


def run_with_grads(fn, case: LstmCase, mode: str | None = None):
    """Values and gradients of sum(y*dy) + sum(h*dh) + sum(c*dc) w.r.t. x, params and initial state."""
    sym = {
        "x": pt.tensor3("x", dtype="float32"),
        "W": pt.matrix("W", dtype="float32"),
        "W_re": pt.matrix("W_re", dtype="float32"),
        "b": pt.vector("b", dtype="float32"),
        "h0": pt.matrix("h0", dtype="float32"),
        "c0": pt.matrix("c0", dtype="float32"),
    }
    mask = pt.matrix("mask", dtype="float32")
    p = {"W": sym["W"], "W_re": sym["W_re"], "b": sym["b"], "_n_in": case.x.shape[-1], "_n": case.n}
    y, (h, c) = fn(p, sym["x"], mask, sym["h0"], sym["c0"], case.direction)
    loss = (y * case.dy).sum() + (h * case.dh).sum() + (c * case.dc).sum()
    grads = pytensor.grad(loss, [sym[k] for k in NAMES])
    f = pytensor.function([*(sym[k] for k in NAMES), mask], [y, h, c, *grads], mode=mode)
    vals = f(*(getattr(case, k) for k in NAMES), case.mask)
    return vals[:3], dict(zip(NAMES, vals[3:]))


def assert_close(got, want, what: str) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL, err_msg=what)


def check_against_reference(case: LstmCase, mode: str | None) -> None:
    outs, grads = run_with_grads(native, case, mode)
    ref_outs, ref_grads = run_with_grads(reference_lstm, case, "FAST_COMPILE")
    for name, got, want in zip(("y", "h", "c"), outs, ref_outs):
        assert_close(got, want, name)
    for name in NAMES:
        assert_close(grads[name], ref_grads[name], f"d{name}")


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("seed", range(3))
def test_c_op_matches_reference(seed: int, direction: int) -> None:
    check_against_reference(make_case(seed, direction), mode="CVM")


def test_layer_that_fills_the_amx_tiles_matches_reference() -> None:
    """40 inputs and units: under ISA amx the input projection runs on NativeMatMul, within the same tolerance."""
    check_against_reference(make_case(9, 1, sizes=(6, 9, 40, 40), weight_scales=(0.2, 0.2)), mode="CVM")


@pytest.mark.parametrize("direction", [1, -1])
def test_python_perform_matches_reference(direction: int) -> None:
    """The py linker calls ``perform`` (the same kernels through ctypes)."""
    check_against_reference(make_case(7, direction), mode="FAST_COMPILE")


def test_default_mode_matches_reference() -> None:
    """PyTensor's default (Numba) linker runs the op through ``perform`` in object mode."""
    check_against_reference(make_case(8, -1), mode=None)


def test_c_op_is_used_in_fast_run() -> None:
    from pytensor.link.c.basic import CLinker
    from returnn_native.pytensor_ops import native_lstm_op

    z, w = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
    m, h0 = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    node = native_lstm_op(1)(z, w, m, h0, h0)[0].owner
    code = CLinker().accept(pytensor.graph.fg.FunctionGraph(node.inputs, node.outputs)).get_src_code()
    assert "returnn_lstm_fwd_cpu" in code


def test_only_y_used_and_protocol() -> None:
    case = make_case(4, 1, zero_state=True)
    unit = NativeLstmUnit(case.x.shape[-1], case.n)
    assert isinstance(unit, RecUnit)
    assert unit.state_sizes() == (case.n, case.n)
    x = pt.tensor3(dtype="float32")
    mask = pt.matrix(dtype="float32")
    p = {k: pytensor.shared(getattr(case, k), name=k) for k in ("W", "W_re", "b")}
    y, _ = unit(p, x, mask)
    dx = pytensor.grad(y.sum(), x)
    y_val, dx_val = pytensor.function([x, mask], [y, dx], mode="CVM")(case.x, case.mask)
    xr = pt.tensor3(dtype="float32")
    zeros = pt.zeros((xr.shape[0], case.n), dtype="float32")
    y_ref, _ = reference_lstm(p, xr, mask, zeros, zeros, 1)
    f_ref = pytensor.function([xr, mask], [y_ref, pytensor.grad(y_ref.sum(), xr)], mode="FAST_COMPILE")
    y_ref_val, dx_ref_val = f_ref(case.x, case.mask)
    assert_close(y_val, y_ref_val, "y")
    assert_close(dx_val, dx_ref_val, "dx")


def test_bad_shape_names_the_input() -> None:
    from returnn_native.pytensor_ops import native_lstm

    z, w = pt.tensor3(dtype="float32"), pt.matrix(dtype="float32")
    m, h0 = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    f = pytensor.function([z, w, m, h0], native_lstm(z, w, m, h0, h0)[0], mode="CVM")
    with pytest.raises(ValueError, match="mask"):
        f(
            np.zeros((2, 3, 8), np.float32),
            np.zeros((2, 8), np.float32),
            np.zeros((2, 4), np.float32),
            np.zeros((2, 2), np.float32),
        )
