"""Time the 12AX demo on this project's TF backend against the public RETURNN from PyPI, same config, same run.

    python benchmarks/e2e_12ax.py [--public-venv DIR] [--skip-public]

The public RETURNN is installed into its own venv on first use (``pip install returnn tensorflow-cpu dm-tree``)
and run with ``DISABLE_CUDA=1``. Reported per implementation:

- warm epoch: ``(time of 5 epochs - time of 1 epoch) / 4`` with compiled native ops already cached,
- cold run: one full 5-epoch run with an empty native-op cache (includes compiling NativeLSTM).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")


def run_timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall time of one command (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took


def measure(name: str, base_cmd: list[str], env: dict[str, str], cache_env: str, work: str) -> dict[str, float]:
    """Cold 5-epoch run with an empty cache, then warm 1- and 5-epoch runs."""
    cache = os.path.join(work, f"{name}-cache")
    env = {**env, cache_env: cache}

    def once(epochs: int, tag: str) -> float:
        model = os.path.join(work, f"{name}-{tag}", "model")
        return run_timed(base_cmd + ["++model", model, "++num_epochs", str(epochs), "++log_verbosity", "2"], env)

    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    cold = once(5, "cold")
    warm1 = min(once(1, f"w1-{i}") for i in range(2))
    warm5 = min(once(5, f"w5-{i}") for i in range(2))
    return {"cold_run_s": cold, "warm_epoch_s": (warm5 - warm1) / 4, "warm_run_5_epochs_s": warm5}


def public_venv(path: str) -> str:
    """The venv with the public RETURNN (created on first use); returns its python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "returnn", "tensorflow-cpu", "dm-tree"], check=True)
    return python


def main() -> int:
    """Run both and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public-venv", default=os.path.join(os.path.expanduser("~"), ".cache", "returnn-bench", "venv"))
    parser.add_argument("--skip-public", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "DISABLE_CUDA": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work = tempfile.mkdtemp(prefix="bench12ax-")
    try:
        ours = measure("ours", [sys.executable, "-m", "returnn_core", DEMO], env, "RETURNN_CACHE_DIR", work)
        print(f"returnn-tf:     warm epoch {ours['warm_epoch_s']:.3f} s, cold 5-epoch run {ours['cold_run_s']:.1f} s, "
              f"warm 5-epoch run {ours['warm_run_5_epochs_s']:.1f} s")
        if args.skip_public:
            return 0
        python = public_venv(args.public_venv)
        config = os.path.join(work, "public.config")
        with open(DEMO, encoding="utf-8") as f:
            text = f.read().replace('backend = "tf"', "use_tensorflow = True")
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
        # the public RETURNN compiles its native ops under the temp dir: a fresh TMPDIR is a cold cache
        theirs = measure("public", [python, "-m", "returnn", config], env, "TMPDIR", work)
        print(f"public RETURNN: warm epoch {theirs['warm_epoch_s']:.3f} s, cold 5-epoch run {theirs['cold_run_s']:.1f} s, "
              f"warm 5-epoch run {theirs['warm_run_5_epochs_s']:.1f} s")
        print(f"ratio warm epoch: {ours['warm_epoch_s'] / theirs['warm_epoch_s']:.2f}x (goal <= 0.5x)")
        print(f"ratio cold run:   {ours['cold_run_s'] / theirs['cold_run_s']:.2f}x (goal <= 0.3x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
