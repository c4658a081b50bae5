"""``returnn dump-dataset``: print seqs, shapes and tags of a dataset, dump them as numpy files, or get statistics."""

from __future__ import annotations

import argparse
import os
import sys
from typing import IO

import numpy as np

from returnn_core.datasets import Dataset
from returnn_datasets.cli.source import add_source_args, open_dataset
from returnn_datasets.stats import DatasetStatistics

DUMP_TYPES = ("print", "shape", "tag", "numpy", "null")
#: seqs shown when neither --end-seq nor --stats asks for more (RETURNN's dump-dataset default)
DEFAULT_END_SEQ = 10


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``returnn dump-dataset``."""
    p = argparse.ArgumentParser(prog="returnn dump-dataset", description="Print or dump the seqs of a dataset.")
    add_source_args(p)
    p.add_argument("--epoch", type=int, default=1, help="epoch whose seq order is used (default: 1)")
    # --startseq/--endseq: RETURNN's spellings, kept as aliases of the names hdf-dump shares
    p.add_argument("--start-seq", "--startseq", type=int, default=0, help="first seq index of the epoch")
    p.add_argument("--end-seq", "--endseq", type=int, default=None,
                   help=f"end seq index (exclusive); -1 for all (default: all with --stats, else {DEFAULT_END_SEQ})")
    p.add_argument("--type", choices=DUMP_TYPES, default="print",
                   help="print: values; shape: shapes; tag: tags only; numpy: .npy files; null: nothing per seq")
    p.add_argument("--data-key", action="append", help="only these data keys (repeatable)")
    p.add_argument("--dump-prefix", default="dump-dataset/", help="path prefix of --type numpy files and --stats files")
    p.add_argument("--stats", action="store_true",
                   help="collect mean/std per feature dim and length statistics; write PREFIX{mean,std_dev}.txt")
    return p


def dump_dataset(dataset: Dataset, args: argparse.Namespace, out: IO[str]) -> DatasetStatistics:
    """Go through seqs ``start_seq:end_seq`` of the epoch, dumping each as ``args.type`` asks."""
    dataset.init_seq_order(epoch=args.epoch)
    specs = dataset.output_specs()
    keys = args.data_key or sorted(specs)
    unknown = [k for k in keys if k not in specs]
    if unknown:
        from returnn_core.errors import ConfigError

        raise ConfigError(f"dataset {dataset.name} has no data key(s) {', '.join(unknown)}; it has {', '.join(sorted(specs))}")
    end_seq = args.end_seq if args.end_seq is not None else (-1 if args.stats else DEFAULT_END_SEQ)
    end = dataset.end_seq(None if end_seq < 0 else end_seq)
    out.write(f"dataset {dataset.name}: {dataset.num_seqs} seqs in epoch {args.epoch}, "
              f"data keys {', '.join(f'{k}{specs[k].as_num_outputs()}' for k in sorted(specs))}\n")
    stats = DatasetStatistics({k: specs[k] for k in keys})
    if args.type == "numpy":
        os.makedirs(os.path.dirname(args.dump_prefix) or ".", exist_ok=True)
    for i in range(args.start_seq, end):
        seq = dataset.get_seq(i)
        if args.stats:
            stats.add(seq.features)
        if args.type == "tag":
            out.write(f"seq {i} tag {seq.tag}\n")
        elif args.type == "shape":
            shapes = " ".join(f"{k}{tuple(seq.features[k].shape)}" for k in keys)
            out.write(f"seq {i} tag {seq.tag} {shapes}\n")
        elif args.type == "print":
            out.write(f"seq {i} tag {seq.tag}\n")
            for k in keys:
                out.write(f"  {k} {seq.features[k].dtype}{tuple(seq.features[k].shape)}:\n")
                out.write(_indent(np.array2string(seq.features[k], threshold=200, edgeitems=3)) + "\n")
        elif args.type == "numpy":
            for k in keys:
                np.save(f"{args.dump_prefix}{i}.{k}.npy", seq.features[k])
    dataset.finish_epoch()
    out.write(f"done: seqs {args.start_seq}..{end}\n")
    if args.stats:
        stats.report(out)
        if stats.num_seqs:
            stats.write_files(args.dump_prefix)
            out.write(f"wrote {args.dump_prefix}mean.txt and {args.dump_prefix}std_dev.txt\n")
    return stats


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def main(argv: list[str]) -> int:
    """Entry of ``returnn dump-dataset``."""
    args = build_parser().parse_args(argv)
    with open_dataset(args.source, args.key) as dataset:
        dump_dataset(dataset, args, sys.stdout)
    return 0
