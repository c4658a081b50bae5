"""``returnn hdf-dump``: write any configured dataset as a RETURNN HDF file."""

from __future__ import annotations

import argparse
import sys

from returnn_datasets.cli.source import add_source_args, open_dataset
from returnn_datasets.hdf.writer import dump_dataset_to_hdf


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``returnn hdf-dump``."""
    p = argparse.ArgumentParser(prog="returnn hdf-dump", description="Write a dataset as a RETURNN HDF file.")
    add_source_args(p)
    p.add_argument("output", help="the HDF file to write (appears only when complete)")
    p.add_argument("--epoch", type=int, default=1, help="epoch whose seq order is written (default: 1)")
    p.add_argument("--start-seq", "--startseq", type=int, default=0, help="first seq index of the epoch")
    p.add_argument("--end-seq", "--endseq", type=int, default=-1, help="end seq index (exclusive); -1 for all")
    return p


def main(argv: list[str]) -> int:
    """Entry of ``returnn hdf-dump``."""
    args = build_parser().parse_args(argv)
    with open_dataset(args.source, args.key) as dataset:
        n = dump_dataset_to_hdf(
            dataset, args.output, epoch=args.epoch, start_seq=args.start_seq,
            end_seq=None if args.end_seq < 0 else args.end_seq,
        )
    sys.stdout.write(f"wrote {n} seqs of {dataset.name} to {args.output}\n")
    return 0
