"""Time ``returnn --list-plugins`` against a bare Python start in the same run (median of N each)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], n: int) -> float:
    """Median wall time of ``n`` runs of ``cmd``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(n: int = 15) -> None:
    """Print both medians and their ratio."""
    bare = median_seconds([sys.executable, "-c", "pass"], n)
    listing = median_seconds([sys.executable, "-m", "returnn_core", "--list-plugins"], n)
    print(f"python -c pass           {bare * 1000:7.1f} ms")
    print(f"returnn --list-plugins   {listing * 1000:7.1f} ms   ({listing / bare:.1f}x a bare interpreter start)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
