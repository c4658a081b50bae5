"""``returnn sprint-cache``: list the entries of a Sprint cache archive or bundle and show their contents."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from returnn_core.errors import ReturnnError
from returnn_sprint.allophones import read_allophone_file
from returnn_sprint.archive import FileArchive, open_file_archive
from returnn_sprint.records import record_type


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="returnn sprint-cache", description="Inspect Sprint cache archives and bundles.")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list entry names (with type, frames and stored size)")
    ls.add_argument("file", help="archive or bundle file")
    ls.add_argument("--attribs", action="store_true", help="also list the .attribs side entries")
    show = sub.add_parser("show", help="print entries (features, alignments or raw text)")
    show.add_argument("file", help="archive or bundle file")
    show.add_argument("names", nargs="+", help="full or unique short entry names")
    show.add_argument("--allophones", help="allophone file, to print allophone strings in alignments")
    show.add_argument("--max-frames", type=int, default=20, help="print at most this many frames (0: all)")
    return p


def _describe(cache, name: str) -> str:
    payload = cache.read_raw(name)
    kind = record_type(payload)
    if kind == "feat":
        feats, _ = cache.read_features(name)
        return f"feat frames={feats.shape[0]} dim={feats.shape[1] if feats.ndim == 2 else 0}"
    if kind == "align":
        items = cache.read_alignment(name)
        frames = len({it.time for it in items})
        return f"align items={len(items)} frames={frames}"
    return f"raw bytes={len(payload)}"


def _show(cache, name: str, allophones: list[str] | None, max_frames: int, out) -> None:
    full = cache.resolve_name(name)
    payload = cache.read_raw(full)
    kind = record_type(payload)
    print(f"== {full} ({_describe(cache, full)})", file=out)
    limit = max_frames if max_frames > 0 else None
    if kind == "feat":
        feats, times = cache.read_features(full)
        with np.printoptions(precision=4, suppress=True, linewidth=200):
            for t in range(len(feats))[:limit]:
                print(f"{t:5d} [{times[t, 0]:.3f}-{times[t, 1]:.3f}] {feats[t]}", file=out)
    elif kind == "align":
        items = cache.read_alignment(full)
        for it in items[:limit]:
            allo = allophones[it.allophone] if allophones and it.allophone < len(allophones) else str(it.allophone)
            weight = f" weight={it.weight:.4f}" if it.weight != 1.0 else ""
            print(f"{it.time:5d} {allo} state={it.state}{weight}", file=out)
    else:
        print(payload.decode("utf8", "replace"), file=out)
    shown = len(payload) if kind not in ("feat", "align") else None
    if limit is not None and shown is None:
        total = len(cache.read_features(full)[0]) if kind == "feat" else len(cache.read_alignment(full))
        if total > limit:
            print(f"... ({total - limit} more)", file=out)


def main(argv: list[str]) -> int:
    """Entry point of the ``sprint-cache`` subcommand."""
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        cache = open_file_archive(args.file)
        try:
            if args.command == "list":
                for name in cache.names(include_attribs=args.attribs):
                    info = cache.entry_info(name)
                    print(f"{name}\t{_describe(cache, name)}\tstored={info.stored_size}", file=out)
                if isinstance(cache, FileArchive):
                    mode = "file-info table" if cache.has_table else "scanned (no file-info table)"
                    print(f"# {len(cache.names())} entries, {mode}", file=out)
                else:
                    print(f"# {len(cache.names())} entries in {len(cache.archives)} archives", file=out)
            else:
                allophones = read_allophone_file(args.allophones) if args.allophones else None
                for name in args.names:
                    _show(cache, name, allophones, args.max_frames, out)
        finally:
            cache.close()
    except ReturnnError as exc:
        print(f"returnn sprint-cache: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
