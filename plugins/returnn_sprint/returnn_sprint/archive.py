"""Sprint cache archives: read and write ``SP_ARC1`` files as RASR's ``Core::FileArchive`` does, and bundles.

Layout: header ``SP_ARC1\\0`` + one flag byte (0 while writing or without a file-info table, non-zero once the
table is written). Each entry: uint32 0xAA55AA55, uint32 name length, name, uint32 size, uint32 compressed size
(0 = stored raw), uint32 checksum (RASR writes 0), payload (zlib when compressed), uint32 0x55AA55AA; an empty
name marks free space left by a removal. An entry's position (in the table and when scanned) is the offset of
its size field, right after the name. The table at the end: uint32 count, per entry name (uint32 length +
bytes), uint64 position, uint32 size, uint32 compressed size; uint32 free-space count, per free entry uint64
position + uint32 size; uint64 offset of that free-space list; uint64 offset of the table (the last 8 bytes).
RETURNN's Python writer puts a uint64 0 where RASR has the free-space part; both are read.
"""

from __future__ import annotations

import difflib
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from returnn_core.errors import DatasetError
from returnn_sprint import records
from returnn_sprint.records import AlignmentItem, RecordError

MAGIC = b"SP_ARC1\0"
HEADER_SIZE = len(MAGIC) + 1
ENTRY_START = 0xAA55AA55
ENTRY_END = 0x55AA55AA
ATTRIBS_SUFFIX = ".attribs"
MAX_NAME_LEN = 1 << 16


class SprintCacheError(DatasetError):
    """A Sprint cache file is missing, truncated or corrupt, or a name is not in it."""


@dataclass(frozen=True)
class EntryInfo:
    """Where one entry lives in its archive: ``pos`` is the offset of its size field, right after the name."""

    name: str
    pos: int
    size: int
    comp: int

    @property
    def stored_size(self) -> int:
        """Bytes of the payload as stored (compressed size, or size if raw)."""
        return self.comp or self.size

    @property
    def start(self) -> int:
        """Offset of the entry's start marker (its position is right after the name)."""
        return self.pos - 8 - len(self.name.encode("utf8"))

    @property
    def payload_pos(self) -> int:
        """Offset of the stored payload (after size, compressed size and checksum)."""
        return self.pos + 12


