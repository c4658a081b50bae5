"""``returnn plot LEARNING_RATE_FILE -o curves.png``: scores, errors and the learning rate per epoch."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence

from returnn_core.errors import ConfigError
from returnn_core.learning_rate.state_file import EpochData, load_state

DPI = 100


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or min(int(match[1]), int(match[2])) < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT in pixels, each at least 100")
    return int(match[1]), int(match[2])


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``returnn plot``."""
    p = argparse.ArgumentParser(
        prog="returnn plot",
        description="Draw the learning curves a training run wrote to its learning_rate_file: the scores and "
        "errors of train and each eval set, and the learning rate, per epoch. Needs matplotlib "
        "(pip install returnn-core[plot]).",
    )
    p.add_argument("file", metavar="LEARNING_RATE_FILE", help="the learning_rate_file of a run (RETURNN's format)")
    p.add_argument("-o", "--output", default="curves.png",
                   help="image to write; the format follows the suffix (.png, .pdf, .svg; default: curves.png)")
    p.add_argument("--size", type=_size, default=(1000, 800), metavar="WxH",
                   help="image size in pixels (default: 1000x800)")
    return p


def curves(state: dict[int, EpochData]) -> tuple[list[int], dict[str, list[float]], dict[str, list[float]]]:
    """Epochs, then per score key and per error key its value per epoch (NaN where an epoch lacks it)."""
    epochs = sorted(state)
    keys = sorted({k for data in state.values() for k in data.error})
    nan = float("nan")
    table = {k: [state[e].error.get(k, nan) for e in epochs] for k in keys}
    scores = {k: v for k, v in table.items() if "_error" not in k}
    errors = {k: v for k, v in table.items() if "_error" in k}
    return epochs, scores, errors


def plot(state: dict[int, EpochData], output: str, size: tuple[int, int]) -> None:
    """Write the three panels (scores, errors, learning rate) to ``output``."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("returnn plot needs matplotlib: pip install returnn-core[plot]") from None
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    epochs, scores, errors = curves(state)
    fig, (ax_score, ax_error, ax_lr) = plt.subplots(3, 1, sharex=True, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    for ax, series, title in ((ax_score, scores, "score"), (ax_error, errors, "error")):
        for key, values in series.items():
            ax.plot(epochs, values, marker=".", label=key)
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize="small")
    rates = [state[e].learning_rate for e in epochs]
    ax_lr.plot(epochs, [float("nan") if r is None else r for r in rates], marker=".", color="black")
    if all(r is not None and r > 0 for r in rates):
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=DPI)
    plt.close(fig)


def main(argv: Sequence[str]) -> int:
    """Entry of ``returnn plot``."""
    args = build_parser().parse_args(list(argv))
    if not os.path.isfile(args.file):
        raise ConfigError(f"{args.file}: no such learning-rate file (the run's learning_rate_file)")
    state = load_state(args.file)
    if not state:
        raise ConfigError(f"{args.file}: holds no epoch yet; plot after the first epoch has finished")
    plot(state, args.output, args.size)
    print(f"wrote {args.output} ({len(state)} epochs)")
    return 0
