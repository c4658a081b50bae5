"""The CPU kernel library's code paths agree: AVX-512 packed step GEMMs vs the BLAS per step, batch vs unit split."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from returnn_native import cpu_kernels
from returnn_native.errors import NativeOpError


def _problem(B: int, T: int, n: int, seed: int = 0, w_scale: float = 0.2) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(B, T, 4 * n)).astype(np.float32)
    w = (rng.normal(size=(n, 4 * n)) * w_scale).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    h0 = (rng.normal(size=(B, n)) * 0.5).astype(np.float32)
    c0 = (rng.normal(size=(B, n)) * 0.5).astype(np.float32)
    dy = rng.normal(size=(B, T, n)).astype(np.float32)
    return z, w, mask, h0, c0, dy


def _fwd_bwd(z, w, mask, h0, c0, dy, direction: int) -> tuple[np.ndarray, ...]:
    fwd = cpu_kernels.lstm_fwd(z, w, mask, h0, c0, direction=direction)
    bwd = cpu_kernels.lstm_bwd(w, mask, h0, c0, *fwd[3:], dy, fwd[1], fwd[2], direction=direction)
    return (*fwd, *bwd)


def _numpy_lstm(z, w, mask, h0, c0, direction: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 reference forward: y, h_final, c_final."""
    z, w = z.astype(np.float64), w.astype(np.float64)
    n = w.shape[0]
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    y = np.zeros(z.shape[:2] + (n,))
    T = z.shape[1]
    for t in range(T) if direction == 1 else reversed(range(T)):
        g = z[:, t] + h @ w
        a, i, f, o = np.tanh(g[:, :n]), *(1 / (1 + np.exp(-g[:, k * n : (k + 1) * n])) for k in (1, 2, 3))
        c_new = f * c + i * a
        h_new = o * np.tanh(c_new)
        m = mask[:, t : t + 1]
        c, h = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
        y[:, t] = m * h_new
    return y, h, c


@pytest.fixture
def isa_and_threads():
    """Restores the kernel library's ISA and thread count after the test."""
    isa, threads = cpu_kernels.get_isa(), cpu_kernels.get_num_threads()
    yield
    cpu_kernels.set_isa(isa)
    cpu_kernels.set_num_threads(threads)


