"""The error-signal side: SprintSubprocessInstance / SprintInstancePool against the stand-in Sprint, in both
PythonControl modes (Sprint's control loop with a callback, and segment-wise training with SprintNnPythonLayer)."""

from __future__ import annotations

import numpy as np
import pytest
from returnn_sprint.error_signals import SprintInstancePool, SprintSubprocessInstance
from sprint_helpers import assert_reaped

from returnn_core.errors import TrainingError


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _expected(log_post: np.ndarray, align: np.ndarray) -> tuple[float, np.ndarray]:
    """Frame-wise CE computed here independently: loss and softmax - one-hot."""
    t = np.arange(len(align))
    onehot = np.zeros_like(log_post)
    onehot[t, align] = 1.0
    return float(-log_post[t, align].sum()), np.exp(log_post) - onehot


def _opts(sprint_exec, corpus, action: str, **extra) -> dict:
    return {"sprintExecPath": sprint_exec, "sprintConfigStr": [f"--*.corpus.file={corpus}", f"--*.action={action}"], **extra}


@pytest.mark.parametrize("action", ["python-control", "segmentwise-training"])
def test_loss_and_error_signal(sprint_exec, corpus, action):
    ref = np.load(corpus)
    inst = SprintSubprocessInstance(**_opts(sprint_exec, corpus, action))
    pid = inst.pid
    rng = np.random.RandomState(1)
    for i in (3, 0, 7):
        align = ref[f"align_{i}"]
        log_post = _log_softmax(rng.randn(len(align), 4)).astype(np.float32)
        loss, err = inst.get_loss_and_error_signal(str(ref["names"][i]), len(align), log_post)
        exp_loss, exp_err = _expected(log_post.astype(np.float64), align)
        assert loss == pytest.approx(exp_loss, rel=1e-5)
        np.testing.assert_allclose(err, exp_err, atol=1e-5)
    inst.close()
    assert_reaped(pid)


def test_export_fsa(sprint_exec, corpus):
    ref = np.load(corpus)
    inst = SprintSubprocessInstance(**_opts(sprint_exec, corpus, "python-control"))
    num_states, edges, weights = inst.export_allophone_state_fsa_by_segment_name(str(ref["names"][2]))
    align = ref["align_2"]
    runs = 1 + int((align[1:] != align[:-1]).sum())
    assert num_states == runs + 1 and edges.shape == (3, 2 * runs) and weights.shape == (2 * runs,)
    assert edges[2, 0] == align[0]
    inst.close()


def test_child_exception_is_reported_and_child_survives(sprint_exec, corpus):
    inst = SprintSubprocessInstance(**_opts(sprint_exec, corpus, "python-control"))
    with pytest.raises(TrainingError, match=r"failed on 'get_loss_and_error_signal': .*KeyError.*corpus/unknown"):
        inst.get_loss_and_error_signal("corpus/unknown", 3, np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 4\), expected \(3, dim\)"):
        inst.get_loss_and_error_signal("corpus/rec0/seg0", 3, np.zeros((2, 4), dtype=np.float32))
    n = len(np.load(corpus)["align_0"])
    loss, _ = inst.get_loss_and_error_signal("corpus/rec0/seg0", n, np.full((n, 4), -np.log(4), dtype=np.float32))
    assert loss == pytest.approx(n * np.log(4), rel=1e-5)  # the child survived the failed request
    inst.close()


def test_child_that_dies_on_start(sprint_exec, tmp_path):
    with pytest.raises(TrainingError, match=r"(?s)exit status 1.*No such file"):
        SprintSubprocessInstance(sprint_exec, sprintConfigStr=f"--*.corpus.file={tmp_path}/missing.npz --*.action=python-control")


def test_pool_batch(sprint_exec, corpus):
    ref = np.load(corpus)
    idx = [1, 4, 5, 9, 11]
    lens = [len(ref[f"align_{i}"]) for i in idx]
    rng = np.random.RandomState(3)
    log_post = _log_softmax(rng.randn(len(idx), max(lens), 4)).astype(np.float32)
    pool = SprintInstancePool(dict(_opts(sprint_exec, corpus, "python-control"), numInstances=2))
    losses, errors = pool.get_batch_loss_and_error_signal(log_post, lens, [str(ref["names"][i]) for i in idx])
    assert len(pool.instances) == 2
    pids = [i.pid for i in pool.instances]
    for b, i in enumerate(idx):
        exp_loss, exp_err = _expected(log_post[b, : lens[b]].astype(np.float64), ref[f"align_{i}"])
        assert losses[b] == pytest.approx(exp_loss, rel=1e-5)
        np.testing.assert_allclose(errors[b, : lens[b]], exp_err, atol=1e-5)
        assert not errors[b, lens[b] :].any()
    pool.close()
    for pid in pids:
        assert_reaped(pid)


