"""ExternSprintDataset against the stand-in Sprint trainer: data, partitions, seq order, failures, reaping."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
from returnn_sprint.extern_dataset import ExternSprintDataset
from sprint_helpers import FAKE_SPRINT, assert_reaped, make_corpus

from returnn_core.datasets import DataSpec
from returnn_core.errors import DatasetError


def _dataset(sprint_exec, corpus, *extra, **kwargs) -> ExternSprintDataset:
    return ExternSprintDataset(sprint_exec, [f"--*.corpus.file={corpus}", *extra], **kwargs)


def _epoch(ds: ExternSprintDataset, epoch: int, seq_list=None) -> list:
    ds.init_seq_order(epoch, seq_list=seq_list)
    seqs = list(ds.iter_seqs())
    pid = ds.child.pid if ds.child else None
    ds.finish_epoch()
    if pid:
        assert_reaped(pid)
    return seqs


def test_receives_all_seqs_and_reaps(sprint_exec, corpus):
    ref = np.load(corpus)
    ds = _dataset(sprint_exec, corpus)
    specs = ds.data_specs()  # starts the epoch-1 child to learn the dims
    assert specs["data"].dim == 5 and specs["classes"].dim == 4 and specs["classes"].sparse
    first_pid = ds.child.pid
    ds.init_seq_order(1)
    assert ds.child.pid == first_pid  # the child started for the dims serves epoch 1
    assert ds.num_seqs == 12  # known from the init message (python-segment-order)
    seqs = list(ds.iter_seqs())
    ds.finish_epoch()
    assert_reaped(first_pid)
    assert [s.tag for s in seqs] == [str(n) for n in ref["names"]]
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(s.features["data"], ref[f"feat_{i}"])
        np.testing.assert_array_equal(s.features["classes"], ref[f"align_{i}"])
    # a second epoch gets a fresh child
    assert len(_epoch(ds, 2)) == 12
    ds.close()


def test_batches_through_the_core_batching(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, buffer_size=2)  # a tiny buffer: the reader thread must block and resume
    ds.init_seq_order(1)
    batches = list(ds.generate_batches(batch_size=60, max_seqs=4))
    ds.finish_epoch()
    total = sum(b.num_seqs for b in batches)
    assert total == 12
    data = batches[0].to_data(ds.data_specs())
    assert data.data["data"].shape[2] == 5 and data.data["classes"].dtype == np.int32


def test_partition_epoch(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, partitionEpoch=3)
    parts = [[s.tag for s in _epoch(ds, ep)] for ep in (1, 2, 3, 4)]
    assert [len(p) for p in parts[:3]] == [4, 4, 4]
    assert sorted(sum(parts[:3], [])) == sorted(f"corpus/rec{i}/seg{i}" for i in range(12))
    assert parts[3] == parts[0]  # epoch 4 is partition 0 again
    ds.close()


def test_seq_order_from_returnn_side(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, seq_ordering="random")
    e1 = [s.tag for s in _epoch(ds, 1)]
    e2 = [s.tag for s in _epoch(ds, 2)]
    e1_again = [s.tag for s in _epoch(ds, 1)]
    assert sorted(e1) == sorted(e2) and e1 != e2 and e1 == e1_again
    rev = _dataset(sprint_exec, corpus, seq_ordering="reverse")
    assert [s.tag for s in _epoch(rev, 1)] == [f"corpus/rec{i}/seg{i}" for i in reversed(range(12))]
    wanted = ["corpus/rec7/seg7", "corpus/rec2/seg2"]
    assert [s.tag for s in _epoch(ds, 5, seq_list=wanted)] == wanted
    ds.close()
    rev.close()


def test_sorted_order_is_refused_clearly(sprint_exec, corpus):
    with pytest.raises(DatasetError, match=r"seq_ordering 'sorted' needs seq lengths"):
        _dataset(sprint_exec, corpus, seq_ordering="sorted")


def test_unknown_segment_in_seq_list(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus)
    with pytest.raises(DatasetError, match=r"(?s)exit status 1.*segments not in the Sprint corpus: corpus/nope"):
        ds.init_seq_order(1, seq_list=["corpus/rec1/seg1", "corpus/nope"])
    assert ds.child is None


def test_shebang_executable_string(tmp_path, corpus):
    script = tmp_path / "sprint-trainer"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {os.path.dirname(FAKE_SPRINT)!r})\n"
                      "import fake_sprint\nsys.exit(fake_sprint.main(sys.argv[1:]))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    ds = ExternSprintDataset(str(script), f"--*.corpus.file={corpus} --*.use-data-source=true")
    assert len(_epoch(ds, 1)) == 12
    ds.close()


def test_child_dies(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, "--*.fake.die-after=3")
    ds.init_seq_order(1)
    pid = ds.child.pid
    got = []
    with pytest.raises(DatasetError, match=r"(?s)exit status 3.*simulated crash after 3 segments") as info:
        for s in ds.iter_seqs():
            got.append(s)
    assert len(got) == 3
    assert f"pid {pid}" in str(info.value)
    assert_reaped(pid)
    ds.close()


def test_child_hangs(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, "--*.fake.hang-after=2", reading_timeout=5.0)
    ds.init_seq_order(1)
    pid = ds.child.pid
    with pytest.raises(DatasetError, match=r"no seq within 5 s \(reading_timeout; hung\?\); killed it; killed by signal SIGKILL; last output: .*fake sprint: hanging$"):
        list(ds.iter_seqs())
    assert_reaped(pid)
    ds.close()


def test_child_sends_garbage(sprint_exec, corpus):
    ds = _dataset(sprint_exec, corpus, "--*.fake.garbage-after=1")
    ds.init_seq_order(1)
    pid = ds.child.pid
    with pytest.raises(DatasetError, match=r"(?s)garbage on the pipe.*cannot unpickle.*writing garbage"):
        list(ds.iter_seqs())
    assert_reaped(pid)
    ds.close()


def test_stopping_early_kills_and_reaps(tmp_path, sprint_exec):
    corpus = make_corpus(tmp_path / "big.npz", num_seqs=60)
    ds = _dataset(sprint_exec, corpus, buffer_size=3)
    ds.init_seq_order(1)
    pid = ds.child.pid
    it = ds.iter_seqs()
    next(it)
    next(it)
    ds.finish_epoch()  # the reader thread is blocked on the full buffer; the child is still sending
    assert_reaped(pid)
    ds.init_seq_order(2)  # a new epoch restarts cleanly
    pid2 = ds.child.pid
    ds.close()
    assert_reaped(pid2)


def test_missing_executable(corpus):
    with pytest.raises(DatasetError, match="Sprint executable '/nonexistent/sprint' does not exist"):
        ExternSprintDataset("/nonexistent/sprint", "")


def test_executable_that_cannot_start(tmp_path, corpus):
    not_exec = tmp_path / "sprint.txt"
    not_exec.write_text("no program")
    ds = ExternSprintDataset(str(not_exec), f"--*.corpus.file={corpus}")
    with pytest.raises(DatasetError, match=r"cannot start Sprint .*sprint.txt.*Permission denied"):
        ds.init_seq_order(1)
    assert ds.child is None


def test_orthography_arrives_as_bytes(sprint_exec, corpus):
    ref = np.load(corpus)
    ds = _dataset(sprint_exec, corpus, "--*.fake.orthography=true", str_add_final_zero=True)
    seqs = _epoch(ds, 1)
    name = str(ref["names"][3])
    orth = seqs[3].features["orth"]
    assert orth.dtype == np.uint8 and bytes(orth).decode("utf8") == f"grüße {name.rsplit('/', 1)[-1]}"
    assert bytes(seqs[3].features["orth0"]) == bytes(orth) + b"\0"
    assert "orth" not in ds.data_specs()  # as in RETURNN's num_outputs: the config declares it
    ds.init_seq_order(2)
    batch = next(iter(ds.generate_batches(batch_size=1000, max_seqs=4)))
    data = batch.to_data({**ds.data_specs(), "orth": DataSpec(256, sparse=True)})  # extern_data "orth": [256, 1]
    row = data.data["orth"][3][: data.seq_lens["orth"][3]]
    assert bytes(row.astype(np.uint8)) == bytes(orth) and not data.data["orth"][3][len(row) :].any()
    ds.close()
