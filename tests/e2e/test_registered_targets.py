"""A target that a layer registers (``register_as_extern_data`` on any class) drives a rec loop, its choice and its
losses, as in the manual's encoder-decoder demo: the target with an end-of-sequence label appended."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("returnn_tf")

from test_rec_subnet import _backend  # noqa: E402

from returnn_core.datasets import DatasetSeq, DataSpec, ExternData, generate_batches  # noqa: E402
from returnn_core.network import resolve_network  # noqa: E402

EXTERN = {"data": DataSpec(5, sparse=True), "classes": DataSpec(2, sparse=True)}
EOS = 2
NET = {
    "embed": {"class": "linear", "activation": None, "from": "data", "n_out": 6},
    "enc": {"class": "rec", "unit": "lstm", "from": "embed", "n_out": 6},
    "enc_last": {"class": "get_last_hidden_state", "from": "enc", "n_out": 12},
    "output": {"class": "rec", "from": [], "target": "classes0", "unit": {
        "out_embed": {"class": "linear", "activation": None, "from": "output", "n_out": 4},
        "s": {"class": "rec", "unit": "lstm", "from": ["prev:out_embed", "base:enc_last"], "n_out": 6},
        "prob": {"class": "softmax", "from": "s", "target": "classes0", "loss": "ce"},
        "output": {"class": "choice", "from": "prob", "target": "classes0", "beam_size": 3},
        "end": {"class": "compare", "from": "output", "value": EOS}}},
    "target_eos_": {"class": "reinterpret_data", "from": "data:classes", "increase_sparse_dim": 1},
    "target_eos": {"class": "postfix_in_time", "postfix": EOS, "from": "target_eos_",
                   "register_as_extern_data": "classes0"},
}


def _batch():
    rng = np.random.RandomState(4)
    seqs = [DatasetSeq(i, f"s{i}", {"data": rng.randint(0, 5, n).astype("int32"),
                                    "classes": rng.randint(0, 2, n + 1).astype("int32")})
            for i, n in enumerate([3, 5, 2])]
    return next(iter(generate_batches(seqs, batch_size=100, max_seqs=3))).to_data(ExternData(EXTERN))


def test_the_registering_layer_comes_before_the_loop_that_reads_its_target() -> None:
    order = list(resolve_network(NET, list(EXTERN)).layers)
    assert order.index("target_eos") < order.index("output")


def test_training_and_search_on_a_registered_target() -> None:
    batch = _batch()
    trained = _backend(NET, extern=EXTERN)
    res = trained.eval_step(batch)
    # every target seq gets its end label: one frame more than classes
    assert res.frames["output/prob"] == int(batch.seq_lens["classes"].sum()) + 3
    assert trained.get_param_values()["output/rec/prob/W"].shape == (6, 3)  # n_out from classes0: 2 + 1
    searched = _backend(NET, extern=EXTERN, search=True)
    searched.set_param_values(trained.get_param_values())
    labels, lens = searched.forward_step(batch, "output")
    assert labels.shape[0] == 3 * 3  # the beam is left in
    longest = int(batch.seq_lens["data"].max())
    for row, n in zip(labels, lens):
        assert 1 <= n <= 10 * longest
        assert n == 10 * longest or row[n - 1] == EOS  # a hypothesis stops at its end label or at the bound