# B=25: row blocks of 12 and 13 -> micro-kernels of 8 and 9 rows; n=70: panels of 32, 32 and a tail of 6 columns
@pytest.mark.parametrize("direction", [1, -1])
def test_avx512_matches_generic_blas(direction: int, isa_and_threads) -> None:
    """The packed AVX-512 micro-kernel and the BLAS-per-step path give the same forward and backward results."""
    try:
        cpu_kernels.set_isa("avx512")
    except NativeOpError:
        pytest.skip("kernel library built without AVX-512 (host CPU lacks it)")
    problem = _problem(25, 7, 70, seed=direction + 2)
    cpu_kernels.set_num_threads(1)
    packed = _fwd_bwd(*problem, direction)
    cpu_kernels.set_isa("generic")
    assert cpu_kernels.get_isa() == "generic"
    blas = _fwd_bwd(*problem, direction)
    for got, want in zip(packed, blas):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    y, h, c = _numpy_lstm(*problem[:5], direction)
    for got, want in zip(packed[:3], (y, h, c)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# B=37: row groups of 32 (two tiles) and 5 (one); n=260 (AMX from 256 units): K chunks of 32 with a padded tail
# (9 forward, 33 backward), panels of 32 and a tail of 4 columns. B*T=4200 frames: the weight gradient in two blocks
# of frames (4096 and a tail); over 60 steps recurrent weights of scale 0.2 (gain ~3) would amplify any rounding
# difference past 1e-4, so that case has them at the usual 1/sqrt(n).
@pytest.mark.parametrize("direction,sizes,w_scale",
                         [(1, (37, 6, 260), 0.2), (-1, (37, 6, 260), 0.2), (1, (70, 60, 260), 260**-0.5)])
def test_amx_split_bf16_is_float32_accurate(direction: int, sizes: tuple[int, int, int], w_scale: float,
                                             isa_and_threads) -> None:
    """AMX with split-bf16 operands: forward and backward within 1e-4 (absolute and relative) of the float32 BLAS
    path, and far closer to it than a single bf16 rounding of the operands (one step's GEMM rounded so is off by
    ~1e-1 here)."""
    if "amx" not in cpu_kernels.available_isas():
        pytest.skip("kernel library built without AMX, or the OS does not grant the tile state")
    problem = _problem(*sizes, seed=direction + 5, w_scale=w_scale)
    cpu_kernels.set_num_threads(1)
    cpu_kernels.set_isa("generic")
    fp32 = _fwd_bwd(*problem, direction)
    cpu_kernels.set_isa("amx")
    assert cpu_kernels.get_isa() == "amx"
    amx = _fwd_bwd(*problem, direction)
    for got, want in zip(amx, fp32):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    errors = [float(np.abs(got - want).max()) for got, want in zip(amx, fp32)]
    y, h, c = _numpy_lstm(*problem[:5], direction)
    for got, want in zip(amx[:3], (y, h, c)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    w, h0 = problem[1], problem[3]
    bf16 = (h0.view(np.uint32) & 0xFFFF0000).view(np.float32) @ (w.view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert np.abs(bf16 - h0 @ w).max() > 100 * max(errors)


@pytest.mark.parametrize("B,n", [(20, 20), (40, 70), (3, 136), (40, 260), (70, 260)])
def test_two_threads_match_one(B: int, n: int, isa_and_threads) -> None:
    """Threads splitting the batch (B >= 16; with AMX, n >= 256, B >= 64) or the units (B=3, n=136; B=40, n=260)
    match a single thread, on every ISA."""
    problem = _problem(B, 5, n, seed=B)
    for isa in cpu_kernels.available_isas():
        cpu_kernels.set_isa(isa)
        results = []
        for threads in (1, 2):
            cpu_kernels.set_num_threads(threads)
            results.append(_fwd_bwd(*problem, direction=-1))
        for one, two in zip(*results):
            np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-5)


def test_unknown_isa_is_clear() -> None:
    with pytest.raises(NativeOpError, match="unknown ISA 'sse9'.*generic"):
        cpu_kernels.set_isa("sse9")


@pytest.fixture
def blas_threads():
    """OpenBLAS's thread count getter, set to 2 for the test (restored after it)."""
    from returnn_native.toolchain import find_blas

    blas = find_blas()
    lib = ctypes.CDLL(f"{blas.lib_dir}/lib{blas.library}.so")
    get = getattr(lib, f"{blas.symbol_prefix}openblas_get_num_threads")
    set_ = getattr(lib, f"{blas.symbol_prefix}openblas_set_num_threads")
    before = get()
    set_(2)
    yield get
    set_(before)


def test_kernels_leave_the_blas_thread_count_alone(blas_threads) -> None:
    """A kernel call restores OpenBLAS's thread count: PyTensor's dot products share this OpenBLAS and keep theirs."""
    _fwd_bwd(*_problem(4, 3, 8), direction=1)
    assert blas_threads() == 2


def test_overlapping_calls_leave_the_blas_thread_count_alone(blas_threads) -> None:
    """Calls that overlap (TF runs a BLSTM's directions on two threads) restore it too, not one call's 1 from the
    other: a single-threaded OpenBLAS afterwards made PyTensor's dot products half as fast in a process that ran TF."""
    from concurrent.futures import ThreadPoolExecutor

    problem = _problem(8, 30, 128)  # calls long enough to overlap
    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            list(pool.map(lambda d: _fwd_bwd(*problem, direction=d), (1, -1, 1, -1)))
            assert blas_threads() == 2
    first, second = _problem(4, 20, 8, seed=1), _problem(4, 20, 8, seed=2)
    cpu_kernels.lstm_fwd_pair(first[:5], second[:5], (1, -1))
    assert blas_threads() == 2


def test_concurrent_calls_match_sequential(isa_and_threads) -> None:
    """Calls running at once (TF runs a BLSTM's directions in parallel) share the threads and get the same results."""
    from concurrent.futures import ThreadPoolExecutor

    cpu_kernels.set_num_threads(2)
    problems = [(_problem(24, 6, 40, seed=s), d) for s, d in ((5, 1), (6, -1), (7, 1), (8, -1))]
    sequential = [_fwd_bwd(*p, direction=d) for p, d in problems]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda pd: _fwd_bwd(*pd[0], direction=pd[1]), problems * 3))
    for got, want in zip(concurrent, sequential * 3):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_available_isas_leave_the_choice_alone() -> None:
    before = cpu_kernels.get_isa()
    isas = cpu_kernels.available_isas()
    assert "generic" in isas and before in isas and "auto" not in isas
    assert cpu_kernels.get_isa() == before
