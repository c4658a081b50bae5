"""Full-sum Baum-Welch over Sprint automata: checked against enumerating every path, and with the stand-in's
exported automata."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from returnn_sprint.error_signals import SprintInstancePool
from returnn_sprint.fast_bw import batch_baum_welch, baum_welch


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _brute_force(log_probs, automaton, am_scale=1.0, tdp_scale=1.0):
    """Sum over all edge sequences from state 0 to the final state."""
    num_states, edges, weights = automaton
    edges = np.asarray(edges)
    num_frames, dim = log_probs.shape
    total, soft = [], []
    for path in itertools.product(range(edges.shape[1]), repeat=num_frames):
        state, score, ok = 0, 0.0, True
        for t, e in enumerate(path):
            if edges[0, e] != state:
                ok = False
                break
            score += am_scale * log_probs[t, edges[2, e]] - tdp_scale * weights[e]
            state = edges[1, e]
        if ok and state == num_states - 1:
            total.append(score)
            soft.append([edges[2, e] for e in path])
    total = np.array(total)
    log_z = np.logaddexp.reduce(total)
    gamma = np.zeros((num_frames, dim))
    for score, labels in zip(total, soft):
        gamma[np.arange(num_frames), labels] += np.exp(score - log_z)
    return -log_z, gamma


@pytest.mark.parametrize("am_scale,tdp_scale", [(1.0, 1.0), (0.7, 0.3)])
def test_matches_path_enumeration(am_scale, tdp_scale):
    rng = np.random.RandomState(0)
    # 3 states + final, loops, forward edges and one skip edge, with transition costs
    edges = np.array([[0, 0, 1, 1, 2, 2, 0], [0, 1, 1, 2, 2, 3, 2], [0, 0, 1, 1, 2, 2, 1]])
    weights = rng.rand(edges.shape[1])
    log_probs = _log_softmax(rng.randn(5, 3))
    loss, soft = baum_welch(log_probs, (4, edges, weights), am_scale=am_scale, tdp_scale=tdp_scale)
    exp_loss, exp_soft = _brute_force(log_probs, (4, edges, weights), am_scale, tdp_scale)
    assert loss == pytest.approx(exp_loss, rel=1e-9)
    np.testing.assert_allclose(soft, exp_soft, atol=1e-9)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)


def test_no_path_is_an_error():
    edges = np.array([[0, 1], [1, 2], [0, 1]])  # exactly 2 frames possible
    with pytest.raises(ValueError, match="no path of 3 frames"):
        baum_welch(np.zeros((3, 2)), (3, edges, np.zeros(2)))


def test_with_automata_exported_by_sprint(sprint_exec, corpus):
    ref = np.load(corpus)
    pool = SprintInstancePool({"sprintExecPath": sprint_exec,
                               "sprintConfigStr": f"--*.corpus.file={corpus} --*.action=python-control", "numInstances": 2})
    try:
        idx = [0, 5, 8]
        automata = pool.get_automata_for_batch([str(ref["names"][i]) for i in idx])
    finally:
        pool.close()
    lens = [len(ref[f"align_{i}"]) for i in idx]
    # posteriors sharply peaked on the alignment: the soft alignment must follow it
    log_probs = np.full((3, max(lens), 4), np.log(0.01 / 3))
    for b, i in enumerate(idx):
        log_probs[b, np.arange(lens[b]), ref[f"align_{i}"]] = np.log(0.99)
    losses, errors = batch_baum_welch(log_probs, lens, automata)
    for b, i in enumerate(idx):
        align = ref[f"align_{i}"]
        soft = np.exp(log_probs[b, : lens[b]]) - errors[b, : lens[b]]
        assert (soft.argmax(axis=1) == align).all()
        assert losses[b] < -lens[b] * np.log(0.99) + 1e-3 + 1.0  # about the score of the aligned path
        assert not errors[b, lens[b] :].any()
