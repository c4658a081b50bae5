"""Archives laid out byte by byte from RASR's format (tests/sprint/archive_bytes.py) against the plugin's reader,
writer and ``returnn sprint-cache``: RASR and RETURNN trailers, no table, compressed/raw, removed entries."""

from __future__ import annotations

import pathlib
import struct
import subprocess
import sys

import archive_bytes as ab
import numpy as np
import pytest
from returnn_sprint.archive import FileArchive, SprintCacheError

RETURNN = str(pathlib.Path(sys.executable).parent / "returnn")
FEATS = np.arange(12, dtype=np.float32).reshape(4, 3) / 4
TIMES = [(0.01 * t, 0.01 * t + 0.025) for t in range(4)]
PLAIN_RUNS = [(3, ab.emission(5, 0)), (1, ab.emission(6, 2)), (2, ab.emission(7, 1))]
WEIGHTED = [[(ab.emission(1, 0), 0.75), (ab.emission(2, 1), 0.25)], [(ab.emission(3, 2), 1.0)]]
ENTRIES = [
    ("corpus/rec1/1", ab.feature_record(FEATS, TIMES), False),
    ("corpus/rec1/1.attribs", b"<flow-attributes/>\n", False),
    ("", b"junk of the removed entry", False),  # a removal in the middle leaves free space
    ("corpus/rec2/1", ab.feature_record(FEATS[:2] * -1, TIMES[:2]), True),
    ("align/rec1/1", ab.plain_alignment_record(PLAIN_RUNS), True),
    ("align/rec1/w", ab.weighted_alignment_record_v2(WEIGHTED), False),
]
LAYOUTS = {"rasr": {"table": True, "trailer": "rasr"}, "returnn": {"table": True, "trailer": "returnn"}, "no-table": {"table": False}}


def _write(tmp_path: pathlib.Path, layout: str, entries=ENTRIES) -> tuple[pathlib.Path, ab.Laid]:
    laid = ab.archive(entries, **LAYOUTS[layout])
    path = tmp_path / f"{layout}.cache"
    path.write_bytes(laid.data)
    return path, laid


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_reader_reads_every_layout(tmp_path, layout):
    path, laid = _write(tmp_path, layout)
    with FileArchive(str(path)) as r:
        assert r.has_table == (layout != "no-table")
        assert r.trailer == (None if layout == "no-table" else layout)
        assert r.names(include_attribs=True) == [n for n, _, _ in ENTRIES if n]
        assert {n: r.entry_info(n).pos for n in r.entries} == laid.positions
        # RETURNN's trailer has no free-space list; RASR's table and a scan both find the removal
        assert r.free == ([] if layout == "returnn" else laid.free)
        feats, times = r.read("corpus/rec1/1")
        np.testing.assert_array_equal(feats, FEATS)
        np.testing.assert_allclose(times, TIMES)
        np.testing.assert_array_equal(r.read_features("rec2/1")[0], FEATS[:2] * -1)
        assert r.entry_info("corpus/rec2/1").comp > 0
        plain = r.read_alignment("align/rec1/1")
        assert [(i.time, i.allophone, i.state) for i in plain] == [
            (0, 5, 0), (1, 5, 0), (2, 5, 0), (3, 6, 2), (4, 7, 1), (5, 7, 1)
        ]
        weighted = r.read_alignment("align/rec1/w")
        assert [(i.time, i.allophone, i.state, i.weight) for i in weighted] == [
            (0, 1, 0, 0.75), (0, 2, 1, 0.25), (1, 3, 2, 1.0)
        ]
        assert r.read_raw("corpus/rec1/1.attribs") == b"<flow-attributes/>\n"


@pytest.mark.parametrize("compress", [False, True])
def test_writer_output_is_byte_identical_to_rasr_layout(tmp_path, compress):
    entries = [(n, p, compress) for n, p, _ in ENTRIES if n]
    path = tmp_path / "ours.cache"
    with FileArchive(str(path), "w", compress=compress) as w:
        w.add_features("corpus/rec1/1", FEATS, TIMES, attribs=False)
        for name, payload, _ in entries[1:]:
            w.add_raw(name, payload)
    assert path.read_bytes() == ab.archive(entries, table=True, trailer="rasr").data


