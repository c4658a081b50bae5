"""Benchmark: NativeLSTM forward+backward against TensorFlow's LSTM kernels, torch.nn.LSTM and the GEMM-bound limit.

Two settings, all float32 on CPU, every sequence full length:

* ``1x500``: one LSTM layer, T=50, B=40, input 500, 500 units;
* ``5x500 BLSTM``: the seed's setup, 5 bidirectional layers of 500 units per direction, T=50, B=40, input 40.

One step = forward, a sum loss, and gradients w.r.t. the input and all parameters. Per setting one subprocess
builds every implementation with the same thread count for every library (``--threads``, default 2: TF
intra/inter-op pools, torch.set_num_threads, NativeLSTM's OpenMP threads, OpenBLAS/OpenMP env vars), then times
them round-robin, one step each per round (so changing load on a shared machine hits all alike), and reports the
best and the median of ``--repeat`` steps. The GEMM-bound limit is the step's GEMM FLOPs divided by the sgemm GFLOP/s measured on this machine
(NumPy's OpenBLAS) at the per-step recurrent shape (B, n) x (n, 4n) and at a large square size.

    python benchmarks/lstm.py [--threads 2] [--repeat 10] [--only native_tf,torch]

torch is a benchmark-only dependency: ``pip install torch==2.13.0`` (CPU wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

SETTINGS = {
    "1x500": {"T": 50, "B": 40, "n_in": 500, "n": 500, "layers": 1, "bidirectional": False},
    "5x500 BLSTM": {"T": 50, "B": 40, "n_in": 40, "n": 500, "layers": 5, "bidirectional": True},
}
IMPLS = {
    "native_tf": "NativeLSTM (TF op)",
    "native_pytensor": "NativeLSTM (PyTensor C op)",
    "blocklstm": "tf.raw_ops.BlockLSTM",
    "keras": "tf.keras LSTM",
    "torch": "torch.nn.LSTM",
}


def gemm_flops(s: dict) -> float:
    """GEMM FLOPs of one fwd+bwd step: per layer and direction 3 GEMM pairs (fwd, d-input, d-weight) over [x, h]."""
    total = 0.0
    dirs = 2 if s["bidirectional"] else 1
    n_in = s["n_in"]
    for _ in range(s["layers"]):
        total += dirs * 3 * 2 * s["T"] * s["B"] * 4 * s["n"] * (n_in + s["n"])
        n_in = s["n"] * dirs
    return total


def _time_steps(step, repeat: int) -> dict:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"best": times[0], "median": times[len(times) // 2]}


def _time_interleaved(steps: dict, repeat: int) -> dict:
    """Time the steps round-robin, one step each per round, so load changes on the machine hit all alike."""
    for step in steps.values():
        for _ in range(2):
            step()
    times: dict = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: {"best": min(t), "median": sorted(t)[len(t) // 2]} for name, t in times.items()}


def _tf_setup(threads: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _tf_step(tf, layer_fns, x, variables):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = x
            for fn in layer_fns:
                h = fn(h)
            loss = tf.reduce_sum(h)
        return tape.gradient(loss, [x, *variables])

    return lambda: [r.numpy() for r in step(x)]


def run_native_tf(s: dict, threads: int, repeat: int) -> Callable[[], object]:
    tf = _tf_setup(threads)
    from returnn_native.cpu_kernels import set_num_threads
    from returnn_native.tf_unit import NativeLstmUnit

    set_num_threads(threads)
    rng = tf.random.Generator.from_seed(1)
    x = rng.normal([s["B"], s["T"], s["n_in"]])
    mask = tf.ones([s["B"], s["T"]])
    variables, layer_fns = [], []
    n_in = s["n_in"]
    for _ in range(s["layers"]):
        dir_fns = []
        for direction in (1, -1) if s["bidirectional"] else (1,):
            unit = NativeLstmUnit(n_in, s["n"])
            p = {k: tf.Variable(rng.normal(spec.shape) * 0.05) for k, spec in unit.param_specs().items()}
            variables += list(p.values())
            dir_fns.append(lambda h, unit=unit, p=p, d=direction: unit(p, h, mask, direction=d)[0])
        layer_fns.append(lambda h, fns=dir_fns: tf.concat([f(h) for f in fns], axis=-1) if len(fns) > 1 else fns[0](h))
        n_in = s["n"] * len(dir_fns)
    return _tf_step(tf, layer_fns, x, variables)


def run_blocklstm(s: dict, threads: int, repeat: int) -> Callable[[], object]:
    tf = _tf_setup(threads)
    from tensorflow.python.ops import rnn_grad  # noqa: F401  (registers the BlockLSTM gradient)

    rng = tf.random.Generator.from_seed(1)
    x = rng.normal([s["T"], s["B"], s["n_in"]])  # BlockLSTM is time-major
    n = s["n"]
    zeros = tf.zeros([s["B"], n])
    peep = tf.zeros([n])
    seq_len = tf.constant(s["T"], tf.int64)
    variables, layer_fns = [], []
    n_in = s["n_in"]
    for _ in range(s["layers"]):
        dir_fns = []
        for direction in (1, -1) if s["bidirectional"] else (1,):
            w = tf.Variable(rng.normal([n_in + n, 4 * n]) * 0.05)
            b = tf.Variable(tf.zeros([4 * n]))
            variables += [w, b]

            def fn(h, w=w, b=b, d=direction):
                if d < 0:
                    h = tf.reverse(h, [0])
                out = tf.raw_ops.BlockLSTM(
                    seq_len_max=seq_len,
                    x=h,
                    cs_prev=zeros,
                    h_prev=zeros,
                    w=w,
                    wci=peep,
                    wcf=peep,
                    wco=peep,
                    b=b,
                    forget_bias=0.0,
                    cell_clip=-1.0,
                    use_peephole=False,
                ).h
                return tf.reverse(out, [0]) if d < 0 else out

            dir_fns.append(fn)
        layer_fns.append(lambda h, fns=dir_fns: tf.concat([f(h) for f in fns], axis=-1) if len(fns) > 1 else fns[0](h))
        n_in = n * len(dir_fns)
    return _tf_step(tf, layer_fns, x, variables)


def run_keras(s: dict, threads: int, repeat: int) -> Callable[[], object]:
    tf = _tf_setup(threads)
    import keras

    rng = tf.random.Generator.from_seed(1)
    x = rng.normal([s["B"], s["T"], s["n_in"]])
    layers = []
    for _ in range(s["layers"]):
        layer = keras.layers.LSTM(s["n"], return_sequences=True)
        if s["bidirectional"]:
            layer = keras.layers.Bidirectional(layer)
        layers.append(layer)
    h = x
    for layer in layers:
        h = layer(h)  # builds the weights
    variables = [v.value for layer in layers for v in layer.trainable_weights]
    return _tf_step(tf, layers, x, variables)


def run_torch(s: dict, threads: int, repeat: int) -> Callable[[], object]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(s["n_in"], s["n"], num_layers=s["layers"], bidirectional=s["bidirectional"], batch_first=True)
    x = torch.randn(s["B"], s["T"], s["n_in"], requires_grad=True)

    def step():
        lstm.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = lstm(x)
        y.sum().backward()
        return x.grad

    return step


def run_native_pytensor(s: dict, threads: int, repeat: int) -> Callable[[], object]:
    import numpy as np

    from returnn_core.paths import cache_dir

    os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={cache_dir('pytensor')},blas__ldflags=")
    import pytensor
    import pytensor.tensor as pt
    from returnn_native.cpu_kernels import set_num_threads
    from returnn_native.pytensor_unit import NativeLstmUnit

    set_num_threads(threads)
    rng = np.random.default_rng(1)
    x = pt.tensor3(dtype="float32")
    mask = pt.ones((x.shape[0], x.shape[1]), dtype="float32")
    params, h = [], x
    n_in = s["n_in"]
    for _ in range(s["layers"]):
        outs = []
        for direction in (1, -1) if s["bidirectional"] else (1,):
            unit = NativeLstmUnit(n_in, s["n"])
            p = {
                k: pytensor.shared((rng.normal(size=spec.shape) * 0.05).astype("float32"))
                for k, spec in unit.param_specs().items()
            }
            params += list(p.values())
            outs.append(unit(p, h, mask, direction=direction)[0])
        h = pt.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
        n_in = s["n"] * len(outs)
    grads = pytensor.grad(h.sum(), [x, *params])
    f = pytensor.function([x], grads, mode="CVM")
    x_val = rng.normal(size=(s["B"], s["T"], s["n_in"])).astype("float32")
    return lambda: f(x_val)


def run_sgemm(s: dict, threads: int, repeat: int) -> dict:
    """sgemm GFLOP/s (NumPy's OpenBLAS) at the recurrent step shape and at 2000^3."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for name, (m, k, n) in {"step": (s["B"], s["n"], 4 * s["n"]), "square": (2000, 2000, 2000)}.items():
        a = rng.normal(size=(m, k)).astype(np.float32)
        b = rng.normal(size=(k, n)).astype(np.float32)
        reps = max(1, int(2e9 / (2 * m * k * n)))
        sec = _time_steps(lambda a=a, b=b, reps=reps: [a @ b for _ in range(reps)], max(repeat, 5))["best"] / reps
        out[name] = 2 * m * k * n / sec / 1e9
    return out


RUNNERS = {
    "native_tf": run_native_tf,
    "native_pytensor": run_native_pytensor,
    "blocklstm": run_blocklstm,
    "keras": run_keras,
    "torch": run_torch,
    "sgemm": run_sgemm,
}


def _worker(args: argparse.Namespace) -> None:
    s = SETTINGS[args.setting]
    if "torch" in args.worker.split(","):
        # torch's own libgomp reads OMP_* when it loads; load it before returnn_native sets OMP_WAIT_POLICY for
        # its kernels, so torch runs with its default settings
        import torch  # noqa: F401
    if args.worker == "sgemm":
        result = run_sgemm(s, args.threads, args.repeat)
    else:
        steps = {}
        for impl in args.worker.split(","):
            try:
                steps[impl] = RUNNERS[impl](s, args.threads, args.repeat)
            except Exception as exc:  # one broken library should not sink the table
                sys.stderr.write(f"{impl}: {type(exc).__name__}: {exc}\n")
        result = _time_interleaved(steps, args.repeat)
    print("RESULT " + json.dumps(result))


def _spawn(impl: str, setting: str, threads: int, repeat: int) -> object:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        impl,
        "--setting",
        setting,
        "--threads",
        str(threads),
        "--repeat",
        str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.stderr.write(f"{impl} / {setting} failed:\n{proc.stderr[-3000:]}\n")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated implementations (default: all)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated settings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    impls = [i for i in (args.only.split(",") if args.only else IMPLS) if i]
    print(
        f"LSTM fwd+bwd, float32, CPU, {args.threads} threads for every library, {args.repeat} timed steps each,"
        " interleaved round-robin in one process\n"
    )
    for setting in args.settings.split(","):
        s = SETTINGS[setting]
        flops = gemm_flops(s)
        sgemm = _spawn("sgemm", setting, args.threads, args.repeat) or {}
        results = _spawn(",".join(impls), setting, args.threads, args.repeat) or {}
        print(
            f"### {setting}: T={s['T']} B={s['B']} in={s['n_in']} n={s['n']} layers={s['layers']}"
            f"{' bidirectional' if s['bidirectional'] else ''}; {flops / 1e9:.1f} GFLOP per step"
        )
        print("| implementation | best ms / step | median ms | GFLOP/s (best) | NativeLSTM (TF) speedup |")
        print("|---|---:|---:|---:|---:|")
        ref = results.get("native_tf")
        for impl in impls:
            res = results.get(impl)
            if res is None:
                print(f"| {IMPLS[impl]} | failed | | | |")
                continue
            sec = res["best"]
            rel = f"{sec / ref['best']:.2f}x" if ref and impl != "native_tf" else ""
            print(f"| {IMPLS[impl]} | {sec * 1e3:.1f} | {res['median'] * 1e3:.1f} | {flops / sec / 1e9:.0f} | {rel} |")
        for name, gflops in sgemm.items():
            label = "(B,n)x(n,4n)" if name == "step" else "2000^3"
            print(
                f"| GEMM-bound limit, {label} sgemm at {gflops:.0f} GFLOP/s | {flops / gflops / 1e6:.1f} | | "
                f"{gflops:.0f} | |"
            )
        print()


if __name__ == "__main__":
    main()
