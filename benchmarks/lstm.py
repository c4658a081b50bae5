"""Benchmark: NativeLSTM forward+backward against TensorFlow's LSTM kernels, torch.nn.LSTM and the GEMM-bound limit.

Two settings, all float32 on CPU, every sequence full length:

* ``1x500``: one LSTM layer, T=50, B=40, input 500, 500 units;
* ``5x500 BLSTM``: the seed's setup, 5 bidirectional layers of 500 units per direction, T=50, B=40, input 40.

One step = forward, a sum loss, and gradients w.r.t. the input and all parameters. Per setting one subprocess
builds every implementation with the same thread count for every library (``--threads``, default 2: TF
intra/inter-op pools, torch.set_num_threads, NativeLSTM's OpenMP threads, OpenBLAS/OpenMP env vars), then times
them round-robin, one step each per round (so changing load on a shared machine hits all alike), and reports the
best and the median of ``--repeat`` steps, and the least process CPU time of a step (all threads, spin-waits
included: the work, less disturbed by other load than the wall clock). The sgemm rate (NumPy's OpenBLAS) is timed
in the same rounds, at a large square size and at the per-step recurrent shape (B, n) x (n, 4n); the GEMM-bound
limit is the step's GEMM FLOPs divided by it. The PyTensor op runs with the PyTensor configuration of the theano
backend (its dots on OpenBLAS). Below each table the ratios the NativeLSTM goals are stated in (TF op vs torch, TF
op vs the large-sgemm bound, PyTensor op vs TF op), from the best wall-clock steps and, in brackets, from CPU time.

    python benchmarks/lstm.py [--threads 2] [--repeat 10] [--only native_tf,torch]
    python benchmarks/lstm.py --only native_tf_amx,native_tf_avx512 --settings 1x500

The opt-in rows ``native_tf_amx`` / ``native_tf_avx512`` run the TF op with the kernel library's step GEMMs switched
to one instruction set for their steps, to compare them with each other in one run (how the default was chosen).
    python benchmarks/lstm.py --gpu [--repeat 10] [--only native_tf,keras,torch,native_pytensor]

``--gpu`` times NativeLSTM's CUDA kernels (TF op; PyTensor op with host copies) against cuDNN (keras LSTM on the
GPU, torch.nn.LSTM on CUDA), all in full float32 (TF32 off), one process per library; without a GPU it says so
and measures nothing.

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
#: opt-in implementations (``--only``): the TF op with another step-GEMM ISA of the kernel library
EXTRA_IMPLS = {
    "native_tf_avx512": "NativeLSTM (TF op, AVX-512 float32 step GEMMs)",
    "native_tf_amx": "NativeLSTM (TF op, AMX split-bf16 step GEMMs)",
}


def setting_heading(name: str, s: dict) -> str:
    """The markdown heading of one setting's table: its shapes and GEMM work per step."""
    return (f"### {name}: T={s['T']} B={s['B']} in={s['n_in']} n={s['n']} layers={s['layers']}"
            f"{' bidirectional' if s['bidirectional'] else ''}; {gemm_flops(s) / 1e9:.1f} GFLOP per step")


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
    cpu: dict = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {"best": min(t), "median": sorted(t)[len(t) // 2], "cpu_best": min(cpu[name])}
        for name, t in times.items()
    }


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


def run_native_tf_isa(isa: str) -> Callable[[dict, int, int], Callable[[], object]]:
    """The TF op with the kernel library's step GEMMs switched to ``isa`` for its steps (the others keep theirs)."""

    def runner(s: dict, threads: int, repeat: int) -> Callable[[], object]:
        from returnn_native.cpu_kernels import get_isa, set_isa

        default = get_isa()
        set_isa(isa)  # raises here, before timing, where the library lacks it
        set_isa(default)
        step = run_native_tf(s, threads, repeat)

        def isa_step() -> object:
            set_isa(isa)
            try:
                return step()
            finally:
                set_isa(default)

        return isa_step

    return runner


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

    try:  # PyTensor as the theano backend configures it (C linker, its dots on OpenBLAS)
        from returnn_theano.pytensor_setup import configure
    except ImportError:
        from returnn_core.paths import cache_dir

        os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={cache_dir('pytensor')}")
    else:
        configure()
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


#: sgemm shapes (m, k, n, calls per timed step) timed with the implementations: 2000^3 and 50 recurrent steps
SGEMM_SHAPES = {"square": lambda s: (2000, 2000, 2000, 1), "step": lambda s: (s["B"], s["n"], 4 * s["n"], s["T"])}


def run_sgemm(s: dict, shape: str) -> tuple[Callable[[], object], float]:
    """A step of NumPy sgemm calls at one of ``SGEMM_SHAPES`` and its FLOPs."""
    import numpy as np

    m, k, n, calls = SGEMM_SHAPES[shape](s)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    return (lambda: [a @ b for _ in range(calls)]), 2.0 * m * k * n * calls


RUNNERS = {
    "native_tf": run_native_tf,
    "native_pytensor": run_native_pytensor,
    "blocklstm": run_blocklstm,
    "keras": run_keras,
    "torch": run_torch,
    "native_tf_avx512": run_native_tf_isa("avx512"),
    "native_tf_amx": run_native_tf_isa("amx"),
}


def _worker(args: argparse.Namespace) -> None:
    s = SETTINGS[args.setting]
    if "torch" in args.worker.split(","):
        # torch's own libgomp reads OMP_* when it loads; load it before returnn_native sets OMP_WAIT_POLICY for
        # its kernels, so torch runs with its default settings
        import torch  # noqa: F401
    steps, sgemm_flops = {}, {}
    for impl in args.worker.split(","):
        try:
            steps[impl] = RUNNERS[impl](s, args.threads, args.repeat)
        except Exception as exc:  # one broken library should not sink the table
            sys.stderr.write(f"{impl}: {type(exc).__name__}: {exc}\n")
    for shape in SGEMM_SHAPES:
        steps[f"sgemm_{shape}"], sgemm_flops[shape] = run_sgemm(s, shape)
    result = _time_interleaved(steps, args.repeat)
    for shape, flops in sgemm_flops.items():
        result[f"sgemm_{shape}"]["gflops"] = flops / result[f"sgemm_{shape}"]["best"] / 1e9
    print("RESULT " + json.dumps(result))


def _spawn(impl: str, setting: str, threads: int, repeat: int) -> object:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    # NumPy's OpenBLAS (the sgemm rounds) frees its cores soon after a call instead of spinning ~0.1 s into the
    # next implementation's step; returnn_native sets the same for the OpenBLAS it uses
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
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


GPU_IMPLS = {
    "native_tf": "NativeLSTM (TF op, CUDA kernels)",
    "keras": "tf.keras LSTM (cuDNN)",
    "torch": "torch.nn.LSTM (cuDNN)",
    "native_pytensor": "NativeLSTM (PyTensor CUDA op, host copies)",
}


def _tf_gpu(threads: int):
    """TF on the GPU in full float32 (no TF32, like the NativeLSTM kernels' cuBLAS calls), memory grown on demand."""
    tf = _tf_setup(threads)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise RuntimeError("TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty)")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


def _gpu_runner(impl: str, s: dict, threads: int, repeat: int) -> Callable[[], object]:
    """One GPU implementation's step; raises when it cannot run on the GPU (never falls back to the CPU)."""
    if impl == "torch":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.manual_seed(1)
        lstm = torch.nn.LSTM(
            s["n_in"], s["n"], num_layers=s["layers"], bidirectional=s["bidirectional"], batch_first=True
        ).cuda()
        x = torch.randn(s["B"], s["T"], s["n_in"], device="cuda", requires_grad=True)

        def step():
            lstm.zero_grad(set_to_none=True)
            x.grad = None
            y, _ = lstm(x)
            y.sum().backward()
            torch.cuda.synchronize()

        return step
    if impl == "native_pytensor":
        os.environ["RETURNN_NATIVE_CUDA"] = "1"  # the PyTensor op runs the CUDA kernels only when asked
        return run_native_pytensor(s, threads, repeat)
    tf = _tf_gpu(threads)
    if impl == "native_tf":
        from returnn_native.tf_gpu_op import load_tf_gpu_kernels
        from returnn_native.tf_ops import load_tf_op_library

        load_tf_op_library()
        if not load_tf_gpu_kernels():
            raise RuntimeError("the NativeLstm GPU kernels were not loaded (see the warning above)")
    with tf.device("/GPU:0"):
        step = (run_native_tf if impl == "native_tf" else run_keras)(s, threads, repeat)
        step()  # traces the tf.function under the GPU device scope
    return step


def _gpu_worker(args: argparse.Namespace) -> None:
    s = SETTINGS[args.setting]
    step = _gpu_runner(args.gpu_worker, s, args.threads, args.repeat)
    print("RESULT " + json.dumps(_time_steps(step, args.repeat)))


def gpu_main(args: argparse.Namespace) -> None:
    """``--gpu``: NativeLSTM's CUDA kernels against cuDNN (keras, torch), one subprocess per implementation."""
    from returnn_native.cuda_kernels import gpu_count

    if gpu_count() == 0:
        print(
            "--gpu: no CUDA GPU here (the NVIDIA driver reports none, or there is no driver): nothing was measured. "
            "Run this on a machine with a GPU; the CPU comparison is `python benchmarks/lstm.py` without --gpu."
        )
        return
    impls = [i for i in (args.only.split(",") if args.only else GPU_IMPLS) if i]
    print(
        f"LSTM fwd+bwd, float32 (TF32 off everywhere), GPU, {args.repeat} timed steps each, one process per library\n"
    )
    for setting in args.settings.split(","):
        s = SETTINGS[setting]
        results = {}
        for impl in impls:
            cmd = [sys.executable, os.path.abspath(__file__), "--gpu-worker", impl, "--setting", setting]
            cmd += ["--threads", str(args.threads), "--repeat", str(args.repeat)]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            results[impl] = json.loads(lines[-1][len("RESULT ") :]) if lines else proc.stderr.strip().splitlines()[-1:]
        print(setting_heading(setting, s))
        print("| implementation | best ms / step | median ms | NativeLSTM (TF) speedup (best) |")
        print("|---|---:|---:|---:|")
        ref = results.get("native_tf")
        for impl in impls:
            res = results[impl]
            if not isinstance(res, dict):
                print(f"| {GPU_IMPLS[impl]} | failed: {' '.join(res) or 'no output'} | | |")
                continue
            rel = f"{res['best'] / ref['best']:.2f}x" if isinstance(ref, dict) and impl != "native_tf" else ""
            print(f"| {GPU_IMPLS[impl]} | {res['best'] * 1e3:.2f} | {res['median'] * 1e3:.2f} | {rel} |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated implementations (default: all)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated settings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--gpu", action="store_true", help="compare on the GPU against cuDNN (keras, torch) instead")
    parser.add_argument("--gpu-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpu_worker:
        _gpu_worker(args)
        return
    if args.gpu:
        gpu_main(args)
        return
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
        results = _spawn(",".join(impls), setting, args.threads, args.repeat) or {}
        print(setting_heading(setting, s))
        print("| implementation | best ms / step | median ms | GFLOP/s (best) | CPU ms (best) | NativeLSTM (TF) speedup |")
        print("|---|---:|---:|---:|---:|---:|")
        ref = results.get("native_tf")
        names = {**IMPLS, **EXTRA_IMPLS}
        for impl in impls:
            res = results.get(impl)
            if res is None:
                print(f"| {names[impl]} | failed | | | | |")
                continue
            sec = res["best"]
            rel = f"{sec / ref['best']:.2f}x" if ref and impl != "native_tf" else ""
            print(
                f"| {names[impl]} | {sec * 1e3:.1f} | {res['median'] * 1e3:.1f} | {flops / sec / 1e9:.0f} | "
                f"{res['cpu_best'] * 1e3:.0f} | {rel} |"
            )
        bound = {}
        for shape, label in (("step", "(B,n)x(n,4n)"), ("square", "2000^3")):
            gflops = results.get(f"sgemm_{shape}", {}).get("gflops")
            if gflops:
                bound[shape] = flops / gflops / 1e9
                print(f"| GEMM-bound limit, {label} sgemm at {gflops:.0f} GFLOP/s | {bound[shape] * 1e3:.1f} | | "
                      f"{gflops:.0f} | | |")
        print()
        ratios = []

        def ratio(a: dict, b: dict) -> str:
            return f"{a['best'] / b['best']:.2f}x ({a['cpu_best'] / b['cpu_best']:.2f}x)"

        if ref and results.get("torch"):
            ratios.append(f"TF op {ratio(results['torch'], ref)} faster than torch.nn.LSTM")
        square = results.get("sgemm_square")
        if ref and square and bound.get("square"):
            cpu_bound = flops / (square["gflops"] * square["best"] / square["cpu_best"]) / 1e9
            ratios.append(f"TF op at {ref['best'] / bound['square']:.2f}x ({ref['cpu_best'] / cpu_bound:.2f}x) the "
                          "large-sgemm bound")
        if ref and results.get("native_pytensor"):
            ratios.append(f"PyTensor op at {ratio(results['native_pytensor'], ref)} the TF op")
        if ratios:
            print(f"NativeLSTM ratios ({setting}, best steps of this run): " + "; ".join(ratios))
        print()


if __name__ == "__main__":
    main()
