"""Orthographies as RETURNN's LmDataset reads them: corpus lines or Bliss XML segments, cut into symbols.

A text becomes symbols after removing ``(){}``, collapsing whitespace and stripping; anything in square
brackets (``[NOISE]``) is one symbol, upper-cased; otherwise chars (or, word based, space-separated words).
"""

from __future__ import annotations

import gzip
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence

from returnn_core.errors import DatasetError


def orthography_symbols(
    text: str, *, word_based: bool = False, upper_case_special: bool = True, square_brackets_for_specials: bool = True
) -> list[str]:
    """``text`` cut into chars (or words), a ``[...]`` special staying one symbol; no other processing."""
    out: list[str] = []
    depth = 0  # inside how many square brackets
    for c in text:
        if depth:
            depth += 1 if c == "[" else -1 if c == "]" else 0
            out[-1] += c.upper() if upper_case_special and c not in "[]" else c
        elif square_brackets_for_specials and c == "[":
            depth = 1
            out.append("[")
        elif not word_based:
            out.append(c)
        elif c.isspace():
            out.append("")
        else:
            if not out:
                out.append("")
            out[-1] += c
    return [w for w in out if w] if word_based else out  # a special right after a space leaves no empty word


def parse_orthography(
    text: str,
    *,
    prefix: Sequence[str] = (),
    postfix: Sequence[str] = ("[END]",),
    remove_chars: str = "(){}",
    collapse_spaces: bool = True,
    final_strip: bool = True,
    **kwargs: bool,
) -> list[str]:
    """RETURNN's full processing of an orthography into symbols, with ``prefix``/``postfix`` symbols around it
    (``kwargs`` go to :func:`orthography_symbols`)."""
    for c in remove_chars:
        text = text.replace(c, "")
    if collapse_spaces:
        text = " ".join(text.split())
    if final_strip:
        text = text.strip()
    return [*prefix, *orthography_symbols(text, **kwargs), *postfix]


def corpus_orthographies(path: str) -> Iterator[tuple[str, str]]:
    """``(where, orthography)`` of a corpus file (maybe gzipped): each ``<segment>``'s ``<orth>`` of a Bliss XML
    corpus, whitespace collapsed, or else each non-empty stripped line (UTF-8, else Latin-1); ``where`` is
    ``path:line`` or ``path segment N`` for messages."""
    if not os.path.isfile(path):
        raise DatasetError(f"corpus file {path} does not exist")
    try:
        if _is_xml(path):
            for n, orth in enumerate(_bliss_orths(path), start=1):
                yield f"{path} segment {n}", orth
            return
        with _open(path) as f:
            for n, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("latin-1")
                line = line.strip()
                if line:
                    yield f"{path}:{n}", line
    except (OSError, EOFError) as exc:
        raise DatasetError(f"corpus file {path} cannot be read: {exc}") from None


def _open(path: str):
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _is_xml(path: str) -> bool:
    """Whether the file starts like XML (its first element parses), as RETURNN tells Bliss from text."""
    try:
        with _open(path) as f:
            next(ET.iterparse(f, events=("start",)))
        return True
    except (ET.ParseError, StopIteration):
        return False


def _bliss_orths(path: str) -> Iterator[str]:
    with _open(path) as f:
        try:
            for _, elem in ET.iterparse(f, events=("end",)):
                if elem.tag == "segment":
                    orth = elem.find("orth")
                    yield " ".join((orth.text or "").split()) if orth is not None else ""
                    elem.clear()
        except ET.ParseError as exc:
            raise DatasetError(f"Bliss corpus {path} is not well-formed XML: {exc}") from None
