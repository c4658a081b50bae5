"""CTC: the forward algorithm in log space on ``scan`` (differentiable); greedy decoding and edit distance in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np

from returnn_theano._pt import floatX, pt, scan

#: stands in for log(0): finite, so gradients through the log-sum-exp stay free of NaNs
LOG_ZERO = np.float32(-1e30)


def _logsumexp3(a: Any, b: Any, c: Any) -> Any:
    m = pt.maximum(pt.maximum(a, b), c)
    return m + pt.log(pt.exp(a - m) + pt.exp(b - m) + pt.exp(c - m))


def _shift(x: Any, k: int) -> Any:
    """``x`` (B, S) moved right by ``k`` along S, filled with LOG_ZERO."""
    pad = pt.alloc(LOG_ZERO, x.shape[0], k)
    return pt.concatenate([pad, x[:, :-k]], axis=1)


def ctc_log_likelihood(logp: Any, out_lens: Any, labels: Any, label_lens: Any, blank: Any) -> Any:
    """log p(labels | x) per seq (B,) for log probabilities ``logp`` (B, T, C) and ``labels`` (B, L)."""
    blank = pt.cast(pt.as_tensor_variable(blank), "int32")
    batch, n_labels = labels.shape[0], labels.shape[1]
    n_states = 2 * n_labels + 1
    # extended label seq: blank, l1, blank, l2, ..., blank
    ext = pt.alloc(blank, batch, n_states)
    ext = pt.set_subtensor(ext[:, 1::2], labels.astype("int32"))
    prev2 = pt.concatenate([pt.alloc(blank, batch, 2), ext[:, :-2]], axis=1)
    can_skip = pt.and_(pt.neq(ext, blank), pt.neq(ext, prev2))
    emit = logp.dimshuffle(1, 0, 2)[:, pt.arange(batch)[:, None], ext]  # (T, B, S)
    states = pt.arange(n_states)[None, :]
    alpha0 = pt.switch(pt.lt(states, 2), emit[0], LOG_ZERO)
    time_mask = pt.lt(pt.arange(logp.shape[1])[:, None], out_lens[None, :])  # (T, B)

    def step(emit_t: Any, present: Any, alpha: Any, skip: Any) -> Any:
        stay = alpha
        advance = _shift(alpha, 1)
        jump = pt.switch(skip, _shift(alpha, 2), LOG_ZERO)
        new = _logsumexp3(stay, advance, jump) + emit_t
        return pt.switch(present[:, None], new, alpha)

    alphas = scan(
        step,
        sequences=[emit[1:], time_mask[1:]],
        outputs_info=[alpha0],
        non_sequences=[can_skip],
        return_updates=False,
    )
    last = pt.concatenate([alpha0[None], alphas], axis=0)[-1]  # (B, S)
    rows = pt.arange(batch)
    end_blank = last[rows, 2 * label_lens]
    end_label = pt.switch(pt.gt(label_lens, 0), last[rows, pt.maximum(2 * label_lens - 1, 0)], LOG_ZERO)
    m = pt.maximum(end_blank, end_label)
    return (m + pt.log(pt.exp(end_blank - m) + pt.exp(end_label - m))).astype(floatX)


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance between two label seqs."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def greedy_decode(best: np.ndarray, length: int, blank: int) -> list[int]:
    """Collapse repeats, then drop blanks."""
    out, last = [], None
    for label in best[:length]:
        if label != last and label != blank:
            out.append(int(label))
        last = label
    return out

