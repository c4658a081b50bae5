"""Where a CLI tool gets its dataset: a dataset spec on the command line or a config file's dataset key."""

from __future__ import annotations

import argparse
import os

from returnn_core.config import Config
from returnn_core.datasets import Dataset, init_dataset
from returnn_core.errors import ConfigError


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``SOURCE`` (config file, ``{'class': ...}`` dict literal or ``a.hdf,b.hdf``) and ``--key``."""
    parser.add_argument(
        "source",
        help="a RETURNN config file, a dataset dict literal \"{'class': 'Task12AXDataset'}\", or 'a.hdf,b.hdf'",
    )
    parser.add_argument("--key", default="train", help="dataset key in the config file (default: train)")


def open_dataset(source: str, key: str = "train") -> Dataset:
    """Build the dataset ``source`` names (a config file's ``key``, or a dataset spec)."""
    text = source.strip()
    if text.startswith("{") or text.endswith((".hdf", ".h5")) or text.startswith("sprint:"):
        return init_dataset(text)
    if not os.path.isfile(text):
        raise ConfigError(f"{text}: no such config file (or give a dataset dict literal or HDF files)")
    config = Config.from_args([text])
    spec = config.typed_value(key)
    if spec is None:
        raise ConfigError(f"config {text} has no dataset {key!r} (pick one with --key)")
    return init_dataset(spec)
