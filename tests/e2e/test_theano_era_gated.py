"""The Theano-era layer classes ``gru``, ``sru``, ``act_lstm``, the LSTMs with other gate shapes and ``constant``
over time on both backends, against NumPy versions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, MASK, SEQ_LENS, X, _both, _forward  # noqa: E402
from test_theano_era_layers import _over_time, _sig  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
N = 3
ACT = {"n_max_calc_steps": 3, "eps": 0.1, "time_penalty": 0.5, "time_penalty_type": "linear",
       "total_halt_penalty": 0.1}
NET = {
    "gru": {"class": "gru", "n_out": N, "reverse": True},
    "sru_p": {"class": "sru", "n_out": N, "psize": 2, "pdepth": 2, "pact": "tanh"},
    "sru_carry": {"class": "sru", "n_out": 4, "carry_time": True},
    "act": {"class": "act_lstm", "n_out": N, **ACT},
    "sra": {"class": "sra", "n_out": N, "psize": 2, "reverse": True},
    "half": {"class": "lstm_half_gates", "n_out": 4, "activation": "relu"},
    "proj": {"class": "lstm_proj_gates", "n_out": N, "n_gate_proj": 2, "direction": -1},
    "cplx": {"class": "lstm_complex", "n_out": 4, "use_complex": "1:0:1:1", "activation": "tanh,relu"},
    "const": {"class": "constant", "value": [0.5, -1.0], "n_out": 2},
    "const_scalar": {"class": "constant", "value": 2, "n_out": 3, "from": "act"},
    "output": {"class": "softmax", "loss": "ce", "n_out": 3,
               "from": ["gru", "sru_p", "sru_carry", "act", "sra", "half", "proj", "cplx", "const", "const_scalar"]},
}
LAYERS = list(NET)[:-1]
NET["all"] = {"class": "copy", "from": LAYERS, "is_output_layer": True}


@pytest.fixture(scope="module")
def outputs() -> tuple[tuple[Any, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The backends, each layer's output (checked equal on both) and the parameters (biases randomised)."""
    backends = _both(NET)
    params = backends[0].get_param_values()
    rng = np.random.RandomState(5)
    for key, value in params.items():
        params[key] = rng.uniform(-1.0, 1.0, value.shape).astype("f")
    for backend in backends:
        backend.set_param_values(params)
    out, _ = _forward(backends, "all")  # one forward (one compiled function) for all layers
    ends = np.cumsum([NET[name]["n_out"] for name in LAYERS])
    outs = {name: out[..., end - NET[name]["n_out"] : end] for name, end in zip(LAYERS, ends)}
    return backends, outs, params


