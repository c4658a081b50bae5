"""Time the 12AX demo on this project's TF backend against the public RETURNN from PyPI, same config, same run.

    python benchmarks/e2e_12ax.py [--public-venv DIR] [--skip-public] [--epochs N] [--repeat N] [--profile]

The public RETURNN is installed into its own venv on first use (``pip install returnn tensorflow-cpu dm-tree``)
and run with ``DISABLE_CUDA=1`` on the demo config translated to its keys (``use_tensorflow = True``; the
``NativeLSTM`` unit is the same name there). Measured per implementation, each run one process:

- whole process, warm: the wall time of the whole command (start Python, import, build, train all epochs, exit)
  with the native-op cache already filled: what a user waits for. Median over ``--repeat`` runs.
- warm epoch: the time between consecutive ``epoch N score:`` lines (train epoch + dev eval + checkpoint) of the
  warm runs, read as the lines arrive (unbuffered output), epochs 2..N; median over all of them.
- cold run: the whole command with an empty native-op cache (``RETURNN_CACHE_DIR`` and ``TMPDIR`` fresh), so
  it includes compiling NativeLSTM.
- also printed: when the first epoch line arrives (start-up + epoch 1) and how long the process takes to exit
  after the last one (medians of the warm runs).

Both interpreters get their bytecode compiled first (``compileall``), as ``pip install`` leaves it: a venv made
by ``uv`` or a shell with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile TensorFlow's 3000 modules from
source in every run. The implementations alternate (cold ours, cold public, then warm ours, warm public, repeated)
so load changes on a shared machine hit both alike; the load average is printed before and after.

``--profile`` adds one more warm run of ours that says where its seconds go: interpreter start, TF import, the
other imports (by top-level package, from ``-X importtime``), network build, the first (tracing) call of each
step function, the steps, batch generation, checkpoints, the learning-rate file, and what is left.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demos", "demo-12ax.config")
EPOCH_LINE = re.compile(r"^epoch\s+(\d+) score:")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
#: the child of ``--profile`` writes its phase times here
PHASES_ENV = "RETURNN_BENCH_PHASES"


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

    def __init__(self, name: str, launcher: list[str], args: list[str], env: dict[str, str], work: str,
                 epochs: int) -> None:
        self.name, self.launcher, self.args, self.env, self.work, self.epochs = name, launcher, args, env, work, epochs
        self.cache = os.path.join(work, f"{name.replace(' ', '-')}-cache")
        self.runs = 0
        self.whole: list[float] = []
        self.epoch_times: list[float] = []
        self.first_line: list[float] = []
        self.tail: list[float] = []
        self.last_line = ""

    def run(self, *, cold: bool, launcher: list[str] | None = None,
            extra_env: dict[str, str] | None = None) -> tuple[float, dict[int, float], list[str]]:
        """One training run (``cold``: empty native-op cache first); ``launcher`` replaces ``python -m returnn``."""
        self.runs += 1
        if cold:
            shutil.rmtree(self.cache, ignore_errors=True)
        tmp = os.path.join(self.cache, "tmp")
        os.makedirs(tmp, exist_ok=True)
        env = {**self.env, "RETURNN_CACHE_DIR": self.cache, "TMPDIR": tmp, **(extra_env or {})}
        model = os.path.join(self.work, f"{self.name.replace(' ', '-')}-run{self.runs}", "model")
        cmd = (launcher or self.launcher) + self.args
        return run_timed(cmd + ["++model", model, "++num_epochs", str(self.epochs)], env)

    def warm(self) -> float:
        """One warm run; records its whole time, its epochs 2..N and its last epoch line."""
        took, epoch_times, lines = self.run(cold=False)
        missing = [e for e in range(1, self.epochs + 1) if e not in epoch_times]
        if missing:
            sys.exit(f"{self.name}: no epoch line for epoch(s) {missing}")
        self.whole.append(took)
        self.epoch_times.extend(epoch_times[e] - epoch_times[e - 1] for e in range(2, self.epochs + 1))
        self.first_line.append(epoch_times[1])
        self.tail.append(took - epoch_times[self.epochs])
        self.last_line = [line.strip() for line in lines if EPOCH_LINE.match(line)][-1]
        return took


def public_venv(path: str) -> str:
    """The venv with the public RETURNN (created on first use); returns its python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "returnn", "tensorflow-cpu", "dm-tree"], check=True)
    return python


def compile_bytecode(python: str, extra: list[str]) -> None:
    """Compile the bytecode of ``python``'s site-packages and ``extra`` dirs (what ``pip install`` does)."""
    paths = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           check=True, capture_output=True, text=True).stdout.split()
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *paths, *extra], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


