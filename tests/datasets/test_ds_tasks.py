"""RETURNN's generated memory tasks: alphabets, dims, lengths and targets checked against each task's definition."""

from __future__ import annotations

import re

import numpy as np
import pytest

from returnn_core.datasets import init_dataset
from returnn_core.errors import ConfigError


def _texts(manager, spec, epoch=1):
    """The dataset and its seqs decoded to (input text, target text) over the task's alphabet."""
    ds = init_dataset(spec, manager=manager)
    ds.init_seq_order(epoch=epoch)
    out = []
    for i in range(ds.num_seqs):
        f = ds.get_seq(i).features
        assert f["data"].dtype == np.float32 and f["classes"].dtype == np.int32
        assert f["data"].shape[0] == f["classes"].shape[0] and np.all(f["data"].sum(axis=1) == 1)
        out.append((ds.decode(f["data"]), ds.decode(f["classes"])))
    return ds, out


def test_episodic_copy(manager) -> None:
    ds, seqs = _texts(manager, {"class": "TaskEpisodicCopyDataset", "num_seqs": 40})
    assert ds.num_outputs == {"data": [10, 2], "classes": [10, 1]}
    assert "".join(ds.data_specs()["classes"].labels) == " .01234567"
    for text, target in seqs:
        m = re.fullmatch(r"([0-7]{1,9})( {1,99})\.(\.+)", text)
        assert m and len(m[3]) == len(m[1]) + 1, text
        assert target == " " * (len(m[1]) + len(m[2]) + 1) + m[1] + ".", (text, target)
    assert len({len(t) for t, _ in seqs}) > 10  # the random lengths of chars and blanks vary


def _closing_tag_span(text: str) -> set[int]:
    """Positions from each ``/`` to the last char of its tag name: there the next char is known."""
    return {i for m in re.finditer(r"</([a-h]+)>", text) for i in range(m.start() + 1, m.end() - 1)}


@pytest.mark.parametrize("depth", [1, 4])
def test_xml_modeling(manager, depth: int) -> None:
    ds, seqs = _texts(manager, {"class": "TaskXmlModelingDataset", "num_seqs": 30, "limit_stack_depth": depth})
    assert ds.num_outputs == {"data": [12, 2], "classes": [12, 1]}
    deepest = 0
    for text, target in seqs:
        assert text[0] == " " and re.fullmatch(r" (</?[a-h]{1,9}>)+", text), text
        stack = []
        for closing, name in re.findall(r"<(/?)([a-h]+)>", text):
            if closing:
                assert stack.pop() == name
            else:
                stack.append(name)
                deepest = max(deepest, len(stack))
        assert not stack and deepest <= depth
        known = _closing_tag_span(text)
        expected = ["<" if c in " >" else text[i + 1] if i in known else " " for i, c in enumerate(text)]
        assert target == "".join(expected), (text, target)
    assert deepest == depth


def test_variable_assignment(manager) -> None:
    ds, seqs = _texts(manager, {"class": "TaskVariableAssignmentDataset", "num_seqs": 40})
    assert ds.num_outputs == {"data": [15, 2], "classes": [15, 1]}
    for text, target in seqs:
        m = re.fullmatch(r"((?:S\([a-h]{2,4},[a-h]\),){1,4})Q\(([a-h]+)\)([a-h])\.", text)
        assert m, text
        store = re.findall(r"S\(([a-h]+),([a-h])\)", m[1])
        assert len({k for k, _ in store}) == len(store)  # keys are unique
        assert dict(store)[m[2]] == m[3]
        close = text.index(")", text.index("Q("))
        assert target == " " * close + m[3] + ". ", (text, target)


def test_number_base_convert(manager) -> None:
    spec = {"class": "TaskNumberBaseConvertDataset", "input_base": 2, "output_base": 8, "num_seqs": 60,
            "min_input_seq_len": 3, "max_input_seq_len": 6}
    ds = init_dataset(spec, manager=manager)
    assert ds.num_outputs == {"data": [2, 1], "classes": [8, 1]}
    assert ds.data_specs()["classes"].labels == tuple("01234567")
    ds.init_seq_order(epoch=1)
    lens, leading_zero = set(), False
    for seq in ds.iter_seqs():
        x, y = seq.features["data"], seq.features["classes"]
        assert x.dtype == np.int32 and y.dtype == np.int32
        lens.add(len(x))
        leading_zero |= bool(x[0] == 0 and len(x) > 1)
        number = int("".join(map(str, x)), 2)
        assert "".join(map(str, y)) == np.base_repr(number, 8)
    assert lens == {3, 4, 5, 6} and leading_zero  # RETURNN draws every digit uniformly, leading zeros too
    assert init_dataset({"class": "TaskNumberBaseConvertDataset"}, manager=manager).num_outputs == {
        "data": [8, 1], "classes": [2, 1]}  # defaults: octal -> binary
    with pytest.raises(ConfigError, match="output_base must be in 2..36, got 40"):
        init_dataset({**spec, "output_base": 40}, manager=manager)


def test_copy_task(manager) -> None:
    spec = {"class": "CopyTaskDataset", "nsymbols": 5, "minlen": 2, "maxlen": 4, "maxlen_epoch_factor": 2, "num_seqs": 40}
    ds = init_dataset(spec, manager=manager)
    assert ds.num_outputs == {"data": [5, 1], "classes": [5, 1]}
    for epoch, hi in ((1, 6), (3, 10)):
        ds.init_seq_order(epoch=epoch)
        lens = [ds.get_seq(i).length("data") for i in range(ds.num_seqs)]
        for i in range(ds.num_seqs):
            f = ds.get_seq(i).features
            np.testing.assert_array_equal(f["data"], f["classes"])
        assert min(lens) >= 2 and max(lens) == hi  # the longest length grows with the epoch
    bad = init_dataset({"class": "CopyTaskDataset", "nsymbols": 3, "num_seqs": 2}, manager=manager)
    bad.init_seq_order(1)
    with pytest.raises(ConfigError, match="epoch 1 gives seq lengths 0..0.*0 < min <= max"):
        bad.get_seq(0)


def test_tasks_take_only_returnn_options(manager) -> None:
    with pytest.raises(ConfigError, match="TaskEpisodicCopyDataset:.*episode_len"):
        init_dataset({"class": "TaskEpisodicCopyDataset", "episode_len": 4}, manager=manager)


def test_seeds_as_returnn(manager) -> None:
    """One random stream per epoch, seeded with ``fixed_random_seed or epoch``."""
    def texts(epoch, **kw):
        return [t for t, _ in _texts(manager, {"class": "TaskEpisodicCopyDataset", "num_seqs": 5, **kw}, epoch)[1]]

    assert texts(1) == texts(1) != texts(2)
    assert texts(1, fixed_random_seed=7) == texts(4, fixed_random_seed=7) != texts(1)
    assert texts(3, fixed_random_seed=0) == texts(3)  # RETURNN's `fixed_random_seed or epoch`: 0 means unset
    # seq i comes after seqs 0..i-1 on the same stream: a longer dataset starts with the same seqs
    assert texts(2, num_seqs=8)[:5] == texts(2)
