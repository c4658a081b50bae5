"""``returnn sprint-cache``: list, show, dump and check the entries of Sprint cache archives and bundles."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from returnn_core.errors import ReturnnError
from returnn_sprint.allophones import read_allophone_file
from returnn_sprint.archive import FileArchive, FileArchiveBundle, SprintCacheError, open_file_archive
from returnn_sprint.records import record_type


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="returnn sprint-cache",
        description="Inspect Sprint cache archives and bundles. 'returnn sprint-cache --check FILE...' is 'check'.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list entry names (with type, frames and stored size)")
    ls.add_argument("file", help="archive or bundle file")
    ls.add_argument("--attribs", action="store_true", help="also list the .attribs side entries")
    show = sub.add_parser("show", help="print entries (features, alignments or raw text)")
    show.add_argument("file", help="archive or bundle file")
    show.add_argument("names", nargs="+", help="full or unique short entry names")
    dump = sub.add_parser("dump", help="print every entry")
    dump.add_argument("file", help="archive or bundle file")
    for cmd in (show, dump):
        cmd.add_argument("--allophones", help="allophone file, to print allophone strings in alignments")
        cmd.add_argument("--max-frames", type=int, default=20, help="print at most this many frames (0: all)")
    for cmd in (ls, show, dump):
        cmd.add_argument("--recover", action="store_true", help="without a file-info table, skip broken entries")
    check = sub.add_parser("check", help="read and decode every entry; report each broken one (exit status 1)")
    check.add_argument("files", nargs="+", help="archive or bundle files")
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


def _layout(archive: FileArchive) -> str:
    if not archive.has_table:
        return "scanned (no file-info table)"
    trailer = {"rasr": "RASR trailer", "returnn": "RETURNN trailer"}.get(archive.trailer or "", "")
    return f"file-info table, {trailer}, {len(archive.free)} free-space entries"


def _check_archive(archive: FileArchive, out) -> int:
    """Decode every entry of one archive; print each problem; their number."""
    problems = list(archive.problems)
    for name in archive.names(include_attribs=True):
        try:
            if record_type(archive.read_raw(name)) != "unknown":
                archive.read(name)
        except SprintCacheError as exc:
            problems.append(str(exc))
    for problem in problems:
        print(f"error: {problem}", file=out)
    verdict = f"{len(problems)} broken entries" if problems else "ok"
    print(f"{archive.path}: {verdict}; {len(archive.entries)} entries, {_layout(archive)}", file=out)
    return len(problems)


def _check(paths: list[str], out) -> int:
    bad = 0
    for path in paths:
        try:
            cache = open_file_archive(path, recover=True)
        except SprintCacheError as exc:
            print(f"error: {exc}", file=out)
            bad += 1
            continue
        try:
            archives = cache.archives if isinstance(cache, FileArchiveBundle) else [cache]
            bad += sum(_check_archive(archive, out) for archive in archives)
        finally:
            cache.close()
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    """Entry point of the ``sprint-cache`` subcommand."""
    argv = ["check", *argv[1:]] if argv[:1] == ["--check"] else list(argv)
    args = _parser().parse_args(argv)
    out = sys.stdout
    if args.command == "check":
        return _check(args.files, out)
    try:
        cache = open_file_archive(args.file, recover=args.recover)
        try:
            for problem in cache.problems:
                print(f"returnn sprint-cache: skipped: {problem}", file=sys.stderr)
            if args.command == "list":
                for name in cache.names(include_attribs=args.attribs):
                    info = cache.entry_info(name)
                    print(f"{name}\t{_describe(cache, name)}\tstored={info.stored_size}", file=out)
                if isinstance(cache, FileArchive):
                    print(f"# {len(cache.names())} entries, {_layout(cache)}", file=out)
                else:
                    print(f"# {len(cache.names())} entries in {len(cache.archives)} archives", file=out)
            else:
                allophones = read_allophone_file(args.allophones) if args.allophones else None
                names = args.names if args.command == "show" else cache.names(include_attribs=True)
                for name in names:
                    _show(cache, name, allophones, args.max_frames, out)
        finally:
            cache.close()
    except ReturnnError as exc:
        print(f"returnn sprint-cache: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
