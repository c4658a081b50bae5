"""Allophones and labels: map the (allophone, HMM state) of an alignment to a class index.

An allophone file lists one allophone per line (``a{b+c}@i@f``; ``#`` lines are comments); the line number is the
allophone index used in alignment caches. A label is either the tied state from a state-tying file (lines
``<allophone>.<state> <label>``) or the index of the center phoneme in a phoneme list (one phoneme per line).
"""

from __future__ import annotations

import os

from returnn_sprint.archive import SprintCacheError
from returnn_sprint.records import decode_emission


def _read_lines(path: str, what: str) -> list[str]:
    try:
        with open(path, encoding="utf8") as f:
            return [line.rstrip("\n") for line in f]
    except OSError as exc:
        raise SprintCacheError(f"{what} {path}: cannot open: {exc.strerror}") from None


def read_allophone_file(path: str) -> list[str]:
    """Allophone strings in index order."""
    return [line.strip() for line in _read_lines(path, "allophone file") if line.strip() and not line.startswith("#")]


def center_phoneme(allophone: str) -> str:
    """``a{b+c}@i@f`` -> ``a``."""
    return allophone.split("{", 1)[0]


class AllophoneLabeling:
    """Class index of an allophone state from a state-tying file or a phoneme list."""

    def __init__(
        self,
        allophone_file: str,
        *,
        phoneme_file: str | None = None,
        state_tying_file: str | None = None,
        silence_phone: str = "[SILENCE]",
    ) -> None:
        if bool(phoneme_file) == bool(state_tying_file):
            raise SprintCacheError("AllophoneLabeling: give exactly one of phoneme_file and state_tying_file")
        self.allophone_file = os.fspath(allophone_file)
        self.allophones = read_allophone_file(self.allophone_file)
        self.silence_phone = silence_phone
        self.state_tying: dict[str, int] | None = None
        self.phonemes: list[str] | None = None
        self._cache: dict[int, int] = {}
        if state_tying_file:
            self.state_tying = {}
            for lineno, line in enumerate(_read_lines(state_tying_file, "state-tying file"), 1):
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise SprintCacheError(
                        f"state-tying file {state_tying_file} line {lineno}: expected '<allophone>.<state> <label>', "
                        f"got {line!r}"
                    )
                self.state_tying[parts[0]] = int(parts[1])
            self.num_labels = max(self.state_tying.values(), default=-1) + 1
        else:
            self.phonemes = [p.split()[0] for p in _read_lines(phoneme_file, "phoneme file") if p.strip() and not p.startswith("#")]
            self._phoneme_idx = {p: i for i, p in enumerate(self.phonemes)}
            self.num_labels = len(self.phonemes)

    def allophone(self, allo_idx: int) -> str:
        """The allophone string of an index."""
        if not 0 <= allo_idx < len(self.allophones):
            raise SprintCacheError(
                f"allophone index {allo_idx} out of range: {self.allophone_file} lists {len(self.allophones)}"
            )
        return self.allophones[allo_idx]

    def get_label_idx(self, allo_idx: int, state_idx: int) -> int:
        """Class index of allophone ``allo_idx`` in HMM state ``state_idx``."""
        allo = self.allophone(allo_idx)
        if self.state_tying is not None:
            key = f"{allo}.{state_idx}"
            if key not in self.state_tying:
                raise SprintCacheError(f"allophone state {key!r} is not in the state tying")
            return self.state_tying[key]
        phone = center_phoneme(allo)
        if phone not in self._phoneme_idx:
            raise SprintCacheError(f"phoneme {phone!r} of allophone {allo!r} is not in the phoneme list")
        return self._phoneme_idx[phone]

    def get_label_idx_by_emission(self, emission: int) -> int:
        """Class index of an emission index ``allophone + state * (1 << 26)``."""
        label = self._cache.get(emission)
        if label is None:
            label = self._cache[emission] = self.get_label_idx(*decode_emission(emission))
        return label

    def labels(self) -> list[str]:
        """Names of the class indices (phonemes, or the first allophone state tied to each label)."""
        if self.phonemes is not None:
            return list(self.phonemes)
        names = [""] * self.num_labels
        for key, idx in self.state_tying.items():
            if idx >= 0 and not names[idx]:
                names[idx] = key
        return names
