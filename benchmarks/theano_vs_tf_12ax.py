"""12AX epoch time on the theano backend against the tf backend, measured in one run on this machine.

    python benchmarks/theano_vs_tf_12ax.py [--epochs N]

The demo's setup (``demos/demo-12ax.config``): Task12AXDataset 1000 train / 100 dev seqs, one rec layer of 10
units + softmax ce, adam lr 0.01, batch_size 5000, max_seqs 10, chunking 200:200. Each variant gets the same
pre-generated batches, trains one untimed warm-up epoch (compiling), then ``--epochs`` timed epochs
(train steps over all batches plus the dev eval steps); the median epoch is reported. Variants: tf with
NativeLSTM, theano with NativeLSTM, theano with its own scan LSTM (``unit = "standardlstm"``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from returnn_core.config import Config
from returnn_core.datasets import DataSpec, ExternData
from returnn_core.log import Log
from returnn_core.network import resolve_network
from returnn_core.plugin import get_plugin_manager

VARIANTS = {"tf (NativeLSTM)": ("tf", "nativelstm"), "theano (NativeLSTM)": ("theano", "nativelstm"),
            "theano (scan LSTM)": ("theano", "standardlstm")}


def batches(manager, num_seqs: int, seed: int | None, ext: ExternData, chunking: str | None) -> list:
    """The padded batches of one epoch of Task12AXDataset."""
    ds = manager.datasets.get("Task12AXDataset")(num_seqs=num_seqs, fixed_random_seed=seed)
    ds.init_seq_order(1)
    return [b.to_data(ext) for b in ds.generate_batches(batch_size=5000, max_seqs=10, chunking=chunking)]


def main() -> int:
    """Time every variant and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    manager = get_plugin_manager()
    ext = ExternData({"data": DataSpec(9), "classes": DataSpec(2, sparse=True)})
    train = batches(manager, 1000, None, ext, "200:200")
    dev = batches(manager, 100, 1, ext, None)
    rows = []
    for name, (backend_name, unit) in VARIANTS.items():
        net = {"fw0": {"class": "rec", "unit": unit, "n_out": 10, "dropout": 0.1},
               "output": {"class": "softmax", "loss": "ce", "from": ["fw0"]}}
        backend = manager.backends.get(backend_name)(Config({"adam": True}), manager, Log(0))
        backend.build(resolve_network(net, ext.keys()), ext, train=True)
        times, error = [], 0.0
        for epoch in range(args.epochs + 1):
            t0 = time.perf_counter()
            for b in train:
                backend.train_step(b, 0.01)
            errs = frames = 0.0
            for b in dev:
                res = backend.eval_step(b)
                errs, frames = errs + res.errors["output"], frames + res.frames["output"]
            if epoch:  # epoch 0 compiles
                times.append(time.perf_counter() - t0)
            error = errs / frames
        rows.append((name, statistics.median(times), min(times), error))
        backend.close()
    print(f"{len(train)} train batches, {len(dev)} dev batches per epoch; {args.epochs} timed epochs per variant")
    print(f"{'variant':22} {'median epoch s':>15} {'best epoch s':>13} {'dev frame error':>16}")
    for name, median, best, error in rows:
        print(f"{name:22} {median:15.3f} {best:13.3f} {error:16.4f}")
    for name, median, *_ in rows[1:]:
        print(f"{name} / tf (NativeLSTM): {median / rows[0][1]:.2f}x epoch time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
