"""Time the 12AX demo on this project's TF backend against the public RETURNN from PyPI, same config, same run.

    python benchmarks/e2e_12ax.py [--public-venv DIR] [--skip-public] [--epochs N]

The public RETURNN is installed into its own venv on first use (``pip install returnn tensorflow-cpu dm-tree``)
and run with ``DISABLE_CUDA=1`` on the demo config translated to its keys (``use_tensorflow = True``; the
``NativeLSTM`` unit is the same name there). Measured per implementation, each in one process:

- warm epoch: the time between consecutive ``epoch N score:`` lines (train epoch + dev eval + checkpoint) of one
  run, read as the lines arrive (unbuffered output), epochs 2..N; median and mean; native ops already cached.
- cold run: the whole command with an empty native-op cache (``RETURNN_CACHE_DIR`` and ``TMPDIR`` fresh), so
  it includes starting Python, importing TF and compiling NativeLSTM.

The implementations alternate (cold ours, cold public, warm ours, warm public) so load changes on a shared
machine hit both alike.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")
EPOCH_LINE = re.compile(r"^epoch\s+(\d+) score:")


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[int, float], list[str]]:
    """Run ``cmd``; its wall time, the arrival time of each epoch line (from the start) and its output."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, epochs = [], {}
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - t0
        lines.append(line)
        m = EPOCH_LINE.match(line)
        if m:
            epochs[int(m.group(1))] = now
    code = proc.wait()
    took = time.perf_counter() - t0
    if code != 0:
        sys.exit(f"command failed ({code}): {' '.join(cmd)}\n{''.join(lines[-40:])}")
    return took, epochs, lines


class Runner:
    """One implementation: its command, and a fresh model dir per run."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], work: str, epochs: int) -> None:
        self.name, self.cmd, self.env, self.work, self.epochs = name, cmd, env, work, epochs
        self.cache = os.path.join(work, f"{name}-cache")
        self.runs = 0

    def run(self, *, cold: bool) -> tuple[float, dict[int, float], list[str]]:
        """One training run (``cold``: empty native-op cache first)."""
        self.runs += 1
        if cold:
            shutil.rmtree(self.cache, ignore_errors=True)
        tmp = os.path.join(self.cache, "tmp")
        os.makedirs(tmp, exist_ok=True)
        env = {**self.env, "RETURNN_CACHE_DIR": self.cache, "TMPDIR": tmp}
        model = os.path.join(self.work, f"{self.name}-run{self.runs}", "model")
        return run_timed(self.cmd + ["++model", model, "++num_epochs", str(self.epochs)], env)

    def warm_epochs(self, epoch_times: dict[int, float]) -> list[float]:
        """Per-epoch durations of epochs 2..N."""
        missing = [e for e in range(1, self.epochs + 1) if e not in epoch_times]
        if missing:
            sys.exit(f"{self.name}: no epoch line for epoch(s) {missing}")
        return [epoch_times[e] - epoch_times[e - 1] for e in range(2, self.epochs + 1)]


def public_venv(path: str) -> str:
    """The venv with the public RETURNN (created on first use); returns its python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "returnn", "tensorflow-cpu", "dm-tree"], check=True)
    return python


def public_config(work: str) -> str:
    """The demo config with the public RETURNN's keys."""
    with open(DEMO, encoding="utf-8") as f:
        text = f.read()
    if 'backend = "tf"' not in text:
        sys.exit(f"{DEMO}: expected the line 'backend = \"tf\"' to translate")
    path = os.path.join(work, "public-12ax.config")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace('backend = "tf"', "use_tensorflow = True"))
    return path


def report(name: str, cold: float, warm: list[float], lines: list[str]) -> dict[str, float]:
    """Print and return one implementation's numbers (and its last epoch line, to compare what was learned)."""
    med, mean = statistics.median(warm), statistics.fmean(warm)
    last = [line.strip() for line in lines if EPOCH_LINE.match(line)][-1]
    print(f"{name:<15} cold run {cold:6.1f} s   warm epoch median {med:.3f} s, mean {mean:.3f} s "
          f"(epochs 2..: {', '.join(f'{w:.2f}' for w in warm)})\n{'':<15} {last}", flush=True)
    return {"cold": cold, "warm": med}


def main() -> int:
    """Run both and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public-venv", default=os.path.join(os.path.expanduser("~"), ".cache", "returnn-bench", "venv"))
    parser.add_argument("--skip-public", action="store_true")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "DISABLE_CUDA": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work = tempfile.mkdtemp(prefix="bench12ax-")
    try:
        ours = Runner("returnn-tf", [sys.executable, "-m", "returnn_core", DEMO, "++log_verbosity", "2"], env, work,
                      args.epochs)
        theirs = None
        if not args.skip_public:
            python = public_venv(args.public_venv)
            theirs = Runner("public RETURNN", [python, "-m", "returnn", public_config(work), "++log_verbosity", "3"],
                            env, work, args.epochs)
        cold_ours, _, _ = ours.run(cold=True)
        cold_theirs = theirs.run(cold=True)[0] if theirs else None
        _, epochs_ours, lines_ours = ours.run(cold=False)
        a = report(ours.name, cold_ours, ours.warm_epochs(epochs_ours), lines_ours)
        if theirs is None:
            return 0
        _, epochs_theirs, lines_theirs = theirs.run(cold=False)
        b = report(theirs.name, cold_theirs, theirs.warm_epochs(epochs_theirs), lines_theirs)
        print(f"ratio warm epoch: {a['warm'] / b['warm']:.2f}x (goal <= 0.5x)")
        print(f"ratio cold run:   {a['cold'] / b['cold']:.2f}x (goal <= 0.3x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
