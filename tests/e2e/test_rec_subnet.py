"""``rec`` with a sub-network unit on the tf backend: the explicit-LSTM demo against the built-in unit, moving layers
out of the loop, teacher forcing, beam search on a hand-set model, errors, and the search task."""

from __future__ import annotations

import ast
import itertools
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("returnn_tf")

from returnn_core.config import Config  # noqa: E402
from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches, init_dataset  # noqa: E402
from returnn_core.engine.driver import Engine  # noqa: E402
from returnn_core.errors import NetworkError  # noqa: E402
from returnn_core.log import Log  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402
from returnn_core.plugin import get_plugin_manager  # noqa: E402

EXTERN = {"data": DataSpec(4), "classes": DataSpec(3, sparse=True)}


def _backend(net: dict, *, extern: dict | None = None, config: Config | None = None, search: bool = False,
             train: bool = True, name: str = "tf") -> Any:
    manager = get_plugin_manager()
    backend = manager.backends.get(name)(config or Config({"optimizer": {"class": "adam"}}), manager, Log(0))
    ext = ExternData(extern or EXTERN)
    desc = resolve_network(net, list(ext))
    desc.search_flag = search
    backend.build(desc, ext, train=train and not search)
    return backend


def _batches(num: int = 6, seed: int = 3) -> list:
    rng = np.random.RandomState(seed)
    seqs = []
    for i in range(num):
        n = rng.randint(3, 8)
        seqs.append(DatasetSeq(i, f"seq-{i}", {"data": rng.randn(n, 4).astype("f"),
                                               "classes": rng.randint(0, 3, n).astype("int32")}))
    ext = ExternData(EXTERN)
    return [b.to_data(ext) for b in generate_batches(seqs, batch_size=100, max_seqs=3)]


def test_explicit_lstm_demo_matches_the_builtin_lstm_step_by_step(repo_root: pathlib.Path) -> None:
    config = Config()
    config.load_file(str(repo_root / "demos" / "demo-rec-explicit-lstm.config"))
    dataset = init_dataset({"class": "Task12AXDataset", "num_seqs": 6}, manager=get_plugin_manager())
    ext = ExternData.from_config(config, dataset)
    explicit = _backend(config.typed_value("network"), extern=ext, config=config)
    builtin_net = {"fw0": {"class": "rec", "unit": "lstm", "n_out": 10},
                   "output": {"class": "softmax", "loss": "ce", "from": ["fw0"]}}
    builtin = _backend(builtin_net, extern=ext, config=config)
    params = builtin.get_param_values()
    explicit.set_param_values({
        "fw0/rec/gates/W": np.concatenate([params["fw0/W"], params["fw0/W_re"]], axis=0),
        "fw0/rec/gates/b": params["fw0/b"], "output/W": params["output/W"], "output/b": params["output/b"]})
    dataset.init_seq_order(1)
    batches = [b.to_data(ext) for b in dataset.generate_batches(chunking="20:20", batch_size=100, max_seqs=3)]
    for step, batch in enumerate(batches[:3]):
        a, b = explicit.train_step(batch, 0.01), builtin.train_step(batch, 0.01)
        assert a.frames == b.frames
        np.testing.assert_allclose(a.losses["output"], b.losses["output"], rtol=1e-4, err_msg=f"step {step}")
        assert a.errors == b.errors


MOVABLE = {"output": {"class": "rec", "from": ["data"], "unit": {
    "pre": {"class": "linear", "activation": "tanh", "n_out": 6, "from": ["data:source"]},
    "pre2": {"class": "linear", "activation": "tanh", "n_out": 6, "from": ["pre"]},
    "s": {"class": "rnn_cell", "unit": "gru", "n_out": 5, "from": ["pre2", "prev:output"]},
    "output": {"class": "softmax", "from": ["s", "pre"], "n_out": 3, "loss": "ce", "target": "classes"},
}}}


