"""Sprint cache archives: round trips of features and alignments, scan mode, bundles, names, corruption."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from returnn_sprint.allophones import AllophoneLabeling
from returnn_sprint.archive import (
    HEADER_SIZE,
    MAGIC,
    FileArchive,
    FileArchiveBundle,
    SprintCacheError,
    open_file_archive,
)
from returnn_sprint.cache_cli import main as cache_cli_main
from returnn_sprint.records import STATE_SHIFT, decode_alignment, encode_alignment, encode_emission

RNG = np.random.RandomState(42)


def _random_alignment(n: int, num_allo: int = 50) -> list[tuple[int, int, int]]:
    out, t = [], 0
    while t < n:
        run = RNG.randint(1, 200)  # long runs exercise the 128-item limit of one run-length item
        allo, state = RNG.randint(num_allo), RNG.randint(3)
        for _ in range(min(run, n - t)):
            out.append((t, allo, state))
            t += 1
    return out


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("with_table", [True, False])
def test_feature_roundtrip(tmp_path, compress, with_table):
    path = str(tmp_path / "feat.cache")
    seqs = {f"corpus/rec{i}/{i}": RNG.randn(RNG.randint(1, 40), 7).astype(np.float32) for i in range(5)}
    times = {name: [(0.01 * t, 0.01 * t + 0.025) for t in range(len(x))] for name, x in seqs.items()}
    with FileArchive(path, "w", compress=compress, with_table=with_table) as a:
        for name, x in seqs.items():
            a.add_features(name, x, times[name])
    r = FileArchive(path)
    assert r.has_table == with_table
    assert r.names() == list(seqs)
    assert all(f"{n}.attribs" in r.names(include_attribs=True) for n in seqs)
    for name, x in seqs.items():
        feats, ts = r.read(name)  # default type: detected from the record
        np.testing.assert_array_equal(feats, x)
        np.testing.assert_allclose(ts, np.array(times[name]))
    assert (r.entry_info(next(iter(seqs))).comp > 0) == compress
    r.close()


@pytest.mark.parametrize("compress", [False, True])
def test_plain_alignment_roundtrip(tmp_path, compress):
    path = str(tmp_path / "align.cache")
    aligns = {f"c/r/{i}": _random_alignment(RNG.randint(1, 600)) for i in range(4)}
    # a gap in time forces an explicit time item
    aligns["c/r/gap"] = [(0, 3, 0), (1, 3, 0), (5, 4, 1), (6, 5, 2)]
    with FileArchive(path, "w", compress=compress) as a:
        for name, items in aligns.items():
            a.add_alignment(name, items)
    with open_file_archive(path) as r:
        for name, items in aligns.items():
            got = r.read(name, "align")
            assert [(it.time, it.allophone, it.state) for it in got] == items
            assert all(it.weight == 1.0 for it in got)


def test_plain_alignment_bytes_follow_the_run_length_format():
    # 3 x emission 7 (a repeat run) then 9, 10 explicit
    payload = encode_alignment([(0, 7, 0), (1, 7, 0), (2, 7, 0), (3, 9, 0), (4, 10, 1)])
    head = struct.pack("<I", 14) + b"flow-alignment" + struct.pack("<i", 0) + b"ALIGNRLE" + struct.pack("<I", 5)
    body = struct.pack("<bI", -3, 7) + struct.pack("<bII", 2, 9, 10 + (1 << STATE_SHIFT))
    assert payload == head + body


@pytest.mark.parametrize("version", [1, 2])
def test_weighted_alignment_roundtrip(tmp_path, version):
    items = []
    for t in range(0, 300):
        if t == 100:
            continue  # a skipped frame needs an explicit new time
        k = RNG.randint(1, 4)
        weights = RNG.dirichlet(np.ones(k))
        for j in range(k):
            items.append((t, int(RNG.randint(1 << 20)), int(RNG.randint(6)), float(weights[j])))
    path = str(tmp_path / "w.cache")
    with FileArchive(path, "w", compress=True) as a:
        a.add_alignment("seg", items, weighted_version=version)
    with FileArchive(path) as r:
        got = r.read_alignment("seg")
    assert [(it.time, it.allophone, it.state) for it in got] == [i[:3] for i in items]
    tol = 1.0 / 65535 if version == 1 else 1e-7
    np.testing.assert_allclose([it.weight for it in got], [i[3] for i in items], atol=tol)


def test_weighted_alignment_header_and_varints():
    payload = encode_alignment([(0, 300, 1, 1.0), (2, 5, 0, 0.5)], weighted_version=2)
    start = 4 + 14 + 4 + 8
    assert struct.unpack("<I", payload[start : start + 4])[0] == (1 << 31) | 2
    rest = payload[start + 4 :]
    # item count 2; group of 1 item at time 0 (no new time); emission 300 + (1 << 26) as LEB128
    assert rest[0] == 2 and rest[1] == 2
    em = 300 + (1 << 26)
    leb = bytearray()
    while True:
        b, em = em & 0x7F, em >> 7
        leb.append(b | (0x80 if em else 0))
        if not em:
            break
    assert rest[2 : 2 + len(leb)] == bytes(leb)
    assert decode_alignment(payload)[1].time == 2


def test_aalphrle_weights(tmp_path):
    items = [(0, 1, 0, 0.25), (1, 1, 0, 0.25), (2, 2, 1, 0.75)]
    payload = encode_alignment(items)
    assert b"AALPHRLE" in payload
    assert [tuple(it) for it in decode_alignment(payload)] == [tuple(i) for i in items]


def test_bundle_and_short_names(tmp_path):
    names = [["corpus/recA/1", "corpus/recA/2"], ["corpus/recB/1", "other/recB/x"]]
    for i, group in enumerate(names):
        with FileArchive(str(tmp_path / f"part{i}.cache"), "w", compress=bool(i)) as a:
            for n in group:
                a.add_features(n, np.full((3, 2), i, dtype=np.float32))
    bundle = tmp_path / "all.bundle"
    bundle.write_text(f"{tmp_path / 'part0.cache'}\npart1.cache\n")  # absolute and relative paths
    b = open_file_archive(str(bundle))
    assert isinstance(b, FileArchiveBundle)
    assert sorted(b.names()) == sorted(sum(names, []))
    assert b.read_features("recB/x")[0][0, 0] == 1.0
    assert b.resolve_name("recA/2") == "corpus/recA/2"
    assert b.resolve_name("x") == "other/recB/x"
    with pytest.raises(SprintCacheError, match="ambiguous.*corpus/recA/1.*corpus/recB/1"):
        b.resolve_name("1")
    with pytest.raises(SprintCacheError, match="no entry named 'recC/1'.*did you mean"):
        b.read_features("recC/1")
    b.close()
    bad = tmp_path / "bad.bundle"
    bad.write_text("missing.cache\n")
    with pytest.raises(SprintCacheError, match=r"bad.bundle line 1: no such archive 'missing.cache'"):
        open_file_archive(str(bad))


def _write_two(path: str, **kw) -> None:
    with FileArchive(path, "w", **kw) as a:
        a.add_features("s1", np.ones((4, 3), dtype=np.float32), attribs=False)
        a.add_features("s2", np.ones((50, 3), dtype=np.float32), attribs=False)


def test_truncated_file_names_file_and_offset(tmp_path):
    path = tmp_path / "t.cache"
    _write_two(str(path), with_table=False)
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # cut into the payload of s2
    with pytest.raises(SprintCacheError, match=r"t\.cache: truncated file: .* at offset \d+"):
        FileArchive(str(path))
    path.write_bytes(b"SP_ARC2\0\0")
    with pytest.raises(SprintCacheError, match=r"t\.cache: not a Sprint cache archive .* at offset 0"):
        FileArchive(str(path))


def test_corrupt_entry_detected(tmp_path):
    path = tmp_path / "c.cache"
    _write_two(str(path))
    data = bytearray(path.read_bytes())
    r = FileArchive(str(path))
    info = r.entry_info("s2")
    r.close()
    payload_pos = info.pos + 12
    stored = bytes(data[payload_pos : payload_pos + info.size])
    # the writer leaves the checksum 0 like RASR; a non-zero one is checked as CRC-32
    data[info.pos + 8 : info.pos + 12] = struct.pack("<I", zlib.crc32(stored))
    path.write_bytes(bytes(data))
    with FileArchive(str(path)) as r:
        np.testing.assert_array_equal(r.read_features("s2")[0], 1.0)
    data[info.pos + 8 : info.pos + 12] = struct.pack("<I", zlib.crc32(stored) ^ 1)
    path.write_bytes(bytes(data))
    r = FileArchive(str(path))
    np.testing.assert_array_equal(r.read_features("s1")[0], 1.0)
    with pytest.raises(SprintCacheError, match=rf"checksum mismatch in entry 's2' at offset {payload_pos}"):
        r.read_features("s2")
    r.close()
    # a corrupt start marker
    data[HEADER_SIZE] = 0
    path.write_bytes(bytes(data))
    with pytest.raises(SprintCacheError, match=rf"'s1': its start marker and name are not right before .* at offset {HEADER_SIZE}"):
        FileArchive(str(path)).read_features("s1")


def test_corrupt_table_offset(tmp_path):
    path = tmp_path / "c.cache"
    _write_two(str(path))
    data = bytearray(path.read_bytes())
    data[-8:] = struct.pack("<q", len(data) * 2)
    path.write_bytes(bytes(data))
    with pytest.raises(SprintCacheError, match=rf"corrupt table offset {len(data) * 2} .* at offset {len(data) - 8}"):
        FileArchive(str(path))
    assert path.read_bytes()[: len(MAGIC)] == MAGIC


def test_allophone_labeling(tmp_path):
    allo = tmp_path / "allophones"
    allo.write_text("# allophones\n[SILENCE]{#+#}@i@f\na{#+b}@i\nb{a+#}@f\na{b+b}\n")
    tying = tmp_path / "tying"
    tying.write_text("[SILENCE]{#+#}@i@f.0 0\na{#+b}@i.0 1\na{#+b}@i.1 2\nb{a+#}@f.0 3\na{b+b}.0 1\n")
    phonemes = tmp_path / "phonemes"
    phonemes.write_text("[SILENCE]\na\nb\n")
    by_tying = AllophoneLabeling(str(allo), state_tying_file=str(tying))
    assert by_tying.num_labels == 4
    assert by_tying.get_label_idx(1, 1) == 2
    assert by_tying.get_label_idx_by_emission(encode_emission(1, 1)) == 2
    assert by_tying.get_label_idx(3, 0) == 1
    with pytest.raises(SprintCacheError, match=r"'b\{a\+#\}@f\.2' is not in the state tying"):
        by_tying.get_label_idx(2, 2)
    by_phone = AllophoneLabeling(str(allo), phoneme_file=str(phonemes))
    assert [by_phone.get_label_idx(i, 0) for i in range(4)] == [0, 1, 2, 1]
    assert by_phone.labels() == ["[SILENCE]", "a", "b"]
    with pytest.raises(SprintCacheError, match="out of range"):
        by_phone.get_label_idx(7, 0)


def test_cli_list_and_show(tmp_path, capsys):
    path = str(tmp_path / "x.cache")
    with FileArchive(path, "w") as a:
        a.add_features("corpus/r/1", np.arange(6, dtype=np.float32).reshape(2, 3))
        a.add_alignment("corpus/r/al", [(0, 1, 0), (1, 1, 2)])
    allo = tmp_path / "allophones"
    allo.write_text("si\nphoneA{#+#}\n")
    assert cache_cli_main(["list", path]) == 0
    out = capsys.readouterr().out
    assert "corpus/r/1\tfeat frames=2 dim=3" in out and "corpus/r/al\talign items=2 frames=2" in out
    assert "file-info table" in out
    assert cache_cli_main(["show", path, "r/al", "--allophones", str(allo)]) == 0
    out = capsys.readouterr().out
    assert "phoneA{#+#} state=2" in out
    assert cache_cli_main(["show", path, "1"]) == 0
    assert "[3. 4. 5.]" in capsys.readouterr().out
    assert cache_cli_main(["show", path, "nope"]) == 1
    assert "no entry named 'nope'" in capsys.readouterr().err


def test_frame_with_another_dim_is_reported_with_its_offset(tmp_path):
    from returnn_sprint.records import RecordError, decode_features, encode_features

    payload = bytearray(encode_features(np.ones((3, 2), dtype=np.float32)))
    frame_size = 4 + 2 * 4 + 16
    frame1 = 4 + 10 + 4 + frame_size
    payload[frame1] = 5
    with pytest.raises(RecordError, match="frame 1 has dim 5, frame 0 has 2") as info:
        decode_features(bytes(payload))
    assert info.value.offset == frame1
    path = tmp_path / "d.cache"
    with FileArchive(str(path), "w") as a:
        a.add_raw("seg", bytes(payload))
    with FileArchive(str(path)) as r:
        payload_pos = r.entry_info("seg").pos + 12
        with pytest.raises(SprintCacheError, match=rf"d\.cache: entry 'seg': bad feature record: frame 1 .* at offset {payload_pos + frame1}"):
            r.read_features("seg")
