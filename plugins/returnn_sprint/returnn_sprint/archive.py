"""Sprint cache archives: read and write ``SP_ARC1`` files, with or without the file-info table, and bundles.

Layout: header ``SP_ARC1\\0`` + one byte (1 = a file-info table is at the end). Each entry: uint32 0xAA55AA55,
int32 name length, name, int32 size, int32 compressed size (0 = stored raw), int32 checksum (CRC-32 of the
stored bytes; 0 = unchecked), payload (zlib when compressed), uint32 0x55AA55AA. The table: uint32 count, per
entry uint32 name length, name, int64 entry position, uint32 size, uint32 compressed size; then int64 0 and
int64 table position. Without the table the entries are found by scanning the file.
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
    """Where one entry lives in its archive."""

    name: str
    pos: int
    size: int
    comp: int

    @property
    def stored_size(self) -> int:
        """Bytes of the payload as stored (compressed size, or size if raw)."""
        return self.comp or self.size


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
    """One Sprint cache archive, opened for reading (``mode="r"``) or writing (``mode="w"``)."""

    def __init__(self, path: str, mode: str = "r", *, compress: bool = False, with_table: bool = True) -> None:
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
        self.path = os.fspath(path)
        self.mode = mode
        self.compress = compress
        self.with_table = with_table
        self.entries: dict[str, EntryInfo] = {}
        self.has_table = False
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
        self.has_table = head[-1] == 1
        if self.has_table:
            self._read_table()
        else:
            self._scan()

    def _read_table(self) -> None:
        tail_pos = self._file_size - 16
        if tail_pos < HEADER_SIZE:
            raise self._error("truncated file: header promises a file-info table but the file ends", HEADER_SIZE)
        zero, table_pos = struct.unpack("<qq", self._read_at(tail_pos, 16, "table trailer"))
        if zero != 0 or not HEADER_SIZE <= table_pos <= tail_pos - 4:
            raise self._error(f"corrupt table trailer (table position {table_pos})", tail_pos)
        (count,) = struct.unpack("<I", self._read_at(table_pos, 4, "table entry count"))
        pos = table_pos + 4
        for i in range(count):
            (name_len,) = struct.unpack("<I", self._read_at(pos, 4, f"name length of table entry {i}"))
            if name_len > MAX_NAME_LEN:
                raise self._error(f"corrupt table entry {i}: name length {name_len}", pos)
            name = self._read_at(pos + 4, name_len, f"name of table entry {i}").decode("utf8", "replace")
            entry_pos, size, comp = struct.unpack("<qII", self._read_at(pos + 4 + name_len, 16, f"table entry {name!r}"))
            if not HEADER_SIZE <= entry_pos < table_pos:
                raise self._error(f"table entry {name!r} points outside the file ({entry_pos})", pos)
            self.entries[name] = EntryInfo(name, entry_pos, size, comp)
            pos += 4 + name_len + 16
        if pos != tail_pos:
            raise self._error(f"file-info table has {tail_pos - pos} stray bytes after {count} entries", pos)

    def _parse_entry_header(self, pos: int) -> tuple[EntryInfo, int, int]:
        """Entry at ``pos`` -> (info, checksum, payload position)."""
        marker, name_len = struct.unpack("<Ii", self._read_at(pos, 8, "entry header"))
        if marker != ENTRY_START:
            raise self._error(f"corrupt entry: start marker {marker:#010x}, expected {ENTRY_START:#010x}", pos)
        if not 0 <= name_len <= MAX_NAME_LEN:
            raise self._error(f"corrupt entry: name length {name_len}", pos + 4)
        name = self._read_at(pos + 8, name_len, "entry name").decode("utf8", "replace")
        size, comp, checksum = struct.unpack("<iiI", self._read_at(pos + 8 + name_len, 12, f"sizes of entry {name!r}"))
        if size < 0 or comp < 0:
            raise self._error(f"corrupt entry {name!r}: size {size}, compressed size {comp}", pos + 8 + name_len)
        return EntryInfo(name, pos, size, comp), checksum, pos + 8 + name_len + 12

    def _scan(self) -> None:
        pos = HEADER_SIZE
        while pos < self._file_size:
            info, _, payload_pos = self._parse_entry_header(pos)
            end_pos = payload_pos + info.stored_size
            (marker,) = struct.unpack("<I", self._read_at(end_pos, 4, f"end marker of entry {info.name!r}"))
            if marker != ENTRY_END:
                raise self._error(f"corrupt entry {info.name!r}: end marker {marker:#010x}", end_pos)
            self.entries[info.name] = info
            pos = end_pos + 4

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def entry_info(self, name: str) -> EntryInfo:
        """Position and sizes of an entry."""
        return self.entries[self.resolve_name(name)]

    def read_raw(self, name: str) -> bytes:
        """Uncompressed payload of an entry (full or unique short name); checks sizes and checksum."""
        info = self.entries[self.resolve_name(name)]
        with self._lock:
            found, checksum, payload_pos = self._parse_entry_header(info.pos)
            if found.name != info.name:
                raise self._error(f"table says entry {info.name!r} but found {found.name!r}", info.pos)
            stored = self._read_at(payload_pos, found.stored_size, f"payload of entry {info.name!r}")
            (marker,) = struct.unpack("<I", self._read_at(payload_pos + found.stored_size, 4, "entry end marker"))
        if marker != ENTRY_END:
            raise self._error(f"corrupt entry {info.name!r}: end marker {marker:#010x}", payload_pos + len(stored))
        if checksum and zlib.crc32(stored) != checksum:
            raise self._error(f"checksum mismatch in entry {info.name!r}", payload_pos)
        if not found.comp:
            return stored
        try:
            data = zlib.decompress(stored)
        except zlib.error as exc:
            raise self._error(f"entry {info.name!r}: corrupt compressed payload ({exc})", payload_pos) from None
        if len(data) != found.size:
            raise self._error(f"entry {info.name!r}: {len(data)} bytes after decompression, expected {found.size}", payload_pos)
        return data

    def _decode(self, name: str, decode, what: str):
        full = self.resolve_name(name)
        try:
            return decode(self.read_raw(full))
        except RecordError as exc:
            payload_pos = self.entries[full].pos + 8 + len(full.encode("utf8")) + 12
            raise self._error(f"entry {full!r}: bad {what} record: {exc}", payload_pos + exc.offset) from None

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
        stored = zlib.compress(payload) if self.compress else payload
        comp = len(stored) if self.compress else 0
        self._f.seek(0, os.SEEK_END)
        pos = self._f.tell()
        self._f.write(struct.pack("<Ii", ENTRY_START, len(raw_name)) + raw_name)
        self._f.write(struct.pack("<iiI", len(payload), comp, zlib.crc32(stored)))
        self._f.write(stored)
        self._f.write(struct.pack("<I", ENTRY_END))
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
            parts.append(struct.pack("<I", len(raw)) + raw + struct.pack("<qII", info.pos, info.size, info.comp))
        parts.append(struct.pack("<qq", 0, table_pos))
        self._f.write(b"".join(parts))
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

    def __init__(self, path: str) -> None:
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
            archive = FileArchive(archive_path)
            self.archives.append(archive)
            for name in archive.names(include_attribs=True):
                self.entries.setdefault(name, archive)

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


def open_file_archive(path: str) -> FileArchive | FileArchiveBundle:
    """Open an archive, or a bundle (any file that is not an archive is read as a bundle list)."""
    if not os.path.exists(path):
        raise SprintCacheError(f"Sprint cache {path}: no such file")
    if is_archive_file(path):
        return FileArchive(path)
    return FileArchiveBundle(path)
