"""The small generated tasks: each seq is checked against the task's definition, decoded independently."""

from __future__ import annotations

import re

import numpy as np
from returnn_datasets.tasks import VAR_SYMBOLS, XML_SYMBOLS

from returnn_core.datasets import init_dataset


def _seqs(manager, spec, epoch=1):
    ds = init_dataset(spec, manager=manager)
    ds.init_seq_order(epoch=epoch)
    return ds, [ds.get_seq(i).features for i in range(ds.num_seqs)]


def test_copy_task(manager) -> None:
    spec = {"class": "CopyTaskDataset", "nsymbols": 5, "minlen": 2, "maxlen": 4, "maxlen_epoch_factor": 2, "num_seqs": 40}
    ds, seqs = _seqs(manager, spec, epoch=3)
    assert ds.num_outputs == {"data": [5, 1], "classes": [5, 1]}
    for f in seqs:
        np.testing.assert_array_equal(f["data"], f["classes"])
        assert 2 <= len(f["data"]) <= 4 + 2 * 3 and f["data"].max() < 5
    assert max(len(f["data"]) for f in seqs) > 4  # the length grew with the epoch
    _, early = _seqs(manager, spec, epoch=1)
    assert max(len(f["data"]) for f in early) <= 6


def test_episodic_copy(manager) -> None:
    ds, seqs = _seqs(manager, {"class": "TaskEpisodicCopyDataset", "num_seqs": 20, "min_delay": 3, "max_delay": 6})
    assert ds.num_outputs == {"data": [10, 2], "classes": [10, 1]}
    for f in seqs:
        x = np.argmax(f["data"], axis=1)
        y = f["classes"]
        assert len(x) == len(y)
        delim = int(np.where(x == 9)[0][0])
        assert 10 + 3 <= delim <= 10 + 6
        np.testing.assert_array_equal(y[-10:], x[:10])  # the episode is reproduced at the end
        assert np.all(y[:-10] == 8) and np.all(x[10:delim] == 8)


def _xml_well_formed(text: str) -> bool:
    stack = []
    for closing, name in re.findall(r"<(/?)([a-z]+)>", text):
        if closing:
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    return not stack and re.fullmatch(r"(</?[a-z]+>)+", text) is not None


def test_xml_modeling(manager) -> None:
    ds, seqs = _seqs(manager, {"class": "TaskXmlModelingDataset", "num_seqs": 30, "limit_stack_depth": 2})
    for f in seqs:
        text = "".join(XML_SYMBOLS[i] for i in np.argmax(f["data"], axis=1))
        nxt = "".join(XML_SYMBOLS[i] for i in f["classes"])
        assert _xml_well_formed(text), text
        assert nxt == text[1:] + "."
        depth = max_depth = 0
        for closing, _ in re.findall(r"<(/?)([a-z]+)>", text):
            depth += -1 if closing else 1
            max_depth = max(max_depth, depth)
        assert max_depth <= 2


def test_variable_assignment(manager) -> None:
    _, seqs = _seqs(manager, {"class": "TaskVariableAssignmentDataset", "num_seqs": 30})
    for f in seqs:
        text = "".join(VAR_SYMBOLS[i] for i in np.argmax(f["data"], axis=1))
        answer = "".join(VAR_SYMBOLS[i] for i in f["classes"])
        *assignments, query = text.rstrip(";").split(";")
        env = dict(a.split("=") for a in assignments)
        assert query.startswith("?") and answer == env[query[1:]] + "."


def test_number_base_convert(manager) -> None:
    ds, seqs = _seqs(manager, {"class": "TaskNumberBaseConvertDataset", "input_base": 10, "output_base": 3,
                               "num_seqs": 50, "max_input_seq_len": 6})
    assert ds.num_outputs == {"data": [10, 1], "classes": [3, 1]}
    for f in seqs:
        number = int("".join(str(d) for d in f["data"]))
        assert int("".join(str(d) for d in f["classes"]), 3) == number
        assert np.base_repr(number, 3) == "".join(str(d) for d in f["classes"])
