"""The TensorFlow NativeLstm op and ``nativelstm`` unit against a plain TensorFlow LSTM, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from returnn_native.tf_unit import NativeLstmUnit  # noqa: E402

from returnn_core.network import RecUnit  # noqa: E402

from .lstm_cases import LstmCase, make_case  # noqa: E402

TOL = 1e-4


def reference_lstm(p: dict, x, mask, h0, c0, direction: int):
    """Plain TF LSTM, one step at a time: gate blocks [cell in, input, forget, output], masked frames keep state."""
    n = p["W_re"].shape[0]
    T = x.shape[1]
    h, c = h0, c0
    ys = [None] * T
    for t in range(T) if direction == 1 else reversed(range(T)):
        z = tf.matmul(x[:, t], p["W"]) + tf.matmul(h, p["W_re"]) + p["b"]
        a = tf.tanh(z[:, :n])
        i = tf.sigmoid(z[:, n : 2 * n])
        f = tf.sigmoid(z[:, 2 * n : 3 * n])
        o = tf.sigmoid(z[:, 3 * n :])
        c_new = f * c + i * a
        h_new = o * tf.tanh(c_new)
        m = mask[:, t : t + 1]
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        ys[t] = m * h_new
    y = tf.stack(ys, axis=1) if T else tf.zeros([x.shape[0], 0, n])
    return y, (h, c)


def run_with_grads(fn, case: LstmCase):
    """Values and gradients w.r.t. x, params and initial state of sum(y*dy) + sum(h*dh) + sum(c*dc)."""
    variables = {k: tf.constant(getattr(case, k)) for k in ("x", "W", "W_re", "b", "h0", "c0")}
    with tf.GradientTape() as tape:
        tape.watch(list(variables.values()))
        p = {k: variables[k] for k in ("W", "W_re", "b")}
        y, (h, c) = fn(p, variables["x"], tf.constant(case.mask), variables["h0"], variables["c0"], case.direction)
        loss = tf.reduce_sum(y * case.dy) + tf.reduce_sum(h * case.dh) + tf.reduce_sum(c * case.dc)
    grads = tape.gradient(loss, variables)
    return [y, h, c], grads


def native(p, x, mask, h0, c0, direction):
    """The unit under test."""
    unit = NativeLstmUnit(x.shape[-1], p["W_re"].shape[0])
    return unit(p, x, mask, initial_state=(h0, c0), direction=direction)


def assert_close(got, want, what: str) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL, err_msg=what)


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("seed", range(4))
def test_eager_matches_reference(seed: int, direction: int) -> None:
    case = make_case(seed, direction)
    outs = check_against_reference(case)
    assert not np.any(np.asarray(outs[0])[case.mask == 0])  # masked frames output zeros


def check_against_reference(case: LstmCase) -> list:
    """The unit's outputs and gradients within TOL of the reference LSTM's; returns the outputs."""
    outs, grads = run_with_grads(native, case)
    ref_outs, ref_grads = run_with_grads(reference_lstm, case)
    for name, got, want in zip(("y", "h", "c"), outs, ref_outs):
        assert_close(got, want, name)
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"d{name}")
    return outs


def test_layer_that_fills_the_amx_tiles_matches_reference() -> None:
    """40 inputs and units: under ISA amx the input projection runs on NativeMatMul, within the same tolerance."""
    check_against_reference(make_case(9, -1, sizes=(6, 9, 40, 40), weight_scales=(0.2, 0.2)))


def test_tf_function_matches_eager() -> None:
    case = make_case(11, -1)
    eager_outs, eager_grads = run_with_grads(native, case)
    outs, grads = tf.function(lambda: run_with_grads(native, case))()
    for got, want in zip(outs, eager_outs):
        assert_close(got, want, "tf.function output")
    for name in grads:
        assert_close(grads[name], eager_grads[name], f"tf.function d{name}")


def test_graph_mode_tf_gradients() -> None:
    """tf.gradients in a v1 graph uses the registered gradient."""
    case = make_case(5, 1)
    _, ref_grads = run_with_grads(reference_lstm, case)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(case.x)
        p = {k: tf.constant(getattr(case, k)) for k in ("W", "W_re", "b")}
        y, (h, c) = native(p, x, tf.constant(case.mask), tf.constant(case.h0), tf.constant(case.c0), 1)
        loss = tf.reduce_sum(y * case.dy) + tf.reduce_sum(h * case.dh) + tf.reduce_sum(c * case.dc)
        gx, gw = tf.gradients(loss, [x, p["W_re"]])
        with tf.compat.v1.Session(graph=graph) as session:
            gx_val, gw_val = session.run([gx, gw])
    assert_close(gx_val, ref_grads["x"], "graph dx")
    assert_close(gw_val, ref_grads["W_re"], "graph dW_re")


def test_unused_outputs_get_zero_gradient() -> None:
    """Only y feeds the loss: the final-state gradients arrive as None and count as zero."""
    case = make_case(3, 1)
    p = {k: tf.constant(getattr(case, k)) for k in ("W", "W_re", "b")}
    x = tf.constant(case.x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, _ = native(p, x, tf.constant(case.mask), tf.constant(case.h0), tf.constant(case.c0), 1)
        loss = tf.reduce_sum(y)
    with tf.GradientTape() as ref_tape:
        ref_tape.watch(x)
        y_ref, _ = reference_lstm(p, x, tf.constant(case.mask), tf.constant(case.h0), tf.constant(case.c0), 1)
        ref_loss = tf.reduce_sum(y_ref)
    assert_close(tape.gradient(loss, x), ref_tape.gradient(ref_loss, x), "dx")


def test_unit_protocol_and_default_state() -> None:
    unit = NativeLstmUnit(3, 4)
    assert isinstance(unit, RecUnit)
    specs = unit.param_specs()
    assert {k: s.shape for k, s in specs.items()} == {"W": (3, 16), "W_re": (4, 16), "b": (16,)}
    assert unit.state_sizes() == (4, 4)
    case = make_case(2, 1, zero_state=True)
    unit = NativeLstmUnit(case.x.shape[-1], case.n)
    p = {k: tf.constant(getattr(case, k)) for k in ("W", "W_re", "b")}
    y, (h, c) = unit(p, tf.constant(case.x), tf.constant(case.mask.astype(bool)))
    y_ref, (h_ref, c_ref) = reference_lstm(p, case.x, case.mask, case.h0, case.c0, 1)
    assert_close(y, y_ref, "y")
    assert_close(c, c_ref, "c")


def test_bad_shapes_name_the_input() -> None:
    from returnn_native.tf_ops import native_lstm

    z = tf.zeros([2, 3, 8])
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask"):
        native_lstm(z, tf.zeros([2, 8]), tf.zeros([2, 4]), tf.zeros([2, 2]), tf.zeros([2, 2]))
