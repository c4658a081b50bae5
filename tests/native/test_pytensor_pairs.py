"""The fused two-direction NativeLstm on PyTensor: the rewrite pairs a BLSTM's directions, results as unfused."""

from __future__ import annotations

import numpy as np
import pytest

pytensor = pytest.importorskip("pytensor")

import pytensor.tensor as pt  # noqa: E402
from returnn_native.cpu_kernels import lstm_bwd, lstm_bwd_pair, lstm_fwd, lstm_fwd_pair  # noqa: E402
from returnn_native.pytensor_ops import NativeLstmGradOp, NativeLstmOp, NativeLstmPairOp  # noqa: E402
from returnn_native.pytensor_unit import NativeLstmUnit  # noqa: E402

from .lstm_cases import make_case  # noqa: E402

TOL = 1e-5
FUSED = pytensor.compile.mode.Mode(linker="cvm", optimizer="fast_run")
UNFUSED = FUSED.excluding("pair_native_lstms")


def op_counts(fn) -> dict[str, int]:
    """Nodes of the compiled function per kind: single forward/gradient ops and pairs of each."""
    counts = {"fwd": 0, "grad": 0, "fwd_pair": 0, "grad_pair": 0}
    for node in fn.maker.fgraph.toposort():
        op = node.op
        if isinstance(op, NativeLstmPairOp):
            counts["fwd_pair" if op.single is NativeLstmOp else "grad_pair"] += 1
        elif isinstance(op, NativeLstmOp):
            counts["fwd"] += 1
        elif isinstance(op, NativeLstmGradOp):
            counts["grad"] += 1
    return counts


def blstm(layers: int, mode, seed: int = 0, n_in: int = 3, n: int = 5):
    """A compiled ``layers``-layer BLSTM (each layer: directions 1 and -1 on the same input and mask, different
    sizes per direction) returning the output and the gradients w.r.t. the input and all parameters."""
    rng = np.random.default_rng(seed)
    x, mask = pt.tensor3("x", dtype="float32"), pt.matrix("mask", dtype="float32")
    h, params = x, []
    for _ in range(layers):
        outs = []
        for direction, units in ((1, n), (-1, n + 2)):
            unit = NativeLstmUnit(n_in, units)
            p = {k: pytensor.shared((rng.normal(size=s.shape) * 0.5).astype("float32")) for k, s in
                 unit.param_specs().items()}
            params += list(p.values())
            outs.append(unit(p, h, mask, direction=direction)[0])
        h = pt.concatenate(outs, axis=-1)
        n_in = 2 * n + 2
    dy = rng.normal(size=(4, 6, n_in)).astype("float32")
    grads = pytensor.grad((h * dy).sum(), [x, *params])
    return pytensor.function([x, mask], [h, *grads], mode=mode)


def inputs(seed: int = 1):
    case = make_case(seed, 1, sizes=(4, 6, 3, 5))
    return case.x, case.mask


@pytest.mark.parametrize("layers", [1, 2])
def test_rewrite_pairs_directions_and_matches_unfused(layers: int) -> None:
    fused, unfused = blstm(layers, FUSED), blstm(layers, UNFUSED)
    # stacked layers depend on each other: only each layer's two directions pair up
    assert op_counts(fused) == {"fwd": 0, "grad": 0, "fwd_pair": layers, "grad_pair": layers}
    assert op_counts(unfused) == {"fwd": 2 * layers, "grad": 2 * layers, "fwd_pair": 0, "grad_pair": 0}
    for got, want in zip(fused(*inputs()), unfused(*inputs())):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


def test_python_perform_of_pairs_matches_c() -> None:
    """The py linker runs the pairs through ``perform`` (the pair kernels through ctypes)."""
    py = blstm(1, pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"))
    assert op_counts(py)["fwd_pair"] == 1
    for got, want in zip(py(*inputs(2)), blstm(1, FUSED)(*inputs(2))):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


def test_ops_with_different_masks_stay_apart() -> None:
    x = pt.tensor3(dtype="float32")
    m1, m2 = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    unit = NativeLstmUnit(3, 5)
    p = {k: pytensor.shared(np.zeros(s.shape, "float32")) for k, s in unit.param_specs().items()}
    y = unit(p, x, m1, direction=1)[0] + unit(p, x, m2, direction=-1)[0]
    fn = pytensor.function([x, m1, m2], y, mode=FUSED)
    assert op_counts(fn) == {"fwd": 2, "grad": 0, "fwd_pair": 0, "grad_pair": 0}


def test_kernel_pair_equals_two_calls() -> None:
    """The pair kernels (run at the same time on the threads) against one call after the other."""
    a, b = make_case(3, 1, sizes=(9, 7, 4, 6)), make_case(4, -1, sizes=(9, 7, 4, 3))
    b.mask = a.mask
    runs = []
    for case in (a, b):
        z = case.x @ case.W + case.b
        fwd = lstm_fwd(z, case.W_re, case.mask, case.h0, case.c0, case.direction)
        bwd = lstm_bwd(case.W_re, case.mask, case.h0, case.c0, *fwd[3:], case.dy, case.dh, case.dc, case.direction)
        runs.append(((z, case.W_re, case.mask, case.h0, case.c0), fwd, bwd, case))
    fwd_pair = lstm_fwd_pair(runs[0][0], runs[1][0], (1, -1))
    for (_, fwd, _, _), got in zip(runs, fwd_pair):
        for g, w in zip(got, fwd):
            np.testing.assert_allclose(g, w, atol=TOL, rtol=TOL)
    bwd_ins = [(c.W_re, c.mask, c.h0, c.c0, *f[3:], c.dy, c.dh, c.dc) for _, f, _, c in runs]
    bwd_pair = lstm_bwd_pair(bwd_ins[0], bwd_ins[1], (1, -1))
    for (_, _, bwd, _), got in zip(runs, bwd_pair):
        for g, w in zip(got, bwd):
            np.testing.assert_allclose(g, w, atol=TOL, rtol=TOL)
