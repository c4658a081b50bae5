"""12AX epoch time on the theano backend against the tf backend, measured in one run on this machine.

    python benchmarks/theano_vs_tf_12ax.py [--repeat N]

Runs ``returnn demos/demo-12ax.config`` per variant with a warm compile cache (one untimed warm-up run first).
Warm epoch = ``(time of a 5-epoch run - time of a 1-epoch run) / 4`` (best of ``--repeat``), so start-up,
graph building and compiling cancel out. Variants: tf (NativeLSTM), theano (NativeLSTM), theano with its own
scan LSTM (``unit = "standardlstm"``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")
SCAN_NET = ("{'fw0': {'class': 'rec', 'unit': 'standardlstm', 'dropout': 0.1, 'n_out': 10}, "
            "'output': {'class': 'softmax', 'loss': 'ce', 'from': ['fw0']}}")
VARIANTS = {
    "tf (NativeLSTM)": ["++backend", "tf"],
    "theano (NativeLSTM)": ["++backend", "theano"],
    "theano (scan LSTM)": ["++backend", "theano", "++network", SCAN_NET],
}


def run(args: list[str], work: str, epochs: int, env: dict[str, str]) -> tuple[float, str]:
    """Wall time and output of one run into a fresh model dir."""
    model = tempfile.mkdtemp(dir=work)
    cmd = [sys.executable, "-m", "returnn_core", DEMO, *args, "++model", os.path.join(model, "model"),
           "++num_epochs", str(epochs), "++log_verbosity", "2"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took, proc.stdout + proc.stderr


def main() -> int:
    """Measure every variant and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DISABLE_CUDA": "1"}
    work = tempfile.mkdtemp(prefix="bench-theano-12ax-")
    rows = []
    try:
        for name, extra in VARIANTS.items():
            run(extra, work, 1, env)  # warm the compile caches
            one = min(run(extra, work, 1, env)[0] for _ in range(args.repeat))
            runs = [run(extra, work, 5, env) for _ in range(args.repeat)]
            five, log = min(runs)
            errors = re.findall(r"epoch 5 score: .* error (\S+)", log)
            rows.append((name, (five - one) / 4, one, five, errors[0] if errors else "?"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'variant':22} {'warm epoch s':>12} {'1-epoch run s':>14} {'5-epoch run s':>14} {'dev error ep5':>14}")
    for name, epoch, one, five, err in rows:
        print(f"{name:22} {epoch:12.3f} {one:14.2f} {five:14.2f} {err:>14}")
    base = rows[0][1]
    for name, epoch, *_ in rows[1:]:
        print(f"{name} / tf warm epoch: {epoch / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