class _NameIndex:
    """Full names plus a lookup by unique short name (any ``/``-separated suffix of a full name)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self._full = set(self.names)
        self._suffixes: dict[str, list[str]] | None = None

    def resolve(self, name: str, *, where: str) -> str:
        if name in self._full:
            return name
        if self._suffixes is None:
            self._suffixes = {}
            for full in self.names:
                parts = full.split("/")
                for i in range(1, len(parts)):
                    self._suffixes.setdefault("/".join(parts[i:]), []).append(full)
        hits = self._suffixes.get(name, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise SprintCacheError(
                f"{where}: short name {name!r} is ambiguous: {', '.join(sorted(hits)[:5])}; use the full name"
            )
        close = difflib.get_close_matches(name, list(self._suffixes) + self.names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SprintCacheError(f"{where}: no entry named {name!r} ({len(self.names)} entries){hint}")


class _EntryNames:
    """Entry names of an archive or a bundle (``entries`` in order); short names resolve when unique."""

    #: how errors name the container
    kind = "Sprint cache"
    path: str
    entries: dict[str, Any]
    _index: _NameIndex | None = None

    def names(self, *, include_attribs: bool = False) -> list[str]:
        """Entry names in order (without the ``.attribs`` side entries unless asked)."""
        return [n for n in self.entries if include_attribs or not n.endswith(ATTRIBS_SUFFIX)]

    file_list = names

    def resolve_name(self, name: str) -> str:
        """The full entry name for a full or unique short (suffix) segment name."""
        if name in self.entries:
            return name
        if self._index is None:
            self._index = _NameIndex(self.names())
        return self._index.resolve(name, where=f"{self.kind} {self.path}")


class FileArchive(_EntryNames):
    """One Sprint cache archive, opened for reading (``mode="r"``) or writing (``mode="w"``).

    Reading an archive without a file-info table scans its entries; ``recover=True`` then skips a broken entry
    (recorded in :attr:`problems`) and goes on at the next start marker instead of stopping.
    """

    def __init__(
        self,
        path: str,
        mode: str = "r",
        *,
        compress: bool = False,
        with_table: bool = True,
        recover: bool = False,
    ) -> None:
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
        self.path = os.fspath(path)
        self.mode = mode
        self.compress = compress
        self.with_table = with_table
        self.recover = recover
        self.entries: dict[str, EntryInfo] = {}
        #: (position, size) of each free-space entry (left by a removal)
        self.free: list[tuple[int, int]] = []
        #: broken entries skipped while scanning with ``recover``
        self.problems: list[str] = []
        self.has_table = False
        #: how the table ends: ``"rasr"`` (free-space list) or ``"returnn"`` (uint64 0); None without a table
        self.trailer: str | None = None
        self._lock = threading.Lock()
        try:
            self._f = open(self.path, "rb" if mode == "r" else "w+b")
        except OSError as exc:
            raise SprintCacheError(f"Sprint cache {self.path}: cannot open: {exc.strerror}") from None
        if mode == "r":
            try:
                self._open_for_reading()
            except BaseException:
                self._f.close()
                raise
        else:
            self._f.write(MAGIC + b"\0")  # the table flag is set on close, once the table is written

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, msg: str, offset: int) -> SprintCacheError:
        return SprintCacheError(f"Sprint cache {self.path}: {msg} at offset {offset}")

    def _read_at(self, offset: int, n: int, what: str) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise self._error(f"truncated file: {what} needs {n} bytes, only {len(data)} left", offset)
        return data

    # -- reading --------------------------------------------------------------------------------
    def _open_for_reading(self) -> None:
        head = self._f.read(HEADER_SIZE)
        if len(head) < HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
            raise self._error(f"not a Sprint cache archive (header {head[:8]!r}, expected {MAGIC!r})", 0)
        self._file_size = os.fstat(self._f.fileno()).st_size
        self.has_table = head[-1] != 0
        if self.has_table:
            self._read_table()
        else:
            self._scan()

    def _read_table(self) -> None:
        tail_pos = self._file_size - 8
        if tail_pos < HEADER_SIZE + 4:
            raise self._error("truncated file: the header flag promises a file-info table but the file ends", HEADER_SIZE)
        (table_pos,) = struct.unpack("<Q", self._read_at(tail_pos, 8, "table offset"))
        if not HEADER_SIZE <= table_pos <= tail_pos - 4:
            raise self._error(f"corrupt table offset {table_pos} in the last 8 bytes (file size {self._file_size})", tail_pos)
        (count,) = struct.unpack("<I", self._read_at(table_pos, 4, "table entry count"))
        pos = table_pos + 4
        for i in range(count):
            (name_len,) = struct.unpack("<I", self._read_at(pos, 4, f"name length of table entry {i}"))
            if name_len > MAX_NAME_LEN:
                raise self._error(f"corrupt table entry {i}: name length {name_len}", pos)
            raw = self._read_at(pos + 4, name_len, f"name of table entry {i}")
            name = raw.decode("utf8", "replace")
            entry_pos, size, comp = struct.unpack("<QII", self._read_at(pos + 4 + name_len, 16, f"table entry {name!r}"))
            if not HEADER_SIZE + 8 + name_len <= entry_pos <= table_pos - 12:
                raise self._error(f"table entry {name!r} points outside the entries ({entry_pos})", pos)
            self.entries.setdefault(name, EntryInfo(name, entry_pos, size, comp))
            pos += 4 + name_len + 16
        self._read_free_list(pos, tail_pos)

    def _read_free_list(self, pos: int, tail_pos: int) -> None:
        """The part between the entry table and the last 8 bytes: RASR's free-space list or RETURNN's uint64 0."""
        rest = tail_pos - pos
        if rest == 8 and struct.unpack("<Q", self._read_at(pos, 8, "trailer"))[0] == 0:
            self.trailer = "returnn"
            return
        if rest < 12:
            raise self._error(f"file-info table ends with {rest} bytes, expected a free-space list or a uint64 0", pos)
        (count,) = struct.unpack("<I", self._read_at(pos, 4, "free-space count"))
        if rest != 4 + 12 * count + 8:
            raise self._error(f"free-space list of {count} entries does not fit the {rest} bytes before the end", pos)
        for i in range(count):
            self.free.append(struct.unpack("<QI", self._read_at(pos + 4 + 12 * i, 12, f"free-space entry {i}")))
        (free_pos,) = struct.unpack("<Q", self._read_at(tail_pos - 8, 8, "free-space list offset"))
        if free_pos != pos:
            raise self._error(f"free-space list offset {free_pos} disagrees with the list at {pos}", tail_pos - 8)
        self.trailer = "rasr"

    def _scan(self) -> None:
        pos = HEADER_SIZE
        while pos < self._file_size:
            try:
                pos = self._scan_entry(pos)
            except SprintCacheError as exc:
                if not self.recover:
                    raise SprintCacheError(
                        f"{exc}; the archive has no file-info table (its writer did not finish?): "
                        "read it with recover to skip broken entries"
                    ) from None
                self.problems.append(str(exc))
                next_pos = self._find_start_marker(pos + 1)
                if next_pos is None:
                    break
                pos = next_pos

    def _scan_entry(self, pos: int) -> int:
        """Record the entry (or free space) starting at ``pos``; the offset after it."""
        marker, name_len = struct.unpack("<II", self._read_at(pos, 8, "entry header"))
        if marker != ENTRY_START:
            raise self._error(f"corrupt entry: start marker {marker:#010x}, expected {ENTRY_START:#010x}", pos)
        if name_len > MAX_NAME_LEN:
            raise self._error(f"corrupt entry: name length {name_len}", pos + 4)
        name = self._read_at(pos + 8, name_len, "entry name").decode("utf8", "replace")
        entry_pos = pos + 8 + name_len
        size, comp, _ = struct.unpack("<III", self._read_at(entry_pos, 12, f"sizes of entry {name!r}"))
        # free space keeps its length in the size field; a file's payload is compressed size bytes if compressed
        end_pos = entry_pos + 12 + (comp or size if name else size)
        what = f"entry {name!r}" if name else "free-space entry"
        (marker,) = struct.unpack("<I", self._read_at(end_pos, 4, f"end marker of {what}"))
        if marker != ENTRY_END:
            raise self._error(f"corrupt {what}: end marker {marker:#010x}, expected {ENTRY_END:#010x}", end_pos)
        if name:
            self.entries.setdefault(name, EntryInfo(name, entry_pos, size, comp))
        else:
            self.free.append((entry_pos, size))
        return end_pos + 4

    def _find_start_marker(self, pos: int) -> int | None:
        """The offset of the next start marker at or after ``pos``."""
        needle = struct.pack("<I", ENTRY_START)
        while pos < self._file_size:
            self._f.seek(pos)
            chunk = self._f.read(1 << 20)
            hit = chunk.find(needle)
            if hit >= 0:
                return pos + hit
            if len(chunk) < len(needle):
                return None
            pos += len(chunk) - len(needle) + 1
        return None

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def entry_info(self, name: str) -> EntryInfo:
        """Position and sizes of an entry."""
        return self.entries[self.resolve_name(name)]

    def read_raw(self, name: str) -> bytes:
        """Uncompressed payload of an entry (full or unique short name); checks markers, sizes and checksum."""
        info = self.entries[self.resolve_name(name)]
        raw = info.name.encode("utf8")
        with self._lock:
            head = self._read_at(info.start, 8 + len(raw), f"start of entry {info.name!r}")
            marker, name_len = struct.unpack("<II", head[:8])
            if marker != ENTRY_START or name_len != len(raw) or head[8:] != raw:
                raise self._error(
                    f"entry {info.name!r}: its start marker and name are not right before its position {info.pos}",
                    info.start,
                )
            size, comp, checksum = struct.unpack("<III", self._read_at(info.pos, 12, f"sizes of entry {info.name!r}"))
            if (size, comp) != (info.size, info.comp):
                raise self._error(
                    f"entry {info.name!r}: sizes {size}/{comp} disagree with the table's {info.size}/{info.comp}", info.pos
                )
            stored = self._read_at(info.payload_pos, info.stored_size, f"payload of entry {info.name!r}")
            end_pos = info.payload_pos + info.stored_size
            (marker,) = struct.unpack("<I", self._read_at(end_pos, 4, f"end marker of entry {info.name!r}"))
        if marker != ENTRY_END:
            raise self._error(f"corrupt entry {info.name!r}: end marker {marker:#010x}", end_pos)
        # RASR writes 0 and never checks it; a non-zero checksum is taken as CRC-32 of the stored bytes
        if checksum and zlib.crc32(stored) != checksum:
            raise self._error(f"checksum mismatch in entry {info.name!r}", info.payload_pos)
        if not info.comp:
            return stored
        try:
            data = zlib.decompress(stored)
        except zlib.error as exc:
            raise self._error(f"entry {info.name!r}: corrupt compressed payload ({exc})", info.payload_pos) from None
        if len(data) != info.size:
            raise self._error(
                f"entry {info.name!r}: {len(data)} bytes after decompression, expected {info.size}", info.payload_pos
            )
        return data

    def _decode(self, name: str, decode, what: str):
        full = self.resolve_name(name)
        try:
            return decode(self.read_raw(full))
        except RecordError as exc:
            offset = self.entries[full].payload_pos + exc.offset
            raise self._error(f"entry {full!r}: bad {what} record: {exc}", offset) from None

    def read_features(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features (frames, dim) float32, times (frames, 2)) of a feature entry."""
        return self._decode(name, records.decode_features, "feature")

    def read_alignment(self, name: str) -> list[AlignmentItem]:
        """Items ``(time, allophone, state, weight)`` of an alignment entry."""
        return self._decode(name, records.decode_alignment, "alignment")

    def read(self, name: str, typ: str = "default"):
        """Entry by type: ``"feat"``, ``"align"``, ``"raw"`` bytes, or ``"default"`` (from the record type)."""
        if typ == "default":
            typ = records.record_type(self.read_raw(name))
        if typ == "feat":
            return self.read_features(name)
        if typ == "align":
            return self.read_alignment(name)
        if typ in ("raw", "unknown"):
            return self.read_raw(name)
        raise ValueError(f"unknown entry type {typ!r}; use 'feat', 'align', 'raw' or 'default'")

    # -- writing --------------------------------------------------------------------------------
    def add_raw(self, name: str, payload: bytes) -> None:
        """Append one entry (compressed if the archive was opened with ``compress=True``)."""
        if self.mode != "w":
            raise SprintCacheError(f"Sprint cache {self.path}: opened for reading, cannot add {name!r}")
        raw_name = name.encode("utf8")
        if not raw_name:
            raise SprintCacheError(f"Sprint cache {self.path}: an entry needs a name (an empty name marks free space)")
        if name in self.entries:
            raise SprintCacheError(f"Sprint cache {self.path}: entry {name!r} is already in the archive")
        stored = zlib.compress(payload) if self.compress else payload
        comp = len(stored) if self.compress else 0
        self._f.seek(0, os.SEEK_END)
        pos = self._f.tell() + 8 + len(raw_name)
        # one write per entry: a crash leaves whole entries and at most one torn tail, which a scan reports
        self._f.write(
            b"".join(
                [
                    struct.pack("<II", ENTRY_START, len(raw_name)),
                    raw_name,
                    struct.pack("<III", len(payload), comp, 0),
                    stored,
                    struct.pack("<I", ENTRY_END),
                ]
            )
        )
        self.entries[name] = EntryInfo(name, pos, len(payload), comp)

    def add_features(
        self,
        name: str,
        features: np.ndarray,
        times: Sequence[tuple[float, float]] | None = None,
        *,
        attribs: bool = True,
    ) -> None:
        """Append a feature entry (frames, dim), plus the ``.attribs`` side entry Sprint writes."""
        self.add_raw(name, records.encode_features(features, times))
        if attribs:
            xml = (
                '<flow-attributes>\n  <flow-attribute name="datatype" value="vector-f32"/>\n'
                f'  <flow-attribute name="frames" value="{len(features)}"/>\n</flow-attributes>\n'
            )
            self.add_raw(name + ATTRIBS_SUFFIX, xml.encode("utf8"))

    def add_alignment(self, name: str, items: Sequence[tuple], *, weighted_version: int = 0) -> None:
        """Append an alignment entry from ``(time, allophone, state[, weight])`` items."""
        self.add_raw(name, records.encode_alignment(items, weighted_version=weighted_version))

    def _write_table(self) -> None:
        self._f.seek(0, os.SEEK_END)
        table_pos = self._f.tell()
        parts = [struct.pack("<I", len(self.entries))]
        for info in self.entries.values():
            raw = info.name.encode("utf8")
            parts.append(struct.pack("<I", len(raw)) + raw + struct.pack("<QII", info.pos, info.size, info.comp))
        free_pos = table_pos + sum(len(p) for p in parts)
        parts.append(struct.pack("<I", 0))  # this writer never removes, so the free-space list is empty
        parts.append(struct.pack("<QQ", free_pos, table_pos))
        self._f.write(b"".join(parts))
        self._f.flush()
        self._f.seek(len(MAGIC))
        self._f.write(b"\1")

    def close(self) -> None:
        """Finish (write the table if asked) and close the file."""
        if self._f.closed:
            return
        try:
            if self.mode == "w" and self.with_table:
                self._write_table()
        finally:
            self._f.close()

    def __enter__(self) -> FileArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None and not f.closed and self.mode == "r":
            f.close()