def test_moving_layers_out_of_the_loop_keeps_the_outputs() -> None:
    off = {"output": dict(MOVABLE["output"], optimize_move_layers_out=False)}
    moved, kept = _backend(MOVABLE), _backend(off)
    assert moved.net.layers["output"].subnet.loop_dependent == {"s", "output"}
    assert kept.net.layers["output"].subnet.loop_dependent == {"pre", "pre2", "s", "output"}
    kept.set_param_values(moved.get_param_values())
    batches = _batches()
    for batch in batches:
        out_a, lens_a = moved.forward_step(batch, "output")
        out_b, lens_b = kept.forward_step(batch, "output")
        np.testing.assert_array_equal(lens_a, lens_b)
        np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(moved.train_step(batch, 0.01).losses["output/output"],
                                   kept.train_step(batch, 0.01).losses["output/output"], rtol=1e-5)
    timings = {}
    for name, backend in (("moved", moved), ("in loop", kept)):
        backend.eval_step(batches[0])
        t0 = time.perf_counter()
        for _ in range(5):
            for batch in batches:
                backend.eval_step(batch)
        timings[name] = time.perf_counter() - t0
    print(f"eval steps with layers moved out: {timings['moved']:.3f}s, all in the loop: {timings['in loop']:.3f}s")


def test_rnn_cell_and_a_rec_sub_layer_step_like_the_lstm_over_the_sequence() -> None:
    def loop(cls: str) -> dict:
        return {"output": {"class": "rec", "from": ["data"], "unit": {
            "s": {"class": cls, "unit": "lstm", "n_out": 4, "from": ["data:source"]},
            "output": {"class": "softmax", "from": ["s"], "n_out": 3, "loss": "ce", "target": "classes"}}}}

    plain = _backend({"s": {"class": "rec", "unit": "lstm", "n_out": 4},
                      "output": {"class": "softmax", "from": ["s"], "loss": "ce"}})
    values = plain.get_param_values()
    loops = [_backend(loop("rnn_cell")), _backend(loop("rec"))]
    for backend in loops:
        backend.set_param_values({f"output/rec/{k}": v for k, v in values.items()})
    for batch in _batches():
        want, lens = plain.forward_step(batch, "output")
        for backend in loops:
            got, got_lens = backend.forward_step(batch, "output")
            np.testing.assert_array_equal(got_lens, lens)
            for row, n in enumerate(lens):
                np.testing.assert_allclose(got[row, :n], want[row, :n], rtol=1e-5, atol=1e-6)


def test_choice_feeds_the_target_in_training() -> None:
    net = {"output": {"class": "rec", "from": [], "target": "classes", "unit": {
        "prob": {"class": "softmax", "from": ["prev:output"], "n_out": 3},
        "output": {"class": "choice", "beam_size": 2, "target": "classes", "from": ["prob"]},
        # one-hot of the choice, scaled: ce is tiny exactly where the choice is the target label
        "check": {"class": "linear", "activation": "softmax", "n_out": 3, "from": ["output"], "loss": "ce",
                  "target": "classes"},
    }}}
    backend = _backend(net)
    backend.set_param_values({"output/rec/check/W": 10 * np.eye(3, dtype="f"),
                              "output/rec/check/b": np.zeros(3, "f")})
    per_frame = -np.log(np.exp(10) / (np.exp(10) + 2))
    for batch in _batches():
        res = backend.eval_step(batch)
        frames = int(batch.seq_lens["classes"].sum())
        assert res.frames["output/check"] == frames
        assert res.errors["output/check"] == 0
        np.testing.assert_allclose(res.losses["output/check"], frames * per_frame, rtol=1e-3)


#: log p(next label | previous label) of the hand-set decoder; label 0 ends a hypothesis and starts the first step
TRANSITIONS = np.log(np.array([[0.05, 0.55, 0.40],
                               [0.30, 0.36, 0.34],
                               [0.95, 0.025, 0.025]], dtype="f"))
MAX_LEN = 3


def _search_net(beam: int) -> dict:
    return {"enc": {"class": "copy", "from": ["data"]},
            "output": {"class": "rec", "from": [], "max_seq_len": MAX_LEN, "unit": {
                "prob": {"class": "linear", "activation": "softmax", "n_out": 3, "from": ["prev:output"]},
                "output": {"class": "choice", "beam_size": beam, "target": "classes", "from": ["prob"]},
                "end": {"class": "compare", "kind": "equal", "value": 0, "from": ["output"]},
            }},
            "decision": {"class": "decide", "from": ["output"]}}


