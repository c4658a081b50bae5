"""The Theano-era ``rec`` layer's decoder options (RETURNN's RecurrentUnitLayer: encoder, n_dec, base with the
attention_list recurrent transform, LM feedback, lstmr) on both backends: against NumPy, and a 2017-style
encoder-attention-decoder that learns a copy task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")
pytest.importorskip("returnn_theano")

from test_frontend_layers import BATCH, CLS, EXTERN, SEQ_LENS, X, _backend, _both, one_batch, outputs_on_both  # noqa: E402

from returnn_core.datasets import BatchData, DatasetSeq, DataSpec  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402

pytestmark = pytest.mark.usefixtures("fast_pytensor_compile")

NET = {
    "enc_fw": {"class": "rec", "unit": "lstm", "n_out": 3},
    "enc_bw": {"class": "rec", "unit": "lstm", "n_out": 2, "direction": -1},
    # the decoder of a 2017 config: no sources, states from the encoders, attention over them, length of the target
    "dec": {"class": "rec", "unit": "lstmp", "n_out": 5, "from": [], "encoder": ["enc_fw", "enc_bw"],
            "base": ["enc_fw", "enc_bw"], "attention": "default", "recurrent_transform": "attention_list",
            "attention_template": 4, "target": "classes"},
    # template = base dim (the base is its own template), dot distance, sigmoid norm, two glimpses, soft LM feedback
    "dec_lm": {"class": "rec", "unit": "lstmc", "n_out": 5, "base": "enc_fw", "recurrent_transform": "attention_list",
               "attention_template": 3, "attention_distance": "dot", "attention_norm": "sigmoid",
               "attention_glimpse": 2, "attention_lm": "soft", "target": "classes"},
    # a GRU initialised by the encoders (n_out their sum), 1.5 steps per encoder frame
    "dec_gru": {"class": "rec", "unit": "gru", "from": [], "encoder": ["enc_fw", "enc_bw"], "n_dec": 1.5},
    # no recurrent matrix, 4 steps, the output itself as query (template = n_out), l1, linear norm, the best frame
    "dec_r": {"class": "rec", "unit": "lstmr", "n_out": 2, "from": [], "base": "enc_bw", "n_dec": 4,
              "recurrent_transform": "attention_list", "attention_template": 2, "attention_distance": "l1",
              "attention_norm": "linear", "attention_nbest": 1, "attention_sharpening": 2.0},
    # the previous target label fed back (force_lm: also outside training), backwards: the label after the frame
    "dec_fed": {"class": "rec", "unit": "lstm", "n_out": 2, "from": [], "direction": -1, "lm": True,
                "force_lm": True, "droplm": 0.0, "attention_lm": "hard", "target": "classes"},
}


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _lstm_step(z: np.ndarray, h: np.ndarray, c: np.ndarray, w_re: np.ndarray | None) -> tuple[np.ndarray, ...]:
    n = h.shape[-1]
    if w_re is not None:
        z = z + h @ w_re
    ci, i, f, o = (z[..., k * n:(k + 1) * n] for k in range(4))
    c = _sig(f) * c + _sig(i) * np.tanh(ci)
    return _sig(o) * np.tanh(c), c


def _gru_step(z: np.ndarray, h: np.ndarray, w_re: np.ndarray) -> np.ndarray:
    n = h.shape[-1]
    ru = _sig(z[:2 * n] + h @ w_re[:, :2 * n])
    cand = np.tanh(z[2 * n:] + (ru[:n] * h) @ w_re[:, 2 * n:])
    return ru[n:] * h + (1 - ru[n:]) * cand


def _encoder(p: dict[str, np.ndarray], name: str, x: np.ndarray, backwards: bool) -> tuple[np.ndarray, ...]:
    """One seq through an encoder LSTM: outputs (in time order) and final (h, c)."""
    n = p[f"{name}/W_re"].shape[0]
    h = c = np.zeros(n)
    ys = []
    for x_t in (x[::-1] if backwards else x):
        h, c = _lstm_step(x_t @ p[f"{name}/W"] + p[f"{name}/b"], h, c, p[f"{name}/W_re"])
        ys.append(h)
    ys = np.array(ys)
    return (ys[::-1] if backwards else ys), h, c


DIST = {"l2": lambda c, h: np.sqrt(((c - h) ** 2).sum(-1)), "dot": lambda c, h: (c * h).sum(-1),
        "l1": lambda c, h: np.abs(c - h).sum(-1)}
NORM = {"exp": lambda d: _softmax(-d), "sigmoid": lambda d: 1 - np.tanh(d) ** 2, "linear": lambda d: 1 - d / d.sum()}


def _attend(p: dict[str, np.ndarray], layer: str, i: int, y_p: np.ndarray, base: np.ndarray,
            opts: dict[str, Any]) -> np.ndarray:
    """AttentionList's part of the gate input for one base of one seq."""
    get = lambda key: p[f"{layer}/{key}_{i}"]  # noqa: E731
    n_tmp = opts.get("attention_template", 128)
    if base.shape[1] == n_tmp:
        templ = base
    else:
        templ = np.tanh(base @ get("W_att_bs") + get("b_att_bs"))
        templ = templ - templ.mean(0)
    query = y_p if n_tmp == p[f"{layer}/b"].shape[0] // 4 else y_p @ get("W_att_re") + get("b_att_re")
    glimpse = 0.0
    for _ in range(opts.get("attention_glimpse", 1)):
        dist = DIST[opts.get("attention_distance", "l2")](templ, np.tanh(query + glimpse))
        w = NORM[opts.get("attention_norm", "exp")](dist * opts.get("attention_sharpening", 1.0))
        glimpse = w @ templ
    if opts.get("attention_nbest") == 1:
        w = np.eye(len(w))[w.argmax()]
    return (w @ base) @ get("W_att_in") + get("b_att_in")