def load() -> str:
    """The load averages (1, 5, 15 min) and the CPU count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def report(runner: Runner, cold: float | None) -> dict[str, float]:
    """Print and return one implementation's numbers (and its last epoch line, to compare what was learned)."""
    whole, epoch = statistics.median(runner.whole), statistics.median(runner.epoch_times)
    cold_text = f"cold run {cold:6.1f} s   " if cold is not None else ""
    print(f"{runner.name:<15} {cold_text}whole process warm median {whole:.2f} s "
          f"({', '.join(f'{w:.2f}' for w in runner.whole)})   warm epoch median {epoch:.3f} s, "
          f"mean {statistics.fmean(runner.epoch_times):.3f} s\n{'':<15} first epoch line after "
          f"{statistics.median(runner.first_line):.2f} s (start-up + epoch 1), exit "
          f"{statistics.median(runner.tail):.2f} s after the last\n{'':<15} {runner.last_line}", flush=True)
    return {"cold": cold or 0.0, "whole": whole, "epoch": epoch}


# -- --profile: where our seconds go ----------------------------------------------------------------------------
class Phases:
    """Wall time per phase, from wrappers around the functions that do each thing (exclusive of nested phases)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []

    def timed(self, phase: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its time (less that of phases inside it) added to ``phase`` (or ``phase(*args)``)."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = phase(*args) if callable(phase) else phase
            self._stack.append([0.0, 0.0])
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                took, cpu = time.perf_counter() - t0, time.process_time() - c0
                inner = self._stack.pop()
                self.seconds[name] += took - inner[0]
                self.cpu[name] += cpu - inner[1]
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += took
                    self._stack[-1][1] += cpu

        return wrapper

    def timed_iter(self, phase: str, make: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """A generator function whose ``next`` calls count as ``phase``."""
        timed_next = self.timed(phase, next)

        @functools.wraps(make)
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = iter(make(*args, **kwargs))
            while True:
                try:
                    item = timed_next(it)
                except StopIteration:
                    return
                yield item

        return wrapper


def phases_child(args: list[str]) -> int:
    """Run ``returnn ARGS`` in this process with timers on its phases; write them to ``$RETURNN_BENCH_PHASES``."""
    entered = time.time()
    started = float(os.environ.get("RETURNN_BENCH_SPAWNED", entered))
    phases = Phases()
    import returnn_tf.tf_import as tf_import

    tf_import.import_tensorflow = phases.timed("import tensorflow", tf_import.import_tensorflow)
    tf = tf_import.import_tensorflow()
    import returnn_tf.backend as tf_backend
    from returnn_tf.compiled import CompiledStep

    from returnn_core.datasets import Dataset
    from returnn_core.engine import driver
    from returnn_core.frontend import Network
    from returnn_core.learning_rate.control import LearningRateControl

    tf.load_op_library = phases.timed("native op: tf.load_op_library", tf.load_op_library)
    try:
        import returnn_native.tf_ops as native_tf

        native_tf.build_tf_op = phases.timed("native op: build-cache check", native_tf.build_tf_op)
    except ImportError:
        pass
    Network.build = phases.timed("network build (eager pass, parameters)", Network.build)
    driver.Engine.build = phases.timed("backend build, other", driver.Engine.build)
    call = CompiledStep.__call__
    CompiledStep.__call__ = phases.timed(
        lambda self, *a: f"{self.name}: first call (trace)" if self._concrete is None else f"{self.name}s",
        call)
    tf_backend.TFBackend.train_step = phases.timed("train steps: feed, results", tf_backend.TFBackend.train_step)
    tf_backend.TFBackend.eval_step = phases.timed("eval steps: feed, results", tf_backend.TFBackend.eval_step)
    tf_backend.TFBackend.epoch_summary = phases.timed("epoch summary (TensorBoard)", tf_backend.TFBackend.epoch_summary)
    Dataset.generate_batches = phases.timed_iter("batches (dataset)", Dataset.generate_batches)
    driver.save_checkpoint = phases.timed("checkpoint save", driver.save_checkpoint)
    LearningRateControl.save = phases.timed("learning-rate file", LearningRateControl.save)
    driver.Engine.run = phases.timed("rest of the run (driver, progress, log)", driver.Engine.run)
    from returnn_core.cli import main

    code = main(args)
    out = {"interpreter start": entered - started, "seconds": phases.seconds, "cpu": phases.cpu,
           "calls": phases.calls, "main_done": time.time(), "process_cpu": time.process_time()}
    with open(os.environ[PHASES_ENV], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return code


def import_totals(lines: list[str]) -> dict[str, float]:
    """Seconds of imports by top-level package from ``-X importtime`` lines (first-level imports only)."""
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        m = IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space: imported by the program, not by another module
            totals[m.group(4).split(".")[0]] += int(m.group(2)) / 1e6
    return totals


def profile(ours: Runner) -> None:
    """One warm run of ours under the phase timers and ``-X importtime``; print the breakdown."""
    phase_file = os.path.join(ours.work, "phases.json")
    spawned = time.time()
    took, _, lines = ours.run(cold=False, launcher=[sys.executable, "-X", "importtime", os.path.abspath(__file__),
                                                  "--phases-child", "--"],
                              extra_env={PHASES_ENV: phase_file, "RETURNN_BENCH_SPAWNED": repr(spawned)})
    ended = spawned + took
    with open(phase_file, encoding="utf-8") as f:
        data = json.load(f)
    rows = [("interpreter start", data["interpreter start"], None, 1)]
    rows += [(name, sec, data["cpu"][name], data["calls"][name]) for name, sec in data["seconds"].items()]
    rows.append(("exit (after main returned)", ended - data["main_done"], None, 1))
    accounted = sum(sec for _, sec, _, _ in rows)
    cpu_accounted = sum(cpu for _, _, cpu, _ in rows if cpu is not None)
    rows.append(("other (config, plugins, imports before TF, ...)", took - accounted,
                 data["process_cpu"] - cpu_accounted, 1))
    print(f"\nwhere the {took:.2f} s of one warm run of ours go (-X importtime on; {load()}):")
    print("     wall       share  process CPU (all threads; less inflated by load)")
    for name, sec, cpu, calls in sorted(rows, key=lambda r: -r[1]):
        cpu_text = f"{cpu:7.3f} s" if cpu is not None else " " * 9
        print(f"  {sec:7.3f} s  {100 * sec / took:5.1f}%  {cpu_text}  {name}" + (f"  ({calls} calls)" if calls > 1 else ""))
    totals = import_totals(lines)
    print("imports by top-level package (as the program imported them; TF's own imports under tensorflow):")
    for name, sec in sorted(totals.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {sec:7.3f} s  {name}")
    optional = ("keras", "matplotlib", "scipy", "h5py", "pytensor", "tensorboard", "torch")
    imported = [n for n in optional if any(re.search(rf"\| +{n}$", line.rstrip()) for line in lines)]
    print(f"of {', '.join(optional)}: imported at any depth: {', '.join(imported) or 'none'}")


def main() -> int:
    """Run both and print the ratios."""
    if sys.argv[1:2] == ["--phases-child"]:
        return phases_child(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public-venv", default=os.path.join(os.path.expanduser("~"), ".cache", "returnn-bench", "venv"))
    parser.add_argument("--skip-public", action="store_true")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs of each implementation (alternating)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold runs")
    parser.add_argument("--profile", action="store_true", help="also break one warm run of ours into phases")
    args = parser.parse_args()
    env = {**os.environ, "DISABLE_CUDA": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work = tempfile.mkdtemp(prefix="bench12ax-")
    try:
        print(f"start: {load()}", flush=True)
        ours = Runner("returnn-tf", [sys.executable, "-m", "returnn_core"], [DEMO, "++log_verbosity", "2"], env, work,
                      args.epochs)
        ours_code = [os.path.join(REPO, "returnn_core"), *(os.path.join(REPO, "plugins", p)
                                                          for p in sorted(os.listdir(os.path.join(REPO, "plugins"))))]
        compile_bytecode(sys.executable, ours_code)
        theirs = None
        if not args.skip_public:
            python = public_venv(args.public_venv)
            compile_bytecode(python, [])
            theirs = Runner("public RETURNN", [python, "-m", "returnn"], [public_config(work), "++log_verbosity", "3"],
                            env, work, args.epochs)
        cold_ours = cold_theirs = None
        if not args.no_cold:
            cold_ours = ours.run(cold=True)[0]
            cold_theirs = theirs.run(cold=True)[0] if theirs else None
        else:
            ours.run(cold=False)  # fills the native-op cache
            if theirs:
                theirs.run(cold=False)
        for _ in range(args.repeat):
            ours.warm()
            if theirs:
                theirs.warm()
        a = report(ours, cold_ours)
        if theirs is not None:
            b = report(theirs, cold_theirs)
            print(f"ratio whole process warm: {a['whole'] / b['whole']:.2f}x (goal <= 0.5x)")
            print(f"ratio warm epoch:         {a['epoch'] / b['epoch']:.2f}x (goal <= 0.25x)")
            if cold_ours is not None and cold_theirs:
                print(f"ratio cold run:           {a['cold'] / b['cold']:.2f}x (goal <= 0.15x)")
        print(f"end: {load()}", flush=True)
        if args.profile:
            profile(ours)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
