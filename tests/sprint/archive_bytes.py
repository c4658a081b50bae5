"""Sprint cache archives laid out byte by byte from RASR's ``Core::FileArchive`` format, plus a minimal reader.

Written from the format description only and sharing no code with ``returnn_sprint``, so that tests can check
the plugin's reader and writer against an independent rendering of the layout.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

START, END = 0xAA55AA55, 0x55AA55AA


def u32(value: int) -> bytes:
    """Little-endian uint32."""
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    """Little-endian uint64."""
    return struct.pack("<Q", value)


def string(raw: bytes) -> bytes:
    """uint32 length + bytes, no terminator."""
    return u32(len(raw)) + raw


def varint(value: int) -> bytes:
    """LEB128: 7 bits per byte, low bits first, high bit set on all but the last byte."""
    out = b""
    while value >= 0x80:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def emission(allophone: int, state: int) -> int:
    """Allophone-state index as Sprint stores it."""
    return allophone + state * (1 << 26)


def feature_record(frames: Sequence[Sequence[float]], times: Sequence[tuple[float, float]]) -> bytes:
    """``vector-f32`` record: frame count, then per frame its dim, the values and (start, end) times."""
    out = string(b"vector-f32") + u32(len(frames))
    for row, (t0, t1) in zip(frames, times):
        out += u32(len(row)) + b"".join(struct.pack("<f", v) for v in row) + struct.pack("<dd", t0, t1)
    return out


def plain_alignment_record(runs: Sequence[tuple[int, int]]) -> bytes:
    """``ALIGNRLE`` record from (repeat, emission) runs: repeat 1 as an explicit item, more as a repeat item."""
    count = sum(n for n, _ in runs)
    out = string(b"flow-alignment") + struct.pack("<i", 0) + b"ALIGNRLE" + u32(count)
    for n, em in runs:
        out += struct.pack("<b", 1) + u32(em) if n == 1 else struct.pack("<b", -n) + u32(em)
    return out


def weighted_alignment_record_v2(frames: Sequence[Sequence[tuple[int, float]]]) -> bytes:
    """Weighted alignment, version 2: per frame a group of (emission, float32 weight), consecutive times."""
    out = string(b"flow-alignment") + struct.pack("<i", 0) + b"ALIGNRLE" + u32(0x80000000 | 2)
    out += varint(sum(len(f) for f in frames))
    for group in frames:
        out += varint(len(group) << 1)
        for em, weight in group:
            out += varint(em) + struct.pack("<f", weight)
    return out


@dataclass
class Laid:
    """An archive's bytes and where its parts are."""

    data: bytes
    positions: dict[str, int] = field(default_factory=dict)
    free: list[tuple[int, int]] = field(default_factory=list)
    starts: dict[str, int] = field(default_factory=dict)


def archive(
    entries: Sequence[tuple[str, bytes, bool]], *, table: bool = True, trailer: str = "rasr"
) -> Laid:
    """An archive of ``(name, payload, compress)`` entries; name ``""`` lays out free space as a removal leaves it.

    ``trailer``: ``"rasr"`` (free-space count and list, its offset, the table offset) or ``"returnn"`` (uint64 0,
    the table offset), as RETURNN's Python writer ends the table.
    """
    out = bytearray(b"SP_ARC1\0" + bytes([1 if table else 0]))
    laid = Laid(b"")
    order = []
    for name, payload, compress in entries:
        raw = name.encode("utf8")
        start = len(out)
        if not raw:
            # RASR's remove: zero name length, the size covers the old name and payload, which stay as junk
            out += u32(START) + u32(0)
            laid.free.append((len(out), len(payload)))
            out += u32(len(payload)) + u32(0) + u32(0) + payload + u32(END)
            continue
        stored = zlib.compress(payload) if compress else payload
        out += u32(START) + string(raw)
        laid.positions[name], laid.starts[name] = len(out), start
        out += u32(len(payload)) + u32(len(stored) if compress else 0) + u32(0) + stored + u32(END)
        order.append((name, len(payload), len(stored) if compress else 0))
    if table:
        table_pos = len(out)
        out += u32(len(order))
        for name, size, comp in order:
            out += string(name.encode("utf8")) + u64(laid.positions[name]) + u32(size) + u32(comp)
        if trailer == "rasr":
            free_pos = len(out)
            out += u32(len(laid.free)) + b"".join(u64(p) + u32(s) for p, s in laid.free)
            out += u64(free_pos) + u64(table_pos)
        elif trailer == "returnn":
            out += u64(0) + u64(table_pos)
        else:
            raise ValueError(f"trailer must be 'rasr' or 'returnn', got {trailer!r}")
    laid.data = bytes(out)
    return laid


def minimal_read(data: bytes) -> dict[str, bytes]:
    """Every entry's uncompressed payload, found through the table the last 8 bytes point to."""
    assert data[:8] == b"SP_ARC1\0" and data[8] != 0, "no file-info table"
    (pos,) = struct.unpack_from("<Q", data, len(data) - 8)
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    out = {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4 : pos + 4 + n].decode("utf8")
        entry_pos, size, comp = struct.unpack_from("<QII", data, pos + 4 + n)
        pos += 4 + n + 16
        assert struct.unpack_from("<I", data, entry_pos - n - 8)[0] == START
        f_size, f_comp, _ = struct.unpack_from("<III", data, entry_pos)
        assert (f_size, f_comp) == (size, comp)
        stored = data[entry_pos + 12 : entry_pos + 12 + (comp or size)]
        assert struct.unpack_from("<I", data, entry_pos + 12 + len(stored))[0] == END
        out[name] = zlib.decompress(stored) if comp else stored
    return out