@pytest.fixture(scope="module")
def outputs() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """Each layer's output and lengths (the same on both backends) and the parameters."""
    return outputs_on_both(NET, EXTERN, BATCH)


def test_decoders_against_numpy(outputs) -> None:
    outs, p = outputs
    np.testing.assert_array_equal(outs["dec"][1], SEQ_LENS)
    np.testing.assert_array_equal(outs["dec_gru"][1], np.ceil(SEQ_LENS * 1.5))
    np.testing.assert_array_equal(outs["dec_r"][1], [4, 4, 4])
    assert "dec/W" not in p and "dec_r/W_re" not in p and "dec_lm/W_att_bs_0" not in p
    for b, n in enumerate(SEQ_LENS):
        fw, h_fw, c_fw = _encoder(p, "enc_fw", X[b, :n], False)
        bw, h_bw, c_bw = _encoder(p, "enc_bw", X[b, :n], True)
        np.testing.assert_allclose(outs["enc_bw"][0][b, :n], bw, rtol=1e-4, atol=1e-5)
        # dec: bias only, encoders' final states, attention over both
        h, c = np.concatenate([h_fw, h_bw]), np.concatenate([c_fw, c_bw])
        for t in range(n):
            z = p["dec/b"] + sum(_attend(p, "dec", i, h, base, NET["dec"]) for i, base in enumerate((fw, bw)))
            h, c = _lstm_step(z, h, c, p["dec/W_re"])
            np.testing.assert_allclose(outs["dec"][0][b, t], h, rtol=1e-4, atol=1e-5, err_msg=f"dec {b} {t}")
        assert not outs["dec"][0][b, n:].any()
        # dec_lm: the data as input, zero states, attention plus the predicted label's soft embedding
        h = c = np.zeros(5)
        for t in range(n):
            probs = _softmax(h @ p["dec_lm/W_lm_in"] + p["dec_lm/b_lm_in"])
            z = (X[b, t] @ p["dec_lm/W"] + p["dec_lm/b"] + _attend(p, "dec_lm", 0, h, fw, NET["dec_lm"])
                 + probs @ p["dec_lm/W_lm_out"])
            h, c = _lstm_step(z, h, c, p["dec_lm/W_re"])
            np.testing.assert_allclose(outs["dec_lm"][0][b, t], h, rtol=1e-4, atol=1e-5, err_msg=f"dec_lm {b} {t}")
        # dec_gru: 1.5 steps per frame from the concatenated final states
        h = np.concatenate([h_fw, h_bw])
        for t in range(int(np.ceil(n * 1.5))):
            h = _gru_step(p["dec_gru/b"], h, p["dec_gru/W_re"])
            np.testing.assert_allclose(outs["dec_gru"][0][b, t], h, rtol=1e-4, atol=1e-5, err_msg=f"gru {b} {t}")
        # dec_r: only the attention carries the output back
        h = c = np.zeros(2)
        for t in range(4):
            h, c = _lstm_step(p["dec_r/b"] + _attend(p, "dec_r", 0, h, bw, NET["dec_r"]), h, c, None)
            np.testing.assert_allclose(outs["dec_r"][0][b, t], h, rtol=1e-4, atol=1e-5, err_msg=f"lstmr {b} {t}")
        # dec_fed: backwards over the target's frames, fed the embedding of the label after each (class 0 first)
        h = c = np.zeros(2)
        for t in reversed(range(n)):
            fed = p["dec_fed/W_lm_out"][CLS[b, t + 1] if t + 1 < n else 0]
            h, c = _lstm_step(p["dec_fed/b"] + fed, h, c, p["dec_fed/W_re"])
            np.testing.assert_allclose(outs["dec_fed"][0][b, t], h, rtol=1e-4, atol=1e-5, err_msg=f"fed {b} {t}")


@pytest.mark.parametrize(("layer", "needle"), [
    ({"recurrent_transform": "attention_tree", "base": "enc"}, "attention_tree"),
    ({"recurrent_transform": "attention_list"}, "needs 'base'"),
    ({"recurrent_transform": "attention_list", "base": "enc", "attention_beam": 3}, "attention_beam"),
    ({"recurrent_transform": "attention_list", "base": "enc", "attention_norm": "lstm"}, "attention_norm"),
    ({"recurrent_transform": "attention_list", "base": "enc", "unit": "gru"}, "needs an LSTM unit"),
    ({"unit": "lstmr"}, "needs a recurrent_transform"),
    ({"n_dec": -1, "encoder": "enc"}, "n_dec"),
    ({"truncation": 5}, "truncation"),
])
def test_unsupported_options_are_named(layer: dict[str, Any], needle: str) -> None:
    net = {"enc": {"class": "rec", "unit": "lstm", "n_out": 3},
           "output": {"class": "rec", "unit": "lstm", "n_out": 3, "is_output_layer": True, **layer}}
    with pytest.raises(NetworkError, match=needle):
        _backend("tf", net)