def test_independent_reader_reads_what_the_writer_wrote(tmp_path):
    path = tmp_path / "ours.cache"
    with FileArchive(str(path), "w", compress=True) as w:
        w.add_features("a/1", FEATS)
        w.add_alignment("a/2", [(t, 4, t % 3) for t in range(9)])
    got = ab.minimal_read(path.read_bytes())
    assert list(got) == ["a/1", "a/1.attribs", "a/2"]
    assert got["a/1"][: 4 + 10 + 4 + 4] == ab.string(b"vector-f32") + ab.u32(4) + ab.u32(3)
    frame0 = struct.unpack_from("<3f", got["a/1"], 4 + 10 + 4 + 4)
    assert frame0 == tuple(FEATS[0])


def test_unfinished_archive_stops_with_offset_or_recovers(tmp_path):
    path, laid = _write(tmp_path, "no-table")
    data = bytearray(laid.data)
    broken = laid.starts["corpus/rec2/1"]
    # the end marker of one entry overwritten, and the writer died in the middle of the last entry
    end = laid.positions["corpus/rec2/1"] + 12 + struct.unpack_from("<I", data, laid.positions["corpus/rec2/1"] + 4)[0]
    data[end : end + 4] = b"\0\0\0\0"
    data = data[:-10]
    path.write_bytes(bytes(data))
    with pytest.raises(SprintCacheError, match=rf"no-table\.cache: corrupt entry 'corpus/rec2/1': end marker 0x00000000.* at offset {end}; .*recover"):
        FileArchive(str(path))
    with FileArchive(str(path), recover=True) as r:
        assert r.names(include_attribs=True) == ["corpus/rec1/1", "corpus/rec1/1.attribs", "align/rec1/1"]
        np.testing.assert_array_equal(r.read_features("corpus/rec1/1")[0], FEATS)
        assert len(r.read_alignment("align/rec1/1")) == 6
        assert len(r.problems) == 2 and "truncated file" in r.problems[1]
    assert broken < end
    bundle = tmp_path / "all.bundle"
    bundle.write_text(f"{path.name}\n")
    res = _cli("list", "--recover", str(bundle))
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "# 2 entries in 1 archives"
    assert res.stderr.count("returnn sprint-cache: skipped: Sprint cache") == 2 and f"at offset {end}" in res.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RETURNN, "sprint-cache", *args], capture_output=True, text=True, timeout=120)


def test_cli_lists_dumps_and_checks(tmp_path):
    paths = {layout: _write(tmp_path, layout)[0] for layout in LAYOUTS}
    res = _cli("--check", *map(str, paths.values()))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{paths['rasr']}: ok; 5 entries, file-info table, RASR trailer, 1 free-space entries" in res.stdout
    assert f"{paths['returnn']}: ok; 5 entries, file-info table, RETURNN trailer" in res.stdout
    assert f"{paths['no-table']}: ok; 5 entries, scanned (no file-info table)" in res.stdout
    res = _cli("list", str(paths["returnn"]))
    assert "corpus/rec2/1\tfeat frames=2 dim=3" in res.stdout and "align/rec1/w\talign items=3 frames=2" in res.stdout
    res = _cli("dump", str(paths["rasr"]), "--max-frames", "0")
    assert res.returncode == 0 and res.stdout.count("== ") == 5 and "    5 7 state=1" in res.stdout
    # a payload byte flipped inside a compressed entry: named with file and offset, the others still checked
    data = bytearray(paths["rasr"].read_bytes())
    laid = ab.archive(ENTRIES, table=True, trailer="rasr")
    payload = laid.positions["corpus/rec2/1"] + 12
    data[payload + 1] ^= 0xFF
    paths["rasr"].write_bytes(bytes(data))
    res = _cli("--check", str(paths["rasr"]), str(paths["returnn"]))
    assert res.returncode == 1
    assert f"error: Sprint cache {paths['rasr']}: entry 'corpus/rec2/1': corrupt compressed payload" in res.stdout
    assert f"at offset {payload}" in res.stdout and "1 broken entries" in res.stdout
    assert f"{paths['returnn']}: ok" in res.stdout