class FileArchiveBundle(_EntryNames):
    """A bundle file: one archive path per line (relative paths are relative to the bundle), read as one.

    For a name in several archives, the first archive wins.
    """

    kind = "Sprint cache bundle"

    def __init__(self, path: str, *, recover: bool = False) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, encoding="utf8") as f:
                lines = [line.strip() for line in f]
        except OSError as exc:
            raise SprintCacheError(f"Sprint cache bundle {self.path}: cannot open: {exc.strerror}") from None
        base = os.path.dirname(os.path.abspath(self.path))
        self.archives: list[FileArchive] = []
        self.entries: dict[str, FileArchive] = {}
        for lineno, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            archive_path = line if os.path.isabs(line) else os.path.join(base, line)
            if not os.path.exists(archive_path):
                raise SprintCacheError(f"Sprint cache bundle {self.path} line {lineno}: no such archive {line!r}")
            archive = FileArchive(archive_path, recover=recover)
            self.archives.append(archive)
            for name in archive.names(include_attribs=True):
                self.entries.setdefault(name, archive)

    @property
    def problems(self) -> list[str]:
        """Broken entries its archives skipped while scanning with ``recover``."""
        return [problem for archive in self.archives for problem in archive.problems]

    def archive_of(self, name: str) -> FileArchive:
        """The archive holding ``name``."""
        return self.entries[self.resolve_name(name)]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read_raw(self, name: str) -> bytes:
        """Uncompressed payload of an entry."""
        return self.archive_of(name).read_raw(self.resolve_name(name))

    def read_features(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, times) of a feature entry."""
        return self.archive_of(name).read_features(self.resolve_name(name))

    def read_alignment(self, name: str) -> list[AlignmentItem]:
        """Items of an alignment entry."""
        return self.archive_of(name).read_alignment(self.resolve_name(name))

    def read(self, name: str, typ: str = "default"):
        """Entry by type, as :meth:`FileArchive.read`."""
        return self.archive_of(name).read(self.resolve_name(name), typ)

    def entry_info(self, name: str) -> EntryInfo:
        """Position and sizes of an entry."""
        full = self.resolve_name(name)
        return self.entries[full].entries[full]

    def close(self) -> None:
        """Close all archives."""
        for archive in self.archives:
            archive.close()

    def __enter__(self) -> FileArchiveBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_archive_file(path: str) -> bool:
    """Whether ``path`` starts with the archive magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_file_archive(path: str, *, recover: bool = False) -> FileArchive | FileArchiveBundle:
    """Open an archive, or a bundle (any file that is not an archive is read as a bundle list)."""
    if not os.path.exists(path):
        raise SprintCacheError(f"Sprint cache {path}: no such file")
    if is_archive_file(path):
        return FileArchive(path, recover=recover)
    return FileArchiveBundle(path, recover=recover)