V = 4  # labels of the copy task; 0 also starts the fed-back label sequence
COPY_EXTERN = {"data": DataSpec(V, sparse=True), "classes": DataSpec(V, sparse=True)}
COPY_NET = {
    "encoder_fw": {"class": "rec", "unit": "lstm", "n_out": 8},
    "encoder_bw": {"class": "rec", "unit": "lstm", "n_out": 8, "direction": -1},
    # no encoder states: the input reaches the decoder only through the attention (without it the loss stays
    # above 0.7 here: only the fed-back labels are left to go on)
    "decoder": {"class": "rec", "unit": "lstmp", "n_out": 16, "from": [], "base": ["encoder_fw", "encoder_bw"],
                "attention": "default", "recurrent_transform": "attention_list", "attention_template": 6, "lm": True, "droplm": 0.0, "target": "classes"},
    "output": {"class": "softmax", "loss": "ce", "from": ["decoder"], "target": "classes"},
}


def _copy_batch() -> BatchData:
    rng = np.random.RandomState(3)
    seqs = []
    for i in range(12):
        labels = rng.randint(1, V, rng.randint(3, 7)).astype("int32")
        seqs.append(DatasetSeq(i, f"copy-{i}", {"data": labels, "classes": labels.copy()}))
    return one_batch(seqs, COPY_EXTERN)


def test_encoder_attention_decoder_learns_to_copy() -> None:
    batch = _copy_batch()
    backends = _both(COPY_NET, train=True, extern=COPY_EXTERN, optimizer={"class": "adam"})
    start = backends[0].get_param_values()
    curves = []
    for be in backends:
        losses = [be.train_step(batch, 0.02) for _ in range(60)]
        curves.append([r.losses["output"] / r.frames["output"] for r in losses])
    tf_curve, th_curve = np.array(curves)
    np.testing.assert_allclose(th_curve[:3], tf_curve[:3], rtol=1e-3, err_msg="theano vs tf, first steps")
    for curve in (tf_curve, th_curve):
        # from chance (ln 3 over the labels 1..3) to well below what the label counts alone allow
        assert curve[0] > 1.0 and curve[-1] < 0.3 * curve[0], curve
    for be in backends:  # the attention's and the LM's parameters are trained too
        trained = be.get_param_values()
        for key in ("decoder/W_att_in_0", "decoder/W_att_bs_1", "decoder/W_att_re_0", "decoder/W_lm_out"):
            assert not np.allclose(trained[key], start[key]), key


def test_encoder_and_base_lists_are_built_first() -> None:
    desc = resolve_network({"output": {"class": "rec", "unit": "lstm", "n_out": 5, "from": [], "n_dec": 3,
                                       "encoder": ["fw", "bw"], "base": ["bw", "fw"]},
                            "fw": {"class": "rec", "unit": "lstm", "n_out": 3},
                            "bw": {"class": "rec", "unit": "lstm", "n_out": 2, "direction": -1}}, ["data"])
    assert list(desc.layers)[-1] == "output"


def test_droplm_mixes_fed_and_predicted_labels_in_training() -> None:
    """With droplm between 0 and 1 some frames take the model's own prediction, so W_lm_in (only on that path)
    is trained; with droplm 0 every frame is fed the target and W_lm_in stays."""
    batch = _copy_batch()
    for droplm, changes in ((0.5, True), (0.0, False)):
        net = {"enc": {"class": "rec", "unit": "lstm", "n_out": 4},
               "dec": {"class": "rec", "unit": "lstm", "n_out": 4, "from": [], "encoder": "enc", "lm": True,
                       "droplm": droplm, "target": "classes"},
               # zero start state against the zero padding frames of a base that is its own template: distance 0
               "att": {"class": "rec", "unit": "lstm", "n_out": 4, "from": [], "base": "enc",
                       "recurrent_transform": "attention_list", "attention_template": 4, "target": "classes"},
               "output": {"class": "softmax", "loss": "ce", "from": ["dec", "att"], "target": "classes"}}
        backends = _both(net, train=True, extern=COPY_EXTERN, optimizer={"class": "sgd"}) if changes else [
            _backend("tf", net, train=True, extern=COPY_EXTERN, optimizer={"class": "sgd"})]  # one is enough here
        for be in backends:
            before = be.get_param_values()["dec/W_lm_in"]
            result = be.train_step(batch, 0.5)
            assert np.isfinite(result.losses["output"])
            assert all(np.isfinite(v).all() for v in be.get_param_values().values()), type(be).__name__
            assert np.allclose(be.get_param_values()["dec/W_lm_in"], before) != changes, (type(be).__name__, droplm)
