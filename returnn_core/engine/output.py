"""The protocol of a forward-output writer (registered under ``output_writers``, e.g. ``"hdf"``)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class OutputWriter(Protocol):
    """Writes forwarded seqs to ``path``; constructed as ``cls(path, *, dim, sparse, labels=None)``.

    Nothing may appear at ``path`` until :meth:`close` succeeds (write a temporary file, then rename);
    :meth:`abort` discards what was written.
    """

    def write_batch(self, outputs: np.ndarray, seq_lens: np.ndarray, tags: list[str]) -> None:
        """Append a batch: ``outputs`` (B, T, D) or (B, T) for sparse, valid frames ``seq_lens`` (B,)."""
        ...

    def close(self) -> None:
        """Finish the file and move it into place."""
        ...

    def abort(self) -> None:
        """Remove the partial output."""
        ...