def _exhaustive_best() -> list[int]:
    """The hypothesis with the best score per label among all that end with 0 or reach the maximum length."""
    best, best_score = None, -np.inf
    for n in range(1, MAX_LEN + 1):
        for hyp in itertools.product(range(3), repeat=n):
            if 0 in hyp[:-1] or (n < MAX_LEN and hyp[-1] != 0):
                continue
            score = sum(TRANSITIONS[prev, lab] for prev, lab in zip((0, *hyp[:-1]), hyp)) / n
            if score > best_score:
                best, best_score = list(hyp), score
    return best


def _greedy() -> list[int]:
    hyp, prev = [], 0
    while len(hyp) < MAX_LEN:
        prev = int(np.argmax(TRANSITIONS[prev]))
        hyp.append(prev)
        if prev == 0:
            break
    return hyp


@pytest.mark.parametrize(("beam", "name"), [(1, "tf"), (3, "tf"), (3, "theano")])
def test_beam_search_finds_the_known_best_path(beam: int, name: str, request: pytest.FixtureRequest) -> None:
    if name == "theano":
        request.getfixturevalue("fast_pytensor_compile")
    backend = _backend(_search_net(beam), search=True, name=name)
    backend.set_param_values({"output/rec/prob/W": TRANSITIONS, "output/rec/prob/b": np.zeros(3, "f")})
    expected = _exhaustive_best() if beam == 3 else _greedy()
    assert _exhaustive_best() != _greedy()  # the case tells beam search from greedy decoding
    for batch in _batches():
        labels, lens = backend.forward_step(batch, "decision")
        assert labels.shape[0] == batch.num_seqs
        for row, n in zip(labels, lens):
            assert list(row[:n]) == expected


@pytest.mark.parametrize(("unit", "message"), [
    ({"s": {"class": "linear", "n_out": 3, "from": ["prev:nope"]}, "output": {"class": "copy", "from": ["s"]}},
     "layer 'output/s': 'from' names 'prev:nope', but the loop of rec layer 'output' has no layer 'nope'"),
    ({"a": {"class": "linear", "n_out": 3, "from": ["b"]}, "b": {"class": "linear", "n_out": 3, "from": ["a"]},
      "output": {"class": "copy", "from": ["a"]}},
     "layer 'output' (rec unit): layer 'a' depends on itself: a -> b -> a (only 'prev:' references may form"),
])
def test_bad_sub_networks_name_the_layer_and_the_loop(unit: dict, message: str) -> None:
    with pytest.raises(NetworkError) as info:
        _backend({"output": {"class": "rec", "from": ["data"], "unit": unit}})
    assert message in str(info.value)


def test_search_without_an_end_layer_runs_max_seq_len_steps() -> None:
    net = _search_net(3)
    del net["output"]["unit"]["end"]
    backend = _backend(net, search=True)
    backend.set_param_values({"output/rec/prob/W": TRANSITIONS, "output/rec/prob/b": np.zeros(3, "f")})
    paths = itertools.product(range(3), repeat=MAX_LEN)
    best = max(paths, key=lambda h: sum(TRANSITIONS[p, lab] for p, lab in zip((0, *h[:-1]), h)))
    for batch in _batches(num=3):
        labels, lens = backend.forward_step(batch, "decision")
        assert list(lens) == [MAX_LEN] * batch.num_seqs
        assert all(list(row) == list(best) for row in labels)
    del net["output"]["max_seq_len"]
    with pytest.raises(NetworkError, match="layer 'output': the loop does not know its length: add an 'end' layer"):
        _backend(net, search=True)


def trained_search_config(tmp_path: pathlib.Path, beam_size: int) -> dict[str, Any]:
    """The config of a small encoder + searched decoder trained for one epoch on two tagged seqs."""
    seqs = [{"data": np.array([1, 2]), "classes": np.array([1, 2, 0])},
            {"data": np.array([2, 1, 1]), "classes": np.array([2, 1, 1, 0])}]
    dims = {"data": [3, 1], "classes": [3, 1]}
    net = {"output": {"class": "rec", "from": [], "target": "classes", "max_seq_len": "max_len_from('base:enc') + 1",
                      "unit": {
                          "prob": {"class": "linear", "activation": "softmax", "n_out": 3,
                                   "from": ["prev:output", "base:enc_mean"], "loss": "ce", "target": "classes"},
                          "output": {"class": "choice", "beam_size": beam_size, "target": "classes", "from": ["prob"]},
                          "end": {"class": "compare", "kind": "equal", "value": 0, "from": ["output"]}}},
           "enc": {"class": "linear", "activation": "tanh", "n_out": 3, "from": ["data"]},
           "enc_mean": {"class": "reduce", "mode": "mean", "axes": "T", "from": ["enc"]},
           "decision": {"class": "decide", "from": ["output"]}}
    base = {"backend": "tf", "train": {"class": "StaticDataset", "data": seqs, "output_dim": dims,
                                       "tags": ["a", "b"]},
            "network": net, "optimizer": {"class": "adam"}, "learning_rate": 0.01, "num_epochs": 1,
            "model": str(tmp_path / "model"), "batch_size": 100, "log_verbosity": 0}
    Engine(Config(base)).run()
    return base


