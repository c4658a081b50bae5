"""The manual's Theano-era layer classes and rec units on both backends, against independent NumPy versions.

The recurrent layers all output (B, T, 3), so one ``copy`` layer concatenates them all through a single forward
per backend; the time-axis layers are forwarded one by one (no scans, cheap to compile).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, CLS, MASK, SEQ_LENS, X, _backend, _both, _forward  # noqa: E402

from returnn_core.errors import NetworkError  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")
N = 3


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ln(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * gain + bias


def _over_time(step: Any, x: np.ndarray, state: tuple[np.ndarray, ...], direction: int = 1) -> np.ndarray:
    """Run ``step(x_t, *state) -> (y, state)`` over each seq's present frames; zeros on padding."""
    out = None
    for b, n in enumerate(SEQ_LENS):
        s = tuple(v.copy() for v in state)
        order = range(n) if direction == 1 else range(n - 1, -1, -1)
        for t in order:
            y, s = step(x[b, t], *s)
            if out is None:
                out = np.zeros((*x.shape[:2], y.shape[-1]), "f")
            out[b, t] = y
    return out


def _lstm(p: dict[str, np.ndarray], layer: str, x: np.ndarray, *, cells: int = N, direction: int = 1,
          ln: bool = False, scale: np.ndarray | None = None, act: Any = np.tanh) -> np.ndarray:
    """LSTM, gate blocks [cell in, input, forget, output], with the optional lstm2/ln_lstm/sharp_gates extras."""
    g = {k.split("/", 1)[1]: v for k, v in p.items() if k.startswith(layer + "/")}
    z_in = x @ g["W"]
    if ln:
        z_in = _ln(z_in, g["ln_in_gain"], g["ln_in_bias"])
    z_in = z_in + g["b"]
    n_out = g["W_out_proj"].shape[1] if "W_out_proj" in g else cells

    def step(z: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        rec = (h @ g["W_re_proj"] if "W_re_proj" in g else h) @ g["W_re"]
        if ln:
            rec = _ln(rec, g["ln_re_gain"], g["ln_re_bias"])
        ci, gi, gf, go = np.split(z + rec, 4)
        if scale is not None:
            gi, gf, go = gi * scale[0], gf * scale[1], go * scale[2]
        if "W_peep_i" in g:
            gi, gf = gi + c * g["W_peep_i"], gf + c * g["W_peep_f"]
        c = _sig(gf) * c + _sig(gi) * act(ci)
        if "W_peep_o" in g:
            go = go + c * g["W_peep_o"]
        h = act(_ln(c, g["ln_cell_gain"], g["ln_cell_bias"]) if ln else c) * _sig(go)
        if "W_out_proj" in g:
            h = h @ g["W_out_proj"]
        return h, (h, c)

    return _over_time(step, z_in, (np.zeros(n_out, "f"), np.zeros(cells, "f")), direction)


REC_NET = {
    "h": {"class": "hidden", "n_out": N, "from": ["data", "data:classes"]},
    "fw": {"class": "forward", "n_out": N, "activation": "tanh", "input_scale": 0.5},
    "l2": {"class": "lstm2", "n_out": N, "n_cells": 4, "n_proj": 2, "peepholes": True, "direction": -1,
           "grad_clip": 1.0},
    "lstm": {"class": "lstm", "n_out": N, "sharp_gates": "global", "reverse": True},
    "lopt": {"class": "lstm_opt", "n_out": N},
    "l2relu": {"class": "lstm2", "n_out": N, "activation": "relu"},
    "lsimple": {"class": "lstm_simple", "n_out": N, "sharpgates": "single"},
    "l3": {"class": "lstm3", "n_out": N, "grad_clip": 5.0},
    "ln": {"class": "ln_lstm", "n_out": N, "direction": -1},
    "native": {"class": "native_lstm", "n_out": N, "direction": -1},
    "rnn": {"class": "recurrent", "n_out": N, "projection": 2},
    "lin": {"class": "linear_recurrent", "n_out": N},
    "sru": {"class": "rec", "unit": "sru", "n_out": N},
    "lstmp": {"class": "rec", "unit": "lstmp", "n_out": N, "direction": -1},
    "vanilla": {"class": "rec", "unit": "vanilla", "n_out": N},
    "assoc": {"class": "associative_lstm", "n_out": 4, "n_copies": 2, "direction": -1},
    "generic": {"class": "generic_lstm", "n_out": N, "direction": -1,
                "sublayer": {"class": "hidden", "activation": "identity"},
                "out_sublayer": {"class": "hidden", "activation": "tanh"}},
}
REC_NET["output"] = {"class": "copy", "from": list(REC_NET)}


@pytest.fixture(scope="module")
def rec_outputs() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each layer's output (checked equal on both backends) and the parameters, randomised where they start
    at constants (gate scaling, layer-norm gains and biases, decays)."""
    backends = _both(REC_NET)
    params = backends[0].get_param_values()
    rng = np.random.RandomState(3)
    for key, value in params.items():
        if key.split("/")[1] in ("gate_scaling", "a", "b") or "/ln_" in key:
            params[key] = rng.uniform(0.5, 1.5, value.shape).astype("f")
    for backend in backends:
        backend.set_param_values(params)
    out, lens = _forward(backends, "output")
    np.testing.assert_array_equal(lens, SEQ_LENS)
    ends = np.cumsum([layer["n_out"] for layer in list(REC_NET.values())[:-1]])
    return {name: out[..., end - REC_NET[name]["n_out"] : end] for name, end in zip(REC_NET, ends)}, params


def test_hidden_and_forward(rec_outputs) -> None:
    outs, p = rec_outputs
    one_hot = np.eye(3, dtype="f")[CLS]
    expected = _sig(X @ p["h/W"][:4] + one_hot @ p["h/W"][4:] + p["h/b"])  # sigmoid is the Theano default
    np.testing.assert_allclose(outs["h"] * MASK[..., None], expected * MASK[..., None], rtol=1e-4, atol=1e-5)
    expected = np.tanh(0.5 * (X @ p["fw/W"] + p["fw/b"]))
    np.testing.assert_allclose(outs["fw"] * MASK[..., None], expected * MASK[..., None], rtol=1e-4, atol=1e-5)


def test_lstm_layer_classes(rec_outputs) -> None:
    outs, p = rec_outputs
    cases = {
        "l2": _lstm(p, "l2", X, cells=4, direction=-1),
        "lstm": _lstm(p, "lstm", X, direction=-1, scale=p["lstm/gate_scaling"]),
        "lopt": _lstm(p, "lopt", X),
        "l2relu": _lstm(p, "l2relu", X, act=lambda v: np.maximum(v, 0)),  # one name: cell in and out, not gates
        "lsimple": _lstm(p, "lsimple", X, scale=np.repeat(p["lsimple/gate_scaling"], 3, axis=0)),
        "l3": _lstm(p, "l3", X),
        "ln": _lstm(p, "ln", X, direction=-1, ln=True),
        "native": _lstm(p, "native", X, direction=-1),
        "lstmp": _lstm(p, "lstmp", X, direction=-1),
    }
    for name, expected in cases.items():
        np.testing.assert_allclose(outs[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_plain_recurrences(rec_outputs) -> None:
    outs, p = rec_outputs

    def rnn(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        h = np.tanh(x_t @ p["rnn/W"] + p["rnn/b"] + h @ p["rnn/W_proj"] @ p["rnn/W_re"])
        return h, (h,)

    def lin(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        h = _sig(p["lin/a"]) * h + x_t @ p["lin/W"] + p["lin/b"]
        return _sig(h), (h,)

    def sru(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        z_u, z_r, z_c = np.split(x_t @ p["sru/W"] + p["sru/b"], 3)
        r_u, r_r, r_c = np.split(h @ p["sru/W_re"], 3)
        u, r = _sig(z_u + r_u), _sig(z_r + r_r)
        h = u * h + (1 - u) * np.tanh(z_c + r * r_c)
        return h, (h,)

    def vanilla(x_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
        h = np.tanh(x_t @ p["vanilla/W"] + p["vanilla/b"] + h @ p["vanilla/W_re"])
        return h, (h,)

    zero = (np.zeros(N, "f"),)
    for name, step in {"rnn": rnn, "lin": lin, "sru": sru, "vanilla": vanilla}.items():
        np.testing.assert_allclose(outs[name], _over_time(step, X, zero), rtol=1e-4, atol=1e-5, err_msg=name)


def test_associative_lstm(rec_outputs) -> None:
    outs, p = rec_outputs
    n, half, copies = 4, 2, 2
    rng = np.random.RandomState(1234)
    perm = np.zeros((copies, n), int)
    for i in range(copies):
        perm[i, :half] = rng.permutation(half)
        perm[i, half:] = perm[i, :half] + half

    def cmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a_c, b_c = a[..., :half] + 1j * a[..., half:], b[..., :half] + 1j * b[..., half:]
        prod = a_c * b_c
        return np.concatenate([prod.real, prod.imag], -1)

    def step(x_t: np.ndarray, h: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        z = x_t @ p["assoc/W"] + p["assoc/b"] + h @ p["assoc/W_re"]
        g = _sig(z[: 3 * half])
        key_in, key_out = np.tanh(z[3 * half : 3 * half + n])[perm], np.tanh(z[3 * half + n : 3 * half + 2 * n])[perm]
        u = np.tanh(z[3 * half + 2 * n :])
        i_g, f_g, o_g = (np.tile(g[k * half : (k + 1) * half], 2) for k in range(3))
        s = cmul(key_in, u * i_g) + s * f_g
        h = np.tanh(cmul(key_out, s).mean(0)) * o_g
        return h, (h, s)

    expected = _over_time(step, X, (np.zeros(n, "f"), np.zeros((copies, n), "f")), direction=-1)
    np.testing.assert_allclose(outs["assoc"], expected, rtol=1e-4, atol=1e-5)


def test_generic_lstm(rec_outputs) -> None:
    outs, p = rec_outputs

    def step(x_t: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        z = np.concatenate([x_t, h]) @ p["generic/sublayer/W"] + p["generic/sublayer/b"]
        i_g, f_g, o_g = np.split(_sig(z[: 3 * N]), 3)
        c = np.tanh(z[3 * N :]) * i_g + c * f_g
        h = np.tanh(np.tanh(c @ p["generic/out_sublayer/W"] + p["generic/out_sublayer/b"])) * o_g
        return h, (h, c)

    expected = _over_time(step, X, (np.zeros(N, "f"), np.zeros(N, "f")), direction=-1)
    np.testing.assert_allclose(outs["generic"], expected, rtol=1e-4, atol=1e-5)


TIME_NET = {
    "fcz": {"class": "frame_concat_zero", "num_frames": 2, "left": False},
    "fcz_left": {"class": "frame_concat_zero", "num_frames": 1},
    "cut": {"class": "frame_cutoff", "num_frames": 1},
    "shift": {"class": "time_shift", "n_shift": 2},
    "up_f": {"class": "upsample", "factor": 2, "axis": 2},
    "chunk": {"class": "chunking", "chunk_size": 2},
    "chunk_avg": {"class": "chunking", "chunk_size": 3, "method": "average"},
    "up_t": {"class": "upsample", "factor": 2, "axis": "T", "time_like_last_source": True,
             "from": ["chunk", "data"]},
    "mean_b": {"class": "reduce", "mode": "mean", "axes": "B"},
    "win_valid": {"class": "window", "window_size": 3, "padding": "valid"},
    "log_sig": {"class": "activation", "activation": "log_sigmoid"},
    "two_sig": {"class": "activation", "activation": "2*sigmoid"},  # RETURNN's one-operator activation strings
    "one_minus_tanh": {"class": "activation", "activation": "1 - tanh"},
    "down_t": {"class": "downsample", "factor": 2, "axis": 0},
    "down_f": {"class": "downsample", "factor": 2, "axis": "F", "method": "max"},
    "rev": {"class": "reverse"},
    "zero_rows": {"class": "add_zero_rows", "row_index": 1, "number": 2},
    "rm_rows": {"class": "remove_rows", "row_index": 1, "number": 2},
    "bin": {"class": "bin_op", "op": "mul:tanh", "from": ["data", "rev"]},
    "one_hot": {"class": "idx_to_vec", "n_out": 3, "from": "data:classes"},
    "grad_half": {"class": "scale_grad", "scale": 0.5},
    "summed": {"class": "sum", "from": ["data", "rev", "data"]},
    "to_sig": {"class": "tanh_to_sigmoid", "from": ["data", "rev"]},
    "to_tanh": {"class": "sigmoid_to_tanh"},
    "win_theano": {"class": "window", "window": 3},
    "win_labels": {"class": "window", "window": 3, "from": "data:classes"},
    "embed_window": {"class": "hidden", "n_out": 2, "sparse_window": 3, "from": "win_labels"},
    "output": {"class": "copy"},
}


def _per_seq(frames: Any, width: int, lens: list[int]) -> np.ndarray:
    """Pad per-seq frame arrays ``frames(b, n)`` to one batch of max(lens) frames."""
    out = np.zeros((len(lens), max(lens), width), "f")
    for b, n in enumerate(SEQ_LENS):
        seq = frames(b, n)
        out[b, : len(seq)] = seq
    return out


def test_time_axis_layers() -> None:
    backends = _both(TIME_NET)
    x = X * MASK[..., None]
    lens = list(SEQ_LENS)
    chunks = [np.concatenate([x[b, :n], np.zeros((n % 2, 4), "f")]).reshape(-1, 8) for b, n in enumerate(lens)]
    counts = MASK.sum(0)[:, None]
    pad_x = np.pad(x, [(0, 0), (1, 1), (0, 0)])
    pad_cls = np.pad(CLS * MASK.astype("int32"), [(0, 0), (1, 1)])
    p = backends[0].get_param_values()
    w_embed = p["embed_window/W"]
    rev = _per_seq(lambda b, n: x[b, :n][::-1], 4, lens)
    expected = {
        "fcz": (_per_seq(lambda b, n: x[b, :n], 4, [n + 2 for n in lens]), [n + 2 for n in lens]),
        "fcz_left": (_per_seq(lambda b, n: np.concatenate([np.zeros((1, 4), "f"), x[b, :n]]), 4,
                              [n + 1 for n in lens]), [n + 1 for n in lens]),
        "cut": (_per_seq(lambda b, n: x[b, 1:n], 4, [n - 1 for n in lens])[:, : x.shape[1] - 1],
                [max(n - 1, 0) for n in lens]),
        "shift": (np.concatenate([np.zeros((3, 2, 4), "f"), x[:, :-2]], 1) * MASK[..., None], lens),
        "up_f": (np.repeat(x, 2, axis=-1), lens),
        "chunk": (_per_seq(lambda b, n: chunks[b], 8, [-(-n // 2) for n in lens]), [-(-n // 2) for n in lens]),
        "chunk_avg": (_per_seq(lambda b, n: [x[b, i : min(i + 3, n)].mean(0) for i in range(0, n, 3)], 4,
                               [-(-n // 3) for n in lens]), [-(-n // 3) for n in lens]),
        "mean_b": (np.broadcast_to(x.sum(0) / np.maximum(counts, 1), x.shape), [max(lens)] * 3),
        "win_valid": (np.stack([x[:, i : x.shape[1] - 2 + i] for i in range(3)], 2)
                      * (np.arange(x.shape[1] - 2) < np.maximum(np.array(lens) - 2, 0)[:, None])[..., None, None],
                      [max(n - 2, 0) for n in lens]),
        "log_sig": (np.log(_sig(X)) * MASK[..., None], lens),
        "two_sig": (2 * _sig(X) * MASK[..., None], lens),
        "one_minus_tanh": ((1 - np.tanh(X)) * MASK[..., None], lens),
        "down_t": (_per_seq(lambda b, n: x[b, : n // 2 * 2].reshape(-1, 2, 4).mean(1), 4, [n // 2 for n in lens]),
                   [n // 2 for n in lens]),
        "down_f": (x.reshape(*x.shape[:2], 2, 2).max(-1), lens),
        "rev": (rev, lens),
        "zero_rows": (np.concatenate([x[..., :1], np.zeros((*x.shape[:2], 2), "f"), x[..., 1:]], -1), lens),
        "rm_rows": (np.concatenate([x[..., :1], x[..., 3:]], -1), lens),
        "bin": (np.tanh(x * rev), lens),
        "one_hot": (np.eye(3, dtype="f")[CLS], lens),
        "grad_half": (x, lens),
        "summed": (2 * x + rev, lens),
        "to_sig": ((np.concatenate([x, rev], -1) + 1) / 2, lens),
        "to_tanh": (2 * x - 1, lens),
        "win_theano": (np.concatenate([pad_x[:, i : i + x.shape[1]] for i in range(3)], -1), lens),
        "embed_window": (_sig(np.concatenate([w_embed[pad_cls[:, i : i + x.shape[1]]] for i in range(3)], -1)
                              + np.tile(p["embed_window/b"], 3)), lens),
    }
    for name, (want, want_lens) in expected.items():
        got, got_lens = _forward(backends, name)
        np.testing.assert_array_equal(got_lens, want_lens, err_msg=name)
        got = got[:, : want.shape[1]]  # padding frames past the longest seq may differ in number
        valid = (np.arange(got.shape[1])[None, :] < np.asarray(want_lens)[:, None]).reshape(
            got.shape[:2] + (1,) * (got.ndim - 2))
        np.testing.assert_allclose(got * valid, want * valid, rtol=1e-5, atol=1e-6, err_msg=name)
    up_t, up_lens = _forward(backends, "up_t")
    np.testing.assert_array_equal(up_lens, lens)
    for b, n in enumerate(lens):
        np.testing.assert_allclose(up_t[b, :n], np.repeat(chunks[b], 2, axis=0)[:n], rtol=1e-6, err_msg="up_t")


@pytest.mark.parametrize(("layer", "message"), [
    ({"class": "lstm2", "n_out": 2, "truncation": 5}, "truncated backpropagation"),
    ({"class": "lstm", "n_out": 2, "activation": "relu"}, "use class 'lstm2'"),
    ({"class": "lstm", "n_out": 2, "sharp_gates": "sometimes"}, "sharp_gates='sometimes'"),
    ({"class": "lstm2", "n_out": 2, "activation": "tanh,relu,sigmoid,tanh"}, "comma-separated"),
    ({"class": "hidden", "n_out": 2, "sparse_window": 2}, "needs sparse sources"),
    ({"class": "recurrent", "n_out": 2, "sampling": 2}, "sampling=2"),
    ({"class": "window", "window": 2, "window_size": 2}, "either window_size or the Theano option window"),
])
def test_bad_options_name_the_layer(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(NetworkError, match="'bad'") as info:
        _backend("tf", {"bad": layer, "output": {"class": "copy", "from": "bad"}})
    assert message in str(info.value)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_softmax_theano_output_options(tmp_path) -> None:
    log_prior = np.log(np.array([0.2, 0.3, 0.5], "f"))
    (tmp_path / "prior.txt").write_text(" ".join(map(str, log_prior)))
    net = {
        "smooth": {"class": "softmax", "n_out": 3, "softmax_smoothing": 0.5, "grad_clip_z": 1.0},
        "sig": {"class": "softmax", "n_out": 3, "sigmoid_outputs": True},
        "running": {"class": "softmax", "n_out": 3, "compute_priors": True},
        "file_prior": {"class": "softmax", "n_out": 3, "log_prior": str(tmp_path / "prior.txt"),
                       "subtract_prior_from_output": True},
        "output": {"class": "softmax", "loss": "ce", "compute_priors": True, "compute_priors_exp_average": 0.5,
                   "subtract_prior_from_output": True, "prior_scale": 0.5},
    }
    backends = _both(net, train=True)
    for backend in backends:
        for _ in range(2):
            backend.train_step(BATCH, 0.0)  # updates only the priors
    p = backends[0].get_param_values()
    for key in ("output/priors", "running/priors"):
        np.testing.assert_allclose(backends[1].get_param_values()[key], p[key], rtol=1e-5, err_msg=key)
    valid = MASK[..., None] > 0
    probs = _softmax(X @ p["output/W"] + p["output/b"])
    mean = probs[MASK > 0].mean(0)
    priors = 0.5 * (0.5 / 3 + 0.5 * mean) + 0.5 * mean  # two exponential-average steps from 1/3
    np.testing.assert_allclose(p["output/priors"], priors, rtol=1e-5)
    # the running mean (no compute_priors_exp_average) of two steps on one batch is that batch's mean
    running = _softmax(X @ p["running/W"] + p["running/b"])[MASK > 0].mean(0)
    np.testing.assert_allclose(p["running/priors"], running, rtol=1e-5)
    expected = {
        "smooth": _softmax(0.5 * (X @ p["smooth/W"] + p["smooth/b"])),
        "sig": _sig(X @ p["sig/W"] + p["sig/b"]),
        "file_prior": _softmax(X @ p["file_prior/W"] + p["file_prior/b"]) / np.exp(log_prior),
        "output": probs / priors**0.5,
    }
    for name, want in expected.items():
        got, _ = _forward(backends, name)
        np.testing.assert_allclose(np.where(valid, got, 0), np.where(valid, want, 0), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_unsupported_theano_output_option_is_named() -> None:
    with pytest.raises(NetworkError, match=r"'output'.*time_limit=5"):
        _backend("tf", {"output": {"class": "softmax", "n_out": 3, "time_limit": 5}})


def test_clip_gradient_on_both_backends() -> None:
    """The ``grad_clip`` primitive: identity forward, the gradient of ``sum(5 x**2)`` (10 x) clipped to [-1, 1]."""
    import tensorflow as tf
    from returnn_tf.ops import TF_OPS
    from returnn_theano._pt import pt, pytensor
    from returnn_theano.ops import PyTensorOps

    value = np.array([-0.3, 0.02, 0.5], "f")
    want = np.clip(10 * value, -1, 1)
    x_tf = tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        y_tf = TF_OPS.clip_gradient(x_tf, -1.0, 1.0)
        loss = tf.reduce_sum(5.0 * y_tf * y_tf)
    np.testing.assert_allclose(y_tf.numpy(), value)
    np.testing.assert_allclose(tape.gradient(loss, x_tf).numpy(), want, rtol=1e-6)
    x_pt = pt.vector("x", dtype="float32")
    y_pt = PyTensorOps().clip_gradient(x_pt, -1.0, 1.0)
    fn = pytensor.function([x_pt], [y_pt, pytensor.grad(pt.sum(5.0 * y_pt * y_pt), x_pt)])
    out, grad = fn(value)
    np.testing.assert_allclose(out, value)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
