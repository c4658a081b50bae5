"""Real distributions installed into a temporary folder, and the real CLI run in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent


def make_distribution(site: pathlib.Path, dist: str, module: str, code: str, *, requires: tuple[str, ...] = (),
                      plugin_name: str | None = None) -> None:
    """Install a real (fake-built) distribution into ``site``: dist-info with METADATA and an entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {dist}", "Version: 1.0"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    (info / "entry_points.txt").write_text(f"[returnn.plugins]\n{plugin_name or module} = {module}\n")


def install_toy_plugin(tmp_path: pathlib.Path) -> pathlib.Path:
    """A site folder under ``tmp_path`` holding the numpy toy backend (``toy_plugin``) as an installed plugin."""
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "returnn-toy", "toy_entry", "from toy_plugin import *\n", plugin_name="toy")
    return site


def run_returnn(args: list[str], *, site: pathlib.Path | None = None, env: dict[str, str] | None = None,
                cwd: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``returnn`` CLI in a subprocess (``site`` and this folder on PYTHONPATH)."""
    paths = [str(HERE)] + ([str(site)] if site else [])
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "returnn_core", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)  # never a terminal
