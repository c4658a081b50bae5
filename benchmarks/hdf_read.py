"""Benchmark: HDFDataset with batch generation vs. a plain sequential h5py read of the same >= 1 GB file.

Writes the file with HDFWriter under /tmp (never in the repo), then measures, each in a fresh subprocess
so that peak memory (ru_maxrss) belongs to one reader alone:

* ``raw``: h5py reads ``inputs`` and ``targets/data/classes`` front to back in large slices;
* ``dataset``: HDFDataset (``cache_size`` budget) -> ``generate_batches`` -> padded ``BatchData`` arrays.

Prints frames/s for both, their ratio (goal >= 0.8) and the dataset's peak memory above the interpreter's
baseline next to its ``cache_size`` and the file size.

    python benchmarks/hdf_read.py [--size-gb 1.0] [--cache-size 256M] [--dim 40] [--keep] [--cold]

With the file in the page cache the raw read is one memory copy, which any batching (a second, padded copy)
cannot match; ``--cold`` measures reads from the disk instead. Report both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

#: slice sizes tried for the plain h5py read; the fastest one is the baseline
RAW_BLOCK_BYTES = (4 << 20, 32 << 20)


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


def run_raw(path: str, block_bytes: int = RAW_BLOCK_BYTES[0]) -> dict:
    """Plain h5py: every frame of every stream, front to back in slices of about ``block_bytes``."""
    import h5py

    t0 = time.perf_counter()
    checksum = 0.0
    with h5py.File(path, "r") as f:
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


def _drop_page_cache() -> None:
    """Evict the file from the page cache (needs root), so reads come from the disk like a corpus beyond RAM."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as exc:
        sys.exit(f"--cold needs permission to write /proc/sys/vm/drop_caches: {exc}")


def _child(args: argparse.Namespace) -> None:
    """One of: ``time`` (all readers alternating in one warm process, best of ``repeat``), ``mem-*`` (one pass)."""
    opts = (args.path, args.cache_size, args.batch_size, args.max_seqs)
    if args.child == "time":
        runs: dict[str, list[dict]] = {}
        drop = _drop_page_cache if args.cold else (lambda: None)
        for i in range(args.repeat + 1):  # the first round warms up the page cache and the allocator
            for block in RAW_BLOCK_BYTES:
                drop()
                res = run_raw(args.path, block)
                if i:
                    runs.setdefault(f"raw-{block >> 20}M", []).append(res)
            for batches in (False, True):
                drop()
                res = run_dataset(*opts, batches=batches)
                if i:
                    runs.setdefault("dataset-batches" if batches else "dataset-seqs", []).append(res)
        print(json.dumps({k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}))
        return
    base = _rss_mb()
    if args.child == "mem-raw":
        run_raw(args.path, max(RAW_BLOCK_BYTES))
    else:
        run_dataset(*opts)
    print(json.dumps({"peak_mb": _peak_mb() - base}))


def _spawn(args: argparse.Namespace, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--path", args.path, "--cache-size", args.cache_size,
           "--batch-size", str(args.batch_size), "--max-seqs", str(args.max_seqs), "--repeat", str(args.repeat)]
    if args.cold:
        cmd.append("--cold")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Write the file, time both readers (best of ``--repeat``), print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=1.0)
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--cache-size", default="256M")
    p.add_argument("--batch-size", type=int, default=20000)
    p.add_argument("--max-seqs", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--path", default="/tmp/returnn_hdf_read_bench.hdf")
    p.add_argument("--keep", action="store_true", help="keep (and reuse) the file")
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before every timed read (root): disk reads, as for a corpus beyond RAM")
    p.add_argument("--child", choices=("time", "mem-raw", "mem-dataset"), help=argparse.SUPPRESS)
    args = p.parse_args()
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
        times = _spawn(args, "time")
        mem_raw = _spawn(args, "mem-raw")["peak_mb"]
        mem_ds = _spawn(args, "mem-dataset")["peak_mb"]
    finally:
        if not args.keep and os.path.exists(args.path):
            os.remove(args.path)
    raw_key = min((k for k in times if k.startswith("raw-")), key=lambda k: times[k]["seconds"])
    raw, seqs, full = times[raw_key], times["dataset-seqs"], times["dataset-batches"]
    assert seqs["frames"] == full["frames"] == raw["frames"], (raw["frames"], seqs["frames"], full["frames"])
    fps = {k: v["frames"] / v["seconds"] for k, v in times.items()}
    cache = "cold page cache (read from disk)" if args.cold else "warm page cache (in RAM)"
    print(f"file: {size / 2**30:.2f} GiB, {raw['frames']} frames; best of {args.repeat} runs each, {cache}")
    for key in sorted(k for k in times if k.startswith("raw-")):
        print(f"plain h5py sequential read ({key[4:]:>3} slices): {fps[key] / 1e6:7.2f} M frames/s ({times[key]['seconds']:.3f}s)")
    print(f"HDFDataset seqs only:                  {fps['dataset-seqs'] / 1e6:7.2f} M frames/s ({seqs['seconds']:.3f}s)")
    print(f"HDFDataset + batch generation:         {fps['dataset-batches'] / 1e6:7.2f} M frames/s ({full['seconds']:.3f}s, "
          f"{full['count']} padded batches)")
    print(f"ratio seqs only / raw ({raw_key}):       {fps['dataset-seqs'] / fps[raw_key]:.3f}")
    print(f"ratio with batches / raw ({raw_key}):    {fps['dataset-batches'] / fps[raw_key]:.3f}  (goal >= 0.8)")
    print(f"peak memory above baseline: HDFDataset+batches {mem_ds:.0f} MiB, raw h5py {mem_raw:.0f} MiB "
          f"(cache_size {full['cache_size_mb']:.0f} MiB, file {size / 2**20:.0f} MiB)")

if __name__ == "__main__":
    main()
