"""Benchmark: HDFDataset with batch generation vs. a plain sequential h5py read of the same >= 1 GB file.

Writes the file with HDFWriter under /tmp (never in the repo), then, in one process and alternating the readers
in every round, measures in both page-cache states:

* ``raw``: h5py (default settings) reads ``inputs`` and ``targets/data/classes`` front to back in slices of
  4 or 32 MiB; each slice is a fresh array, as a user of the data gets it;
* ``raw-nocc``: the same with HDF5's chunk cache off (``rdcc_nbytes=0``): one copy less, shown for reference;
* ``dataset``: HDFDataset (``cache_size`` budget) -> ``generate_batches`` -> padded ``BatchData`` arrays, as the
  training driver gets them. (Seqs alone are no measure: mapped seqs are read only when batched.)

``warm`` reads a file that is in the page cache; ``cold`` first evicts it (fsync, then
``posix_fadvise(DONTNEED)``; no root needed) and checks with ``mincore`` how much of it is still resident.
Prints frames/s, the ratios to the best plain read by wall time and by CPU time (the CPU ratio is steadier on
a shared machine), the load average, and the dataset's peak memory above the interpreter next to its
``cache_size`` and the file size (each in a fresh process, so that ``ru_maxrss`` belongs to one reader).

    python benchmarks/hdf_read.py [--size-gb 1.0] [--cache-size 256M] [--dim 40] [--repeat 3] [--states warm,cold] [--keep]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import mmap
import os
import resource
import subprocess
import sys
import time

import numpy as np

#: slice sizes tried for the plain h5py read; the fastest one is the baseline
RAW_BLOCK_BYTES = (4 << 20, 32 << 20)
#: the goal: HDFDataset with padded batches reaches this fraction of the plain read's frames/s
GOAL = 0.8


def _rss_mb() -> float:
    """Current resident set size (MiB) from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: str, size_gb: float, dim: int, seed: int = 0) -> dict:
    """A corpus of random-length seqs (100..1500 frames) of float32 features plus sparse classes."""
    from returnn_datasets.hdf import HDFWriter

    from returnn_core.datasets import DataSpec

    rng = np.random.RandomState(seed)
    row_bytes = dim * 4 + 4
    target_frames = int(size_gb * 2**30 / row_bytes)
    block = rng.randn(4096, dim).astype(np.float32)  # reused pattern: generation must not dominate the setup
    frames = seqs = 0
    with HDFWriter(path, dim=dim, targets={"classes": DataSpec(500, sparse=True)}) as w:
        while frames < target_frames:
            t = int(rng.randint(100, 1501))
            start = int(rng.randint(0, 4096 - t))
            x = block[start : start + t]
            w.write_seq(f"corpus/seq-{seqs}", x, {"classes": rng.randint(0, 500, size=t).astype(np.int32)})
            frames += t
            seqs += 1
    return {"frames": frames, "seqs": seqs, "bytes": os.path.getsize(path)}