def test_search_task_writes_hypotheses_by_seq_tag(tmp_path: pathlib.Path) -> None:
    base = trained_search_config(tmp_path, beam_size=2)
    texts = {}
    for fmt in ("py", "txt"):
        out = tmp_path / f"search.{fmt}"
        Engine(Config(dict(base, task="search", search_data="train", search_output_layer="decision",
                           search_output_file=str(out), search_output_file_format=fmt))).run()
        texts[fmt] = out.read_text()
    hyps = ast.literal_eval(texts["py"])
    assert list(hyps) == ["a", "b"]
    assert texts["txt"] == "".join(f"{hyps[tag]}\n" for tag in ("a", "b"))
    for hyp in hyps.values():
        labels = [int(x) for x in hyp.split()]
        assert 1 <= len(labels) <= 4 and all(0 <= x < 3 for x in labels)
        assert 0 not in labels[:-1]  # a hypothesis stops at its first end label
    # with a vocabulary for the target, hypotheses are its words (same model, same search)
    words = ["</s>", "x", "y"]
    extern = {"data": {"dim": 3, "sparse": True}, "classes": {"dim": 3, "sparse": True, "labels": words}}
    out = tmp_path / "search-words.py"
    Engine(Config(dict(base, task="search", search_data="train", search_output_layer="decision", extern_data=extern,
                       search_output_file=str(out), search_output_file_format="py"))).run()
    assert ast.literal_eval(out.read_text()) == {
        tag: " ".join(words[int(x)] for x in hyp.split()) for tag, hyp in hyps.items()}


def test_attention_copy_demo_learns_and_beam_search_copies(repo_root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    demo = repo_root / "demos" / "demo-attention-copy.config"
    returnn = [sys.executable, "-m", "returnn_core", str(demo), "++model", str(tmp_path / "model")]
    subprocess.run(returnn, check=True, cwd=tmp_path, capture_output=True, timeout=900)
    out = tmp_path / "search.py"
    subprocess.run([*returnn, "++task", "search", "++search_output_file", str(out)], check=True, cwd=tmp_path,
                   capture_output=True, timeout=600)
    hyps = ast.literal_eval(out.read_text())
    config = Config()
    config.load_file(str(demo))
    refs = config.typed_value("dev")["data"]
    assert sorted(hyps) == sorted(f"seq-{i}" for i in range(len(refs)))
    correct = sum(hyps[f"seq-{i}"] == " ".join(map(str, ref["classes"])) for i, ref in enumerate(refs))
    print(f"attention copy demo: {correct}/{len(refs)} dev seqs copied exactly (beam 4)")
    assert correct >= 0.9 * len(refs)


def test_prev_cycle_without_n_out_takes_the_dim_of_its_sources() -> None:
    """RETURNN infers a sub-layer's dim from its sources (its templates); 'c' reads prev:c and has no n_out."""
    net = {"output": {"class": "rec", "from": "data", "unit": {
        "gate": {"class": "linear", "activation": "sigmoid", "n_out": 3, "from": "data:source"},
        "c": {"class": "combine", "kind": "add", "from": ["gate", "prev:c"]},
        "output": {"class": "copy", "from": "c"}}}}
    backend = _backend(net, train=False)
    params = backend.get_param_values()
    batch = _batches(num=2)[0]
    out, lens = backend.forward_step(batch, "output")
    x = batch.data["data"]
    w, b = params["output/rec/gate/W"], params["output/rec/gate/b"]
    for i, n in enumerate(lens):
        c = np.zeros(3, np.float32)
        for t in range(n):
            c = c + 1 / (1 + np.exp(-(x[i, t] @ w + b)))
            np.testing.assert_allclose(out[i, t], c, rtol=1e-5, atol=1e-6)