def test_gru_layer(outputs) -> None:
    _, outs, p = outputs

    def step(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        z = x_t @ p["gru/W"] + p["gru/b"]
        r, u = np.split(_sig(z[: 2 * N] + h @ p["gru/W_re"][:, : 2 * N]), 2)
        h = u * h + (1 - u) * np.tanh(z[2 * N :] + (r * h) @ p["gru/W_re"][:, 2 * N :])  # Cho: reset before W
        return h, (h,)

    expected = _over_time(step, X, (np.zeros(N, "f"),), direction=-1)
    np.testing.assert_allclose(outs["gru"], expected, rtol=1e-4, atol=1e-5)


def _sru(z: np.ndarray, h: np.ndarray, rec: np.ndarray, n: int) -> np.ndarray:
    z_u, z_r, z_c = np.split(z, 3)
    r_u, r_r, r_c = np.split(rec, 3)
    u = _sig(z_u + r_u)
    return u * h + (1 - u) * np.tanh(z_c + _sig(z_r + r_r) * r_c)


def test_sru_layer_options(outputs) -> None:
    _, outs, p = outputs

    def projected(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        h_in = np.tanh(np.tanh(h @ p["sru_p/Wp_0"]) @ p["sru_p/Wp_1"])  # pdepth 2, pact tanh
        h = _sru(x_t @ p["sru_p/W"] + p["sru_p/b"], h, h_in @ p["sru_p/W_re"], N)
        return h, (h,)

    def carry(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        h = _sru(x_t @ p["sru_carry/W"] + p["sru_carry/b"], h, h @ p["sru_carry/W_re"], 4)
        gate = _sig(x_t @ p["sru_carry/W_RT"])
        h = gate * h + (1 - gate) * x_t
        return h, (h,)

    np.testing.assert_allclose(outs["sru_p"], _over_time(projected, X, (np.zeros(N, "f"),)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs["sru_carry"], _over_time(carry, X, (np.zeros(4, "f"),)), rtol=1e-4, atol=1e-5)


def test_sra_layer(outputs) -> None:
    _, outs, p = outputs

    def step(x_t: np.ndarray, h: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        h_x = np.maximum(h @ p["sra/Wp_0"], 0) @ p["sra/W_re"]  # psize 2, pact relu
        u, r = _sig(h_x[:N]), np.tanh(h_x[N:])
        s = r * s + r * p["sra/sp"]
        h = np.tanh(u * (x_t @ p["sra/W"] + p["sra/b"]) + s)
        return h, (h, s)

    expected = _over_time(step, X, (np.zeros(N, "f"), np.zeros(N, "f")), direction=-1)
    np.testing.assert_allclose(outs["sra"], expected, rtol=1e-4, atol=1e-5)


def _act(p: dict[str, np.ndarray], steps: int, eps: float, halt_penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """RETURNN's ACT LSTM over the batch ("linear" time penalty, "inv" halt penalty): output and penalty per frame."""
    g = {k.split("/", 1)[1]: v for k, v in p.items() if k.startswith("act/")}
    c = N + 1
    limit = 1.0 - eps
    z = X @ g["W"] + g["b"]
    batch, time = MASK.shape
    h, s = np.zeros((batch, c), "f"), np.zeros((batch, c), "f")
    out, penalty = np.zeros((batch, time, N), "f"), np.zeros((batch, time), "f")
    for t in range(time):
        m = MASK[:, t]
        total = np.zeros(batch, "f")
        h_k, s_k = h, s
        h_sum, s_sum = np.zeros_like(h), np.zeros_like(s)
        for k in range(steps):
            zz = z[:, t] + k * g["W_delay"][0] + h_k @ g["W_re"]
            i_g, f_g, o_g = np.split(_sig(zz[:, : 3 * c]), 3, axis=1)
            s_k = np.tanh(zz[:, 3 * c :]) * i_g + s_k * f_g
            h_k = np.tanh(s_k) * o_g
            halt = (h_k[:, -1] + 1) / 2
            new = total + halt
            weight = np.where(new < limit, 1 - total if k == steps - 1 else halt, np.where(total < limit, 1 - total, 0))
            h_sum, s_sum = h_sum + h_k * weight[:, None], s_sum + s_k * weight[:, None]
            penalty[:, t] += ((k + 1) * halt + halt_penalty / halt) * m
            stop = np.min((total >= limit) * m)  # the whole batch leaves the inner loop together, as in RETURNN
            total = new
            if stop:
                break
        h = np.where(m[:, None] > 0, h_sum, h)
        s = np.where(m[:, None] > 0, s_sum, s)
        out[:, t] = h_sum[:, :N] * m[:, None]
    return out, penalty


def test_act_lstm_output_and_time_penalty(outputs) -> None:
    backends, outs, p = outputs
    expected, penalty = _act(p, ACT["n_max_calc_steps"], ACT["eps"], ACT["total_halt_penalty"])
    np.testing.assert_allclose(outs["act"], expected, rtol=1e-4, atol=1e-5)
    for backend in backends:
        result = backend.eval_step(BATCH)
        assert result.frames["act"] == sum(SEQ_LENS)
        np.testing.assert_allclose(result.losses["act"], 0.5 * penalty.sum(), rtol=1e-4)  # time_penalty 0.5


def _cmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    half = a.shape[-1] // 2
    prod = (a[..., :half] + 1j * a[..., half:]) * (b[..., :half] + 1j * b[..., half:])
    return np.concatenate([prod.real, prod.imag], -1).astype("f")


def test_lstms_with_other_gate_shapes(outputs) -> None:
    _, outs, p = outputs
    relu = lambda v: np.maximum(v, 0)  # noqa: E731

    def half(x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        z = x_t @ p["half/W"] + p["half/b"] + h @ p["half/W_re"]
        i_g, f_g, o_g = (np.tile(_sig(z[k * 2 : k * 2 + 2]), 2) for k in range(3))  # 2 gates for 4 cells
        c = relu(z[6:]) * i_g + c * f_g  # one name: cell input and output
        h = relu(c) * o_g
        return h, (h, c)

    def proj(x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        z = x_t @ p["proj/W"] + p["proj/b"] + h @ p["proj/W_re"]
        i_g, f_g, o_g = (_sig(relu(z[k * 2 : k * 2 + 2]) @ p[f"proj/W_{g}gate_proj"]) for k, g in enumerate("ifo"))
        c = np.tanh(z[6:]) * i_g + c * f_g
        h = np.tanh(c) * o_g
        return h, (h, c)

    def cplx(x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        w_re = p["cplx/W_re"]  # (4, 8): the complex recurrent product gives 16 values
        rec = np.concatenate([h[:2] @ w_re[:2] - h[2:] @ w_re[2:], h[:2] @ w_re[2:] + h[2:] @ w_re[:2]])
        z = x_t @ p["cplx/W"] + p["cplx/b"] + rec
        i_g, f_g, o_g = _sig(z[:4]), _sig(z[4:8]), _sig(z[8:12])
        c = np.tanh(z[12:]) * i_g + _cmul(c, f_g)  # use_complex 1:0:1:1: only the input gate product is real
        h = _cmul(np.maximum(c, 0), o_g)
        return h, (h, c)

    zeros3, zeros4 = (np.zeros(N, "f"),) * 2, (np.zeros(4, "f"),) * 2
    np.testing.assert_allclose(outs["half"], _over_time(half, X, zeros4), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs["proj"], _over_time(proj, X, zeros3, direction=-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs["cplx"], _over_time(cplx, X, zeros4), rtol=1e-4, atol=1e-5)


def test_constant_over_time(outputs) -> None:
    """Theano's constant: the value in every frame of its source, n_out wide (the tf era's has no time axis)."""
    _, outs, _ = outputs
    np.testing.assert_array_equal(outs["const"], MASK[..., None] * np.array([0.5, -1.0], "f"))
    np.testing.assert_array_equal(outs["const_scalar"], MASK[..., None] * np.full(3, 2.0, "f"))


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "constant", "value": [1, 2], "n_out": 3}, "a vector of 1 or n_out=3 entries"),
    ({"class": "act_lstm", "n_out": 2, "time_penalty_type": "cubic"}, "time_penalty_type 'cubic'"),
    ({"class": "act_lstm", "n_out": 2, "eps": 1.0}, "eps must be in (0, 1)"),
    ({"class": "sru", "n_out": 2, "carry_time": True}, "carry_time needs the input dim (4) to equal n_out (2)"),
    ({"class": "gru", "n_out": 2, "projection": 2}, "projection is not supported"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError, match=r"layer 'bad'") as info:
        _both({"bad": layer, "output": {"class": "copy", "from": "bad"}})
    assert message in str(info.value)
