"""Full-sum Baum-Welch over the HMM automata Sprint exports, for the ``fast_bw`` loss.

An automaton is ``(num_states, edges (3, E) [from, to, emission], weights (E,))`` as returned by
``export_allophone_state_fsa_by_segment_name``: state 0 is the start, ``num_states - 1`` the final state, every
edge consumes one frame emitting class ``emission`` at cost ``weight`` (-log space).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Automaton = tuple[int, np.ndarray, np.ndarray]


def baum_welch(log_probs: np.ndarray, automaton: Automaton, *, am_scale: float = 1.0, tdp_scale: float = 1.0) -> tuple[float, np.ndarray]:
    """``-log`` of the summed score of all paths through the automaton, and the soft alignment (T, D).

    ``log_probs`` (T, D) are the frame log posteriors; the soft alignment is the posterior of each class per frame
    (rows sum to 1), so ``am_scale * (softmax - soft_alignment)`` is the gradient w.r.t. the logits.
    """
    num_states, edges, weights = automaton
    edges = np.asarray(edges, dtype=np.int64)
    if edges.ndim != 2 or edges.shape[0] != 3:
        raise ValueError(f"automaton edges must have shape (3, E), got {edges.shape}")
    src, dst, emission = edges
    cost = np.asarray(weights, dtype=np.float64) * tdp_scale
    scores = np.asarray(log_probs, dtype=np.float64) * am_scale
    num_frames = scores.shape[0]
    if emission.size and (emission.max() >= scores.shape[1] or emission.min() < 0):
        raise ValueError(f"automaton emits class {emission.max()}, but the posteriors have {scores.shape[1]} classes")
    alpha = np.full((num_frames + 1, num_states), -np.inf)
    alpha[0, 0] = 0.0
    for t in range(num_frames):
        np.logaddexp.at(alpha[t + 1], dst, alpha[t, src] + scores[t, emission] - cost)
    beta = np.full((num_frames + 1, num_states), -np.inf)
    beta[num_frames, num_states - 1] = 0.0
    for t in range(num_frames - 1, -1, -1):
        np.logaddexp.at(beta[t], src, beta[t + 1, dst] + scores[t, emission] - cost)
    log_z = alpha[num_frames, num_states - 1]
    if not np.isfinite(log_z):
        raise ValueError(f"no path of {num_frames} frames through the automaton ({num_states} states, {src.size} edges)")
    soft = np.zeros_like(scores)
    for t in range(num_frames):
        edge_post = np.exp(alpha[t, src] + scores[t, emission] - cost + beta[t + 1, dst] - log_z)
        np.add.at(soft[t], emission, edge_post)
    return float(-log_z), soft


def batch_baum_welch(
    log_probs: np.ndarray, seq_lens: Sequence[int], automata: Sequence[Automaton], *, am_scale: float = 1.0, tdp_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seq losses (B,) and the error signals ``am_scale * (softmax - soft alignment)`` (B, T, D), zero when padded."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    losses = np.zeros((log_probs.shape[0],), dtype=np.float32)
    errors = np.zeros(log_probs.shape, dtype=np.float32)
    for b, automaton in enumerate(automata):
        n = int(seq_lens[b])
        loss, soft = baum_welch(log_probs[b, :n], automaton, am_scale=am_scale, tdp_scale=tdp_scale)
        losses[b] = loss
        errors[b, :n] = am_scale * (np.exp(log_probs[b, :n]) - soft)
    return losses, errors