def test_global_pool_is_shared(sprint_exec, corpus):
    opts = _opts(sprint_exec, corpus, "python-control")
    a = SprintInstancePool.get_global_instance(opts)
    assert SprintInstancePool.get_global_instance(dict(opts)) is a
    n = len(np.load(corpus)["align_0"])
    losses, _ = a.get_batch_loss_and_error_signal(np.full((1, n, 4), -np.log(4), dtype=np.float32), [n], [b"corpus/rec0/seg0"])
    assert losses[0] == pytest.approx(n * np.log(4), rel=1e-5)
    pid = a.instances[0].pid
    SprintInstancePool.close_all()
    assert_reaped(pid)
    assert SprintInstancePool.get_global_instance(opts) is not a
    SprintInstancePool.close_all()


def test_child_dies_or_hangs_during_a_request(sprint_exec, corpus):
    n = len(np.load(corpus)["align_0"])
    post = np.full((n, 4), -np.log(4), dtype=np.float32)
    crash = _opts(sprint_exec, corpus, "python-control")
    crash["sprintConfigStr"] = crash["sprintConfigStr"] + ["--*.fake.die-on-segment=corpus/rec0/seg0"]
    inst = SprintSubprocessInstance(**crash)
    pid = inst.pid
    with pytest.raises(TrainingError, match=r"^Sprint loss of segment 'corpus/rec0/seg0': .*closed its pipe.*exit status 3.*simulated crash on corpus/rec0/seg0$"):
        inst.get_loss_and_error_signal("corpus/rec0/seg0", n, post)
    assert_reaped(pid)
    with pytest.raises(TrainingError, match="child is closed"):
        inst.get_loss_and_error_signal("corpus/rec0/seg0", n, post)
    hang = _opts(sprint_exec, corpus, "python-control", reading_timeout=4.0)
    hang["sprintConfigStr"] = hang["sprintConfigStr"] + ["--*.fake.hang-on-segment=corpus/rec0/seg0"]
    inst = SprintSubprocessInstance(**hang)
    pid = inst.pid
    with pytest.raises(TrainingError, match=r"^Sprint loss of segment 'corpus/rec0/seg0': .*within 4 s \(reading_timeout; hung\?\).*SIGKILL.*hanging on corpus/rec0/seg0$"):
        inst.get_loss_and_error_signal("corpus/rec0/seg0", n, post)
    assert_reaped(pid)


def test_child_faults_are_counted_across_epochs(sprint_exec, corpus):
    """maxChildFaults 1: a child that dies is replaced once and the seq retried; the second fault, in a later
    batch (another epoch, same global pool), ends with the error that names the segment and the count."""
    ref = np.load(corpus)
    names = [str(n) for n in ref["names"]]
    opts = _opts(sprint_exec, corpus, "python-control", numInstances=2, maxChildFaults=1)
    opts["sprintConfigStr"] = opts["sprintConfigStr"] + [f"--*.fake.die-once-on-segments={names[1]},{names[4]}"]
    pool = SprintInstancePool(opts)

    def batch(idx: list[int]) -> np.ndarray:
        lens = [len(ref[f"align_{i}"]) for i in idx]
        post = np.full((len(idx), max(lens), 4), -np.log(4), dtype=np.float32)
        return pool.get_batch_loss_and_error_signal(post, lens, [names[i] for i in idx])[0]

    try:
        first = [i.pid for i in pool._ensure(2)]
        losses = batch([0, 1, 2])  # names[1] kills its child: replaced, retried
        assert losses[1] == pytest.approx(len(ref["align_1"]) * np.log(4), rel=1e-5) and pool.num_faults == 1
        assert_reaped(first[1])
        with pytest.raises(TrainingError, match=rf"^Sprint loss of segment '{names[4]}': .*simulated crash.*\(child fault 2 of this run; maxChildFaults 1\)$"):
            batch([3, 4])
    finally:
        pids = [i.pid for i in pool.instances if i.pid]
        pool.close()
    for pid in pids:
        assert_reaped(pid)
