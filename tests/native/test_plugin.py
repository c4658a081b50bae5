"""Registration through the plugin manager, the compile-native-op command, threads, and no CUDA on CPU-only builds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from returnn_core.plugin import get_plugin_manager


def test_registered_for_both_backends() -> None:
    manager = get_plugin_manager()
    for backend in ("tf", "theano"):
        assert manager.native_ops.entry("NativeLstm", backend=backend).plugin in ("native", "returnn-native")
        assert manager.rec_units.entry("nativelstm", backend=backend)
    assert "compile-native-op" in manager.cli_tools


def test_hooks_import_nothing_heavy() -> None:
    code = (
        "import sys, returnn_native._hooks\n"
        "from returnn_core.plugin import get_plugin_manager\n"
        "get_plugin_manager().rec_units.entry('nativelstm', backend='tf')\n"
        "heavy = [m for m in ('numpy', 'tensorflow', 'pytensor', 'filelock') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_lists_and_builds_cpu(capsys) -> None:
    from returnn_native.cli import main

    assert main(["--list"]) == 0
    assert "NativeLstm(z[" in capsys.readouterr().out
    assert main(["--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "NativeLstm [cpu]" in out and "libreturnn_native_cpu.so" in out
    assert main(["NoSuchOp"]) == 2


def test_threads_give_same_result() -> None:
    """Splitting the units over threads (n >= 128) matches the single-threaded kernel."""
    from returnn_native import cpu_kernels

    rng = np.random.default_rng(0)
    B, T, n = 3, 6, 136
    z = rng.normal(size=(B, T, 4 * n)).astype(np.float32)
    w = (rng.normal(size=(n, 4 * n)) * 0.1).astype(np.float32)
    mask = np.ones((B, T), np.float32)
    mask[1, 4:] = 0
    h0 = rng.normal(size=(B, n)).astype(np.float32)
    before = cpu_kernels.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            cpu_kernels.set_num_threads(threads)
            fwd = cpu_kernels.lstm_fwd(z, w, mask, h0, h0, direction=-1)
            bwd = cpu_kernels.lstm_bwd(w, mask, h0, h0, *fwd[3:], fwd[0], fwd[1], fwd[2], direction=-1)
            results.append((*fwd, *bwd))
    finally:
        cpu_kernels.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-5)


def test_bad_direction_is_clear() -> None:
    from returnn_native import cpu_kernels
    from returnn_native.errors import NativeOpError

    with pytest.raises(NativeOpError, match="direction"):
        cpu_kernels.lstm_fwd(
            np.zeros((1, 1, 4)), np.zeros((1, 4)), np.ones((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), direction=2
        )


def test_returnn_command_lists_and_runs_the_tool() -> None:
    """Through the real ``returnn`` entry point: the ops show in --list-plugins, the subcommand runs."""
    run = [sys.executable, "-m", "returnn_core"]
    listing = subprocess.run([*run, "--list-plugins", "-v"], capture_output=True, text=True, check=True).stdout
    assert "NativeLstm@tf" in listing and "nativelstm@theano" in listing and "compile-native-op" in listing
    out = subprocess.run([*run, "compile-native-op", "--list"], capture_output=True, text=True, check=True).stdout
    assert "NativeLstmGrad(" in out
