"""SprintCacheDataset through the dataset registry, and the sprint-cache subcommand through the returnn CLI."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from returnn_sprint.archive import FileArchive, SprintCacheError

from returnn_core.datasets import init_dataset
from returnn_core.errors import DatasetError

RETURNN = str(pathlib.Path(sys.executable).parent / "returnn")


@pytest.fixture
def caches(tmp_path):
    """Features (bundle of two archives), an alignment cache and the allophone/state-tying files for 6 seqs."""
    rng = np.random.RandomState(0)
    allo = tmp_path / "allophones"
    allo.write_text("si{#+#}@i@f\na{#+#}\nb{#+#}\n")
    tying = tmp_path / "tying"
    tying.write_text("si{#+#}@i@f.0 0\na{#+#}.0 1\na{#+#}.1 2\nb{#+#}.0 3\nb{#+#}.1 3\n")
    seqs = {}
    archives = [FileArchive(str(tmp_path / f"f{k}.cache"), "w", compress=bool(k)) for k in range(2)]
    with FileArchive(str(tmp_path / "align.cache"), "w") as al:
        for i in range(6):
            n = 3 + 4 * i
            feats = rng.randn(n, 3).astype(np.float32)
            items = [(t, [0, 1, 1, 2][t % 4], t % 2 if t % 4 in (1, 2) else 0) for t in range(n)]
            name = f"corpus/rec{i}/{i}"
            archives[i % 2].add_features(name, feats)
            al.add_alignment(name, items)
            seqs[name] = (feats, items)
    for a in archives:
        a.close()
    (tmp_path / "feat.bundle").write_text("f0.cache\nf1.cache\n")
    labeling = {"allophone_file": str(allo), "state_tying_file": str(tying)}
    return tmp_path, seqs, labeling


def _label(items, tying={(0, 0): 0, (1, 0): 1, (1, 1): 2, (2, 0): 3, (2, 1): 3}):  # noqa: B006 - a constant table
    return [tying[(a, s)] for _, a, s in items]


def test_dataset_from_registry(caches):
    tmp, seqs, labeling = caches
    ds = init_dataset({
        "class": "SprintCacheDataset",
        "data": {"data": {"filename": str(tmp / "feat.bundle")},
                 "classes": {"filename": str(tmp / "align.cache"), "allophone_labeling": labeling}},
        "seq_ordering": "sorted_reverse",
    })
    specs = ds.data_specs()
    assert specs["data"].dim == 3 and specs["classes"].dim == 4 and specs["classes"].sparse
    ds.init_seq_order(1)
    tags = [ds.get_tag(i) for i in range(ds.num_seqs)]
    assert tags == [f"corpus/rec{i}/{i}" for i in reversed(range(6))]  # longest first
    for seq in ds.iter_seqs():
        feats, items = seqs[seq.tag]
        np.testing.assert_array_equal(seq.features["data"], feats)
        assert seq.features["classes"].tolist() == _label(items)
    batch = next(iter(ds.generate_batches(batch_size=100, max_seqs=2)))
    assert batch.to_data(specs).data["classes"].dtype == np.int32
    ds.init_seq_order(2, seq_list=["corpus/rec2/2"])
    assert ds.num_seqs == 1
    ds.close()


def test_weighted_alignment_takes_the_heaviest_state(tmp_path, caches):
    tmp, seqs, labeling = caches
    with FileArchive(str(tmp / "feat1.cache"), "w") as f:
        f.add_features("s", np.zeros((2, 3), dtype=np.float32))
    with FileArchive(str(tmp / "w.cache"), "w") as al:
        al.add_alignment("s", [(0, 1, 0, 0.3), (0, 2, 1, 0.7), (1, 1, 1, 0.9), (1, 0, 0, 0.1)], weighted_version=1)
    ds = init_dataset({"class": "SprintCacheDataset", "data": {
        "data": {"filename": str(tmp / "feat1.cache")},
        "classes": {"filename": str(tmp / "w.cache"), "allophone_labeling": labeling}}})
    ds.init_seq_order(1)
    assert ds.get_seq(0).features["classes"].tolist() == [3, 2]
    ds.close()


def test_mismatches_are_named(caches):
    tmp, seqs, labeling = caches
    with FileArchive(str(tmp / "short.cache"), "w") as al:
        for name, (_, items) in seqs.items():
            al.add_alignment(name, items[:-1])
    ds = init_dataset({"class": "SprintCacheDataset", "data": {
        "data": {"filename": str(tmp / "feat.bundle")},
        "classes": {"filename": str(tmp / "short.cache"), "allophone_labeling": labeling}}})
    ds.init_seq_order(1)
    with pytest.raises(DatasetError, match=r"seq 'corpus/rec0/0': classes alignment has 2 frames, features have 3"):
        ds.get_seq(0)
    ds.close()
    with FileArchive(str(tmp / "partial.cache"), "w") as al:
        al.add_alignment("corpus/rec0/0", seqs["corpus/rec0/0"][1])
    with pytest.raises(SprintCacheError, match=r"data 'classes' lacks a seq .*partial.cache: no entry named 'corpus/rec\d/\d'"):
        init_dataset({"class": "SprintCacheDataset", "data": {
            "data": {"filename": str(tmp / "feat.bundle")},
            "classes": {"filename": str(tmp / "partial.cache"), "allophone_labeling": labeling}}})
    with pytest.raises(DatasetError, match="alignments need allophone_labeling"):
        init_dataset({"class": "SprintCacheDataset", "data": {
            "data": {"filename": str(tmp / "feat.bundle")}, "classes": {"filename": str(tmp / "align.cache")}}})


def test_returnn_cli_subcommand_and_plugin_listing(caches):
    tmp, seqs, labeling = caches
    res = subprocess.run([RETURNN, "sprint-cache", "list", str(tmp / "feat.bundle")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "corpus/rec5/5\tfeat frames=23 dim=3" in res.stdout and "# 6 entries in 2 archives" in res.stdout
    res = subprocess.run([RETURNN, "sprint-cache", "show", str(tmp / "align.cache"), "rec1/1", "--allophones",
                          str(tmp / "allophones")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "    1 a{#+#} state=1" in res.stdout
    res = subprocess.run([RETURNN, "sprint-cache", "list", str(tmp / "missing.cache")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "missing.cache: no such file" in res.stderr
    res = subprocess.run([RETURNN, "--list-plugins", "--json"], capture_output=True, text=True, timeout=120)
    sprint = {p["name"]: p for p in json.loads(res.stdout)}["sprint"]
    assert sprint["status"] == "loaded"
    assert sprint["provides"]["datasets"] == ["ExternSprintDataset", "SprintCacheDataset"]
    assert sprint["provides"]["losses"] == ["fast_bw@tf", "sprint@tf"] and sprint["provides"]["cli_tools"] == ["sprint-cache"]


def test_unfinished_archive_needs_recover(tmp_path, capsys):
    """A writer that died mid-entry leaves no table and a torn tail: named with its offset, or skipped on request."""
    path = tmp_path / "torn.cache"
    with FileArchive(str(path), "w", with_table=False) as a:
        for i in range(3):
            a.add_features(f"c/r/{i}", np.full((4 + i, 2), i, dtype=np.float32), attribs=False)
    torn = path.read_bytes()[:-7]
    path.write_bytes(torn)
    spec = {"class": "SprintCacheDataset", "data": {"data": {"filename": str(path)}}}
    with pytest.raises(SprintCacheError, match=r"torn\.cache: truncated file: .* at offset \d+; .*recover"):
        init_dataset(spec)
    spec["data"]["data"]["recover"] = True
    ds = init_dataset(spec)
    ds.init_seq_order(1)
    assert [s.tag for s in ds.iter_seqs()] == ["c/r/0", "c/r/1"]
    assert "SprintCacheDataset data 'data': skipped a broken entry: Sprint cache" in capsys.readouterr().err
    ds.close()