def run_raw(path: str, block_bytes: int = RAW_BLOCK_BYTES[0], chunk_cache: bool = True) -> dict:
    """Plain h5py: every frame of every stream, front to back in slices of about ``block_bytes``."""
    import h5py

    t0 = time.perf_counter()
    checksum = 0.0
    with h5py.File(path, "r", **({} if chunk_cache else {"rdcc_nbytes": 0})) as f:
        streams = [f["inputs"], f["targets/data/classes"]]
        n = streams[0].shape[0]
        step = max(block_bytes // (streams[0].dtype.itemsize * int(np.prod(streams[0].shape[1:]))), 1)
        for lo in range(0, n, step):
            for ds in streams:
                checksum += float(ds[lo : lo + step][-1].sum())
    return {"frames": n, "seconds": time.perf_counter() - t0, "checksum": checksum}


def run_dataset(path: str, cache_size: str, batch_size: int, max_seqs: int, batches: bool = True) -> dict:
    """HDFDataset, one epoch in default order: seqs only, or generate_batches -> padded arrays."""
    from returnn_datasets.hdf import HDFDataset

    ds = HDFDataset([path], cache_size=cache_size)
    specs = ds.output_specs()
    t0 = time.perf_counter()
    ds.init_seq_order(epoch=1)
    frames = count = 0
    checksum = 0.0
    if batches:
        for batch in ds.generate_batches(batch_size=batch_size, max_seqs=max_seqs):
            data = batch.to_data(specs)
            frames += data.num_frames("data")
            count += 1
            checksum += float(data.data["data"][0, 0].sum())
    else:
        for seq in ds.iter_seqs():
            frames += seq.length("data")
            count += 1
    elapsed = time.perf_counter() - t0
    ds.close()
    return {"frames": frames, "seconds": elapsed, "count": count, "cache_size_mb": ds.cache_size / 2**20,
            "checksum": checksum}


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


def resident_fraction(path: str) -> float:
    """Fraction of the file's pages in the page cache (``mincore`` on a mapping of it); NaN if unavailable."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = _libc()
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return float("nan")
        try:
            pages = -(-size // mmap.PAGESIZE)
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                return float("nan")
            return float((np.frombuffer(vec, dtype=np.uint8) & 1).mean())
        finally:
            libc.munmap(addr, size)
    except (OSError, AttributeError):
        return float("nan")
    finally:
        os.close(fd)


def evict(path: str) -> float:
    """Drop the file from the page cache without root (fsync, then ``POSIX_FADV_DONTNEED``; it works for a
    file that nobody maps); returns the fraction still resident."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident_fraction(path)


def _timed(fn, *args, **kwargs) -> dict:
    c0 = time.process_time()
    res = fn(*args, **kwargs)
    res["cpu"] = time.process_time() - c0
    return res


def _child(args: argparse.Namespace) -> None:
    """``time``: every reader alternating in each round, both page-cache states; ``mem-*``: one warm pass."""
    opts = (args.path, args.cache_size, args.batch_size, args.max_seqs)
    if args.child == "time":
        readers = [(f"raw-{b >> 20}M", run_raw, (args.path, b)) for b in RAW_BLOCK_BYTES]
        readers.append(("raw-nocc-4M", run_raw, (args.path, RAW_BLOCK_BYTES[0], False)))
        readers.append(("dataset-batches", run_dataset, (*opts, True)))
        runs: dict[str, list[dict]] = {}
        resident: list[float] = []
        for i in range(args.repeat + 1):  # the first round warms up the allocator (and, for warm, the page cache)
            for state in args.states:
                for name, fn, fn_args in readers:
                    if state == "cold":
                        resident.append(evict(args.path))
                    elif resident_fraction(args.path) < 0.99:
                        run_raw(args.path, RAW_BLOCK_BYTES[-1])  # the whole file in RAM again
                    res = _timed(fn, *fn_args)
                    if i:
                        runs.setdefault(f"{state}/{name}", []).append(res)
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        for k, v in runs.items():
            best[k]["cpu"] = min(r["cpu"] for r in v)
            best[k]["median"] = float(np.median([r["seconds"] for r in v]))
        print(json.dumps({"best": best, "resident_after_evict": max(resident, default=float("nan"))}))
        return
    base = _rss_mb()
    if args.child == "mem-raw":
        run_raw(args.path, max(RAW_BLOCK_BYTES))
    else:
        run_dataset(*opts)
    print(json.dumps({"peak_mb": _peak_mb() - base}))


def _spawn(args: argparse.Namespace, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--path", args.path, "--cache-size", args.cache_size,
           "--batch-size", str(args.batch_size), "--max-seqs", str(args.max_seqs), "--repeat", str(args.repeat),
           "--states", ",".join(args.states)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _report(state: str, times: dict, resident: float) -> None:
    raw_keys = [k for k in times if k.startswith(f"{state}/raw-") and "nocc" not in k]
    raw_key = min(raw_keys, key=lambda k: times[k]["seconds"])
    raw, full = times[raw_key], times[f"{state}/dataset-batches"]
    assert full["frames"] == raw["frames"], (raw["frames"], full["frames"])
    if state == "cold":
        ok = "evicted" if resident < 0.01 else "NOT evicted: these are not cold reads"
        print(f"cold page cache: before each read the file was evicted, at most {resident:.1%} of it resident ({ok})")
    else:
        print("warm page cache: the file is read into RAM before each read")
    for key in sorted(times):
        if key.startswith(f"{state}/"):
            r = times[key]
            print(f"  {key.split('/', 1)[1]:16s} {r['frames'] / r['seconds'] / 1e6:7.2f} M frames/s  "
                  f"best {r['seconds']:.3f}s  median {r['median']:.3f}s  cpu {r['cpu']:.3f}s")
    print(f"  ratio with batches / {raw_key.split('/', 1)[1]}: wall {raw['seconds'] / full['seconds']:.3f}, "
          f"cpu {raw['cpu'] / full['cpu']:.3f}  (goal >= {GOAL})")
    nocc = times.get(f"{state}/raw-nocc-4M")
    if nocc:
        print(f"  ratio with batches / raw-nocc-4M: wall {nocc['seconds'] / full['seconds']:.3f}, "
              f"cpu {nocc['cpu'] / full['cpu']:.3f}  (h5py tuned by hand, for reference)")


def main() -> None:
    """Write the file, time the readers in both page-cache states (best of ``--repeat``), print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=1.0)
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--cache-size", default="256M")
    p.add_argument("--batch-size", type=int, default=20000)
    p.add_argument("--max-seqs", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--states", default="warm,cold", help="page-cache states to measure: warm, cold or both")
    p.add_argument("--cold", action="store_true", help="only the cold state (as --states cold)")
    p.add_argument("--path", default="/tmp/returnn_hdf_read_bench.hdf")
    p.add_argument("--keep", action="store_true", help="keep (and reuse) the file")
    p.add_argument("--child", choices=("time", "mem-raw", "mem-dataset"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.states = ["cold"] if args.cold else [x for x in args.states.split(",") if x]
    if not args.states or set(args.states) - {"warm", "cold"}:
        p.error(f"--states {','.join(args.states)!r}: give warm, cold or warm,cold")
    if args.child:
        _child(args)
        return
    if not os.path.abspath(args.path).startswith("/tmp/"):
        p.error("the benchmark file must live under /tmp")
    try:
        if not (args.keep and os.path.exists(args.path)):
            t0 = time.perf_counter()
            info = write_file(args.path, args.size_gb, args.dim)
            print(f"wrote {args.path}: {info['bytes'] / 2**30:.2f} GiB, {info['seqs']} seqs, {info['frames']} frames "
                  f"in {time.perf_counter() - t0:.1f}s")
        size = os.path.getsize(args.path)
        load_before = _load()
        timed = _spawn(args, "time")
        load_after = _load()
        mem_raw = _spawn(args, "mem-raw")["peak_mb"]
        mem_ds = _spawn(args, "mem-dataset")["peak_mb"]
    finally:
        if not args.keep and os.path.exists(args.path):
            os.remove(args.path)
    times = timed["best"]
    frames = next(iter(times.values()))["frames"]
    print(f"file: {size / 2**30:.2f} GiB, {frames} frames; best of {args.repeat} rounds, readers alternating")
    print(f"machine: {load_before} before, {load_after} after")
    for state in args.states:
        _report(state, times, timed["resident_after_evict"])
    full = times[f"{args.states[0]}/dataset-batches"]
    print(f"peak memory above baseline: HDFDataset+batches {mem_ds:.0f} MiB, raw h5py {mem_raw:.0f} MiB "
          f"(cache_size {full['cache_size_mb']:.0f} MiB, file {size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
