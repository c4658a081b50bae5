"""RETURNN's ``chunking`` (one size:step, or one per data key) and ``context_window``: cutting seqs into slices."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from returnn_core.datasets.seqs import DatasetSeq, SeqSlice
from returnn_core.errors import ConfigError

Sizes = int | dict[str, int]


def _positive(value: Any) -> int:
    size = int(value)
    if size <= 0:
        raise ValueError
    return size


def _sizes(value: Any) -> Sizes:
    if isinstance(value, Mapping):
        if not value:
            raise ValueError
        return {str(k): _positive(v) for k, v in value.items()}
    return _positive(value)


def parse_chunking(chunking: object) -> tuple[Sizes, Sizes] | None:
    """RETURNN's ``chunking`` -> ``(size, step)``, each an int or ``{key: frames}``; ``None``/0/"0" -> no chunking.

    Forms: ``"size:step"``, ``"size"``, ``size``, ``(size, step)``, ``{"data": 12, "classes": 6}`` (step = size)
    and ``({"data": 12, "classes": 6}, {"data": 6, "classes": 3})``.
    """
    if chunking in (None, 0, "0", "", "none"):
        return None
    if isinstance(chunking, (list, tuple)) and len(chunking) == 2 and chunking[0] in (None, 0):
        return None  # RETURNN's chunk_size 0: off, whatever the step
    try:
        if isinstance(chunking, str):
            size_s, _, step_s = chunking.partition(":")
            size: Sizes = _positive(size_s)
            step: Sizes = _positive(step_s) if step_s else size
        elif isinstance(chunking, (list, tuple)):
            size_v, step_v = chunking
            size = _sizes(size_v)
            step = size if step_v in (None, 0) else _sizes(step_v)
        else:
            size = step = _sizes(chunking)
    except (ValueError, TypeError):
        raise ConfigError(
            f"chunking {chunking!r}: expected 'size:step' (positive ints), a size, or per-key sizes "
            "like {'data': 12, 'classes': 6}"
        ) from None
    if isinstance(size, dict) != isinstance(step, dict):
        if isinstance(size, int):
            raise ConfigError(f"chunking {chunking!r}: per-key steps need per-key sizes")
        step = {k: int(step) for k in size}  # type: ignore[arg-type]
    if isinstance(size, dict) and isinstance(step, dict) and set(step) != set(size):
        raise ConfigError(f"chunking {chunking!r}: sizes are for keys {sorted(size)}, steps for {sorted(step)}")
    return size, step


def parse_context_window(context_window: object) -> dict[str, tuple[int, int]]:
    """RETURNN's ``context_window`` (an int for ``data``, or ``{key: frames}``) -> ``{key: (left, right)}``.

    A window of ``w`` frames adds ``(w - 1) // 2`` frames before each chunk and the rest after it.
    """
    if context_window in (None, 0, 1):
        return {}
    windows = context_window if isinstance(context_window, Mapping) else {"data": context_window}
    out = {}
    for key, w in windows.items():
        if not isinstance(w, int) or w < 1:
            raise ConfigError(f"context_window {context_window!r}: the window of {key!r} must be an int >= 1")
        out[str(key)] = ((w - 1) // 2, (w - 1) - (w - 1) // 2)
    return out


def chunk_seq(
    seq: DatasetSeq,
    chunking: tuple[Sizes, Sizes] | None,
    *,
    key: str = "data",
    min_chunk_size: int = 0,
    context: Mapping[str, tuple[int, int]] | None = None,
) -> Iterator[SeqSlice]:
    """Cut ``seq`` into windows of ``size`` frames every ``step`` frames (from ``parse_chunking``).

    With one size, the keys as long as ``key`` are cut and the others taken whole; with per-key sizes each
    listed key is cut by its own size and step, and the chunks follow ``key`` (``data``, else the first
    listed key). ``context`` (from ``parse_context_window``) widens each chunk of a key, zero-padded.
    """
    if chunking is not None and isinstance(chunking[0], dict):
        sizes, steps = chunking[0], chunking[1]
        assert isinstance(steps, dict)
        sizes = {k: v for k, v in sizes.items() if k in seq.features}
        key = key if key in sizes else next(iter(sizes), key)
    else:
        sizes = steps = {}
    if key not in seq.features:
        key = next(iter(seq.features))
    length = seq.length(key)
    if chunking is None:
        # keys of another length (a target with an end symbol) stay whole
        yield _slice(seq, 0, length, frozenset(k for k in seq.features if seq.length(k) == length), {}, context)
        return
    if sizes:
        t = dict.fromkeys(sizes, 0)
        while t[key] < length:
            bounds = {k: (t[k], min(t[k] + sizes[k], seq.length(k))) for k in sizes}
            yield _slice(seq, *bounds[key], frozenset(sizes), bounds, context)
            t = {k: t[k] + steps[k] for k in sizes}  # type: ignore[index]
            if length - t[key] <= min_chunk_size:
                break
        return
    size, step = chunking
    assert isinstance(size, int) and isinstance(step, int)
    chunked = frozenset(k for k in seq.features if seq.length(k) == length)
    t0 = 0
    while t0 < length:
        yield _slice(seq, t0, min(t0 + size, length), chunked, {}, context)
        t0 += step
        if length - t0 <= min_chunk_size:
            break


def _slice(
    seq: DatasetSeq, start: int, end: int, chunked: frozenset[str], bounds: Mapping[str, tuple[int, int]],
    context: Mapping[str, tuple[int, int]] | None,
) -> SeqSlice:
    if context:
        bounds = dict(bounds)
        for k, (left, right) in context.items():
            if k in seq.features:
                s, e = bounds.get(k, (start, end) if k in chunked else (0, seq.length(k)))
                bounds[k] = (s - left, e + right)
    return SeqSlice(seq, start, end, chunked, bounds)
