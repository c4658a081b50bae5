"""Payloads of Sprint cache entries: feature records and alignment records (plain run-length and weighted).

Feature record: uint32 10, ``vector-f32``, uint32 frames, per frame uint32 dim + dim float32 + two float64 times.
Alignment record: uint32 14, ``flow-alignment``, int32 flag, ``ALIGNRLE`` (or ``AALPHRLE``: every item also
carries a float32 weight), uint32 count, then run-length items: signed byte ``n``; ``n > 0``: ``n`` explicit
uint32 emissions; ``n < 0``: one uint32 emission repeated ``-n`` times; ``n == 0``: a uint32 new time.
Every emission advances the time by one. If the count has its top bit set, its low bits are the version (1 or 2)
of the weighted variant, in LEB128 varints: item count, then groups ``k`` (bit 0: a new time varint follows;
``k >> 1`` items follow, each an emission varint and a weight, uint16/65535 in v1, float32 in v2); the time
advances by one after each group. Emissions encode ``allophone + state * (1 << 26)``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

FEATURE_TYPE = b"vector-f32"
ALIGNMENT_TYPE = b"flow-alignment"
PLAIN_ALIGNMENT_TAG = b"ALIGNRLE"
WEIGHTED_RLE_TAG = b"AALPHRLE"
STATE_SHIFT = 26
ALLOPHONE_MASK = (1 << STATE_SHIFT) - 1
WEIGHTED_FLAG = 1 << 31


class RecordError(ValueError):
    """A payload does not follow the record format; ``offset`` is the byte position inside the payload."""

    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(msg)
        self.offset = offset


class AlignmentItem(NamedTuple):
    """One aligned frame: time, allophone index, HMM state index and weight (1.0 in plain alignments)."""

    time: int
    allophone: int
    state: int
    weight: float = 1.0


def encode_emission(allophone: int, state: int) -> int:
    """``allophone + state * (1 << 26)``: the emission index of an allophone state."""
    if not 0 <= allophone <= ALLOPHONE_MASK:
        raise ValueError(f"allophone index {allophone} out of range 0..{ALLOPHONE_MASK}")
    if not 0 <= state < 64:
        raise ValueError(f"state index {state} out of range 0..63")
    return allophone + (state << STATE_SHIFT)


def decode_emission(emission: int) -> tuple[int, int]:
    """Emission index -> (allophone, state)."""
    return emission & ALLOPHONE_MASK, emission >> STATE_SHIFT


class _Reader:
    """Sequential little-endian reader over one payload, with errors that carry the offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RecordError(
                f"truncated record: need {n} bytes for {what} at payload offset {self.pos}, "
                f"payload has {len(self.data)}",
                self.pos,
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def varint(self, what: str) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise RecordError(f"varint for {what} too long at payload offset {self.pos}", self.pos)

    def type_name(self) -> bytes:
        start = self.pos
        n = self.u32("type name length")
        if n > 64:
            raise RecordError(f"implausible type name length {n} at payload offset {start}", start)
        return self.take(n, "type name")


def record_type(payload: bytes) -> str:
    """``"feat"``, ``"align"`` or ``"unknown"`` from the type name that starts a payload."""
    try:
        name = _Reader(payload).type_name()
    except RecordError:
        return "unknown"
    return {FEATURE_TYPE: "feat", ALIGNMENT_TYPE: "align"}.get(name, "unknown")


# -- features -------------------------------------------------------------------------------------
def encode_features(features: np.ndarray, times: Sequence[tuple[float, float]] | None = None) -> bytes:
    """Feature record of a (frames, dim) array; ``times`` default to 10 ms frames."""
    feats = np.asarray(features, dtype="<f4")
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D (frames, dim), got shape {feats.shape}")
    n, dim = feats.shape
    if times is None:
        times = [(0.01 * t, 0.01 * (t + 1)) for t in range(n)]
    if len(times) != n:
        raise ValueError(f"{len(times)} time stamps for {n} frames")
    rows = np.zeros(n, dtype=_frame_dtype(dim))
    rows["dim"] = dim
    rows["values"] = feats
    rows["times"] = np.asarray(times, dtype="<f8").reshape(n, 2)
    return b"".join([struct.pack("<I", len(FEATURE_TYPE)), FEATURE_TYPE, struct.pack("<I", n), rows.tobytes()])


def _frame_dtype(dim: int) -> np.dtype:
    """One frame of a feature record: uint32 dim, dim float32, two float64 times (packed, little-endian)."""
    return np.dtype([("dim", "<u4"), ("values", "<f4", (dim,)), ("times", "<f8", (2,))])


def decode_features(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Feature record -> (features (frames, dim) float32, times (frames, 2) float64)."""
    r = _Reader(payload)
    name = r.type_name()
    if name != FEATURE_TYPE:
        raise RecordError(f"not a feature record (type {name!r}, expected {FEATURE_TYPE!r})", 0)
    n = r.u32("frame count")
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 2), dtype=np.float64)
    start = r.pos
    dim = r.u32("dim of frame 0")
    dtype = _frame_dtype(dim)
    # fast path: every frame has the same dim, so the frames are one packed array
    if len(payload) - start == n * dtype.itemsize:
        rows = np.frombuffer(payload, dtype=dtype, count=n, offset=start)
        bad = np.flatnonzero(rows["dim"] != dim)
        if not bad.size:
            return rows["values"].astype(np.float32), rows["times"].astype(np.float64)
        t = int(bad[0])
        raise RecordError(f"frame {t} has dim {rows['dim'][t]}, frame 0 has {dim}", start + t * dtype.itemsize)
    r.pos = start
    values = np.zeros((n, dim), dtype=np.float32)
    times = np.zeros((n, 2), dtype=np.float64)
    for t in range(n):
        d = r.u32(f"dim of frame {t}")
        if d != dim:
            raise RecordError(f"frame {t} has dim {d}, frame 0 has {dim}", r.pos - 4)
        values[t] = np.frombuffer(r.take(4 * d, f"values of frame {t}"), dtype="<f4")
        times[t] = r.unpack("dd", f"times of frame {t}")
    if r.pos != len(payload):
        raise RecordError(f"{len(payload) - r.pos} stray bytes after {n} frames", r.pos)
    return values, times


# -- alignments -----------------------------------------------------------------------------------
def _varint_bytes(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _runs(emissions: list) -> list[tuple[int, list]]:
    """Split into (repeat, [emission]) runs for repeats and (0, explicit list) for the rest."""
    out: list[tuple[int, list]] = []
    i = 0
    while i < len(emissions):
        j = i
        while j < len(emissions) and emissions[j] == emissions[i] and j - i < 128:
            j += 1
        if j - i >= 2:
            out.append((j - i, [emissions[i]]))
        elif out and out[-1][0] == 0 and len(out[-1][1]) < 127:
            out[-1][1].append(emissions[i])
        else:
            out.append((0, [emissions[i]]))
        i = j
    return out


def encode_alignment(items: Sequence[tuple], *, weighted_version: int = 0, flag: int = 0) -> bytes:
    """Alignment record from ``(time, allophone, state[, weight])`` items (sorted by time).

    ``weighted_version`` 0 writes the run-length form (``ALIGNRLE``; ``AALPHRLE`` if any weight is not 1);
    1 or 2 write the weighted varint form (v1 quantises weights to uint16/65535, v2 keeps float32).
    """
    items = [AlignmentItem(*it) for it in items]
    head = [struct.pack("<I", len(ALIGNMENT_TYPE)), ALIGNMENT_TYPE, struct.pack("<i", flag), PLAIN_ALIGNMENT_TAG]
    if weighted_version == 0:
        with_weights = any(it.weight != 1.0 for it in items)
        head[-1] = WEIGHTED_RLE_TAG if with_weights else PLAIN_ALIGNMENT_TAG
        body = [struct.pack("<I", len(items))]
        expected_time = 0
        # consecutive frames are implicit; a gap in time is written as an explicit new time (n == 0)
        segments: list[list] = []
        for it in items:
            if it.time != expected_time or not segments:
                segments.append([it.time])
            segments[-1].append((encode_emission(it.allophone, it.state), it.weight))
            expected_time = it.time + 1

        def pack(em_w: tuple[int, float]) -> bytes:
            return struct.pack("<If", *em_w) if with_weights else struct.pack("<I", em_w[0])

        for seg in segments:
            if seg[0] != 0:
                body.append(struct.pack("<bI", 0, seg[0]))
            for repeat, ems in _runs(seg[1:]):
                if repeat:
                    body.append(struct.pack("<b", -repeat) + pack(ems[0]))
                else:
                    body.append(struct.pack("<b", len(ems)) + b"".join(pack(e) for e in ems))
        return b"".join(head + body)
    if weighted_version not in (1, 2):
        raise ValueError(f"weighted alignment version must be 1 or 2, got {weighted_version}")
    body = [struct.pack("<I", WEIGHTED_FLAG | weighted_version), _varint_bytes(len(items))]
    # group the items by time: one group per distinct time, consecutive times advance implicitly
    groups: list[tuple[int, list[AlignmentItem]]] = []
    for it in items:
        if groups and groups[-1][0] == it.time:
            groups[-1][1].append(it)
        else:
            groups.append((it.time, [it]))
    time = 0
    for t, group in groups:
        new_time = t != time
        body.append(_varint_bytes((len(group) << 1) | int(new_time)))
        if new_time:
            body.append(_varint_bytes(t))
        for it in group:
            body.append(_varint_bytes(encode_emission(it.allophone, it.state)))
            if weighted_version == 1:
                w = int(round(min(max(it.weight, 0.0), 1.0) * 65535))
                body.append(struct.pack("<H", w))
            else:
                body.append(struct.pack("<f", it.weight))
        time = t + 1
    return b"".join(head + body)


def decode_alignment(payload: bytes) -> list[AlignmentItem]:
    """Alignment record -> items ``(time, allophone, state, weight)``."""
    r = _Reader(payload)
    name = r.type_name()
    if name != ALIGNMENT_TYPE:
        raise RecordError(f"not an alignment record (type {name!r}, expected {ALIGNMENT_TYPE!r})", 0)
    r.unpack("i", "flag")
    tag_pos = r.pos
    tag = r.take(8, "alignment tag")
    if tag not in (PLAIN_ALIGNMENT_TAG, WEIGHTED_RLE_TAG):
        raise RecordError(f"unknown alignment tag {tag!r} at payload offset {tag_pos}", tag_pos)
    with_weights = tag == WEIGHTED_RLE_TAG
    count = r.u32("item count")
    out: list[AlignmentItem] = []
    if count & WEIGHTED_FLAG:
        version = count & ~WEIGHTED_FLAG
        if version not in (1, 2):
            raise RecordError(f"unknown weighted alignment version {version}", r.pos - 4)
        total = r.varint("item count")
        time = 0
        while len(out) < total:
            k = r.varint("group header")
            if k & 1:
                time = r.varint("time")
            for _ in range(k >> 1):
                allo, state = decode_emission(r.varint("emission"))
                if version == 1:
                    weight = r.unpack("H", "weight")[0] / 65535.0
                else:
                    weight = float(r.unpack("f", "weight")[0])
                out.append(AlignmentItem(time, allo, state, weight))
            time += 1
            if k >> 1 == 0 and not k & 1:
                raise RecordError(f"empty group in weighted alignment at payload offset {r.pos}", r.pos)
        return out
    time = 0

    def item() -> None:
        nonlocal time
        em = r.u32("emission")
        weight = float(r.unpack("f", "weight")[0]) if with_weights else 1.0
        allo, state = decode_emission(em)
        out.append(AlignmentItem(time, allo, state, weight))
        time += 1

    while len(out) < count:
        n = r.unpack("b", "run length")[0]
        if n > 0:
            for _ in range(n):
                item()
        elif n < 0:
            em = r.u32("emission")
            weight = float(r.unpack("f", "weight")[0]) if with_weights else 1.0
            allo, state = decode_emission(em)
            for _ in range(-n):
                out.append(AlignmentItem(time, allo, state, weight))
                time += 1
        else:
            time = r.u32("time")
    if len(out) != count:
        raise RecordError(f"alignment has {len(out)} items, header says {count}", r.pos)
    return out
