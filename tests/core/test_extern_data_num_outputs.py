"""``num_outputs['data']`` describes the input as RETURNN reads it, also next to ``num_inputs`` (the manual's
attention-copy demo sets both, with a sparse input)."""

from __future__ import annotations

from returnn_core.config import Config
from returnn_core.datasets import DataSpec, ExternData


def test_num_outputs_data_wins_over_num_inputs() -> None:
    ext = ExternData.from_config(Config({"num_inputs": 10, "num_outputs": {"data": [10, 1], "classes": [10, 1]}}))
    assert ext["data"] == DataSpec(10, sparse=True)
    assert ext["classes"] == DataSpec(10, sparse=True)


def test_num_inputs_alone_is_a_dense_input() -> None:
    ext = ExternData.from_config(Config({"num_inputs": 9, "num_outputs": 2}))
    assert ext["data"] == DataSpec(9) and ext["classes"] == DataSpec(2, sparse=True)
