"""RETURNN's small generated memory tasks: copy, episodic copy, XML modelling, variable assignment, base conversion.

Each task draws its seqs from the epoch's random stream in the same order of calls as the
``GeneratingDataset`` module of RETURNN 1.0 (one stream per epoch; later RETURNN reseeds per seq), so a seed
gives the same seqs. ``rng.randint(0, len(x))`` stands for RETURNN's ``rng.choice(x)``: numpy draws both the
same way. The targets follow RETURNN's ``make_output_seq`` of each task.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from returnn_core.errors import ConfigError
from returnn_datasets.generating import GeneratingDataset


def _pick(rng: np.random.RandomState, symbols: str) -> str:
    return symbols[rng.randint(0, len(symbols))]


class _SymbolTask(GeneratingDataset):
    """A task over one alphabet: one-hot ``data`` over ``input_labels``, sparse ``classes`` over the same symbols."""

    input_labels: str = ""

    def __init__(self, **kwargs: Any) -> None:
        self.output_labels = self.input_labels
        dim = len(self.input_labels)
        super().__init__(input_dim=dim, output_dim=dim, **kwargs)

    def generate_text(self, rng: np.random.RandomState) -> str:
        """One input seq as text."""
        raise NotImplementedError

    @classmethod
    def targets(cls, text: str) -> str:
        """The target text of an input text, one symbol per input symbol."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Symbols -> class indices."""
        return [self.input_labels.index(c) for c in text]

    def decode(self, indices: Any) -> str:
        """Class indices (or one-hot rows) -> symbols."""
        arr = np.asarray(indices)
        if arr.ndim == 2:
            arr = arr.argmax(axis=1)
        return "".join(self.input_labels[int(i)] for i in arr)

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """The input text one-hot, its targets sparse."""
        text = self.generate_text(rng)
        return {"data": self.one_hot(self.encode(text)), "classes": self.sparse(self.encode(self.targets(text)))}


class TaskEpisodicCopyDataset(_SymbolTask):
    """Episodic copy (arXiv:1511.06464), RETURNN's variant with random lengths of the episode and of the wait.

    Symbols ``" .01234567"`` (blank, delimiter, 8 chars; dim 10). Input: 1-9 random chars, 1-99 blanks, a
    delimiter, then one delimiter per char plus one. Target: blank until and at the first delimiter, then the
    chars in order, then delimiters.
    """

    input_labels = " .01234567"

    def generate_text(self, rng: np.random.RandomState) -> str:
        """Chars, blanks, delimiters."""
        n = rng.randint(1, 10)
        chars = "".join(_pick(rng, self.input_labels[2:]) for _ in range(n))
        return chars + " " * rng.randint(1, 100) + "." + "." * (n + 1)

    @classmethod
    def targets(cls, text: str) -> str:
        """Blank while reading; after the first delimiter, recall the chars, then delimiters."""
        delim = text.index(".")
        memory = "".join(c for c in text[:delim] if c != " ")
        recall = text[delim + 1 :]
        return " " * (delim + 1) + (memory + "." * len(recall))[: len(recall)]


class TaskXmlModelingDataset(_SymbolTask):
    """XML modelling (Jozefowicz et al. 2015): predict the next char of nested tags where it is determined.

    Symbols ``" <>/abcdefgh"`` (dim 12). Input: a blank, then tags with names of 1-9 chars, nested at most
    ``limit_stack_depth`` deep. Target per input char: the next char if it is certain (``<`` after a blank
    or ``>``, the closing tag's name and its ``>``), else blank.
    """

    input_labels = " <>/abcdefgh"

    def __init__(self, limit_stack_depth: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit_stack_depth = int(limit_stack_depth)
        if self.limit_stack_depth < 1:
            raise ConfigError(f"{self.name}: limit_stack_depth must be >= 1, got {limit_stack_depth}")

    def generate_text(self, rng: np.random.RandomState) -> str:
        """Open a tag when the stack is empty, or (room left) with probability 0.4; else close; stop at random when all are closed."""
        text, stack = " ", []
        while True:
            if not stack or (len(stack) < self.limit_stack_depth and rng.rand() > 0.6):
                tag = "".join(_pick(rng, self.input_labels[4:]) for _ in range(rng.randint(1, 10)))
                text += f"<{tag}>"
                stack.append(tag)
            else:
                text += f"</{stack.pop()}>"
            if not stack and rng.rand() > 0.2:
                return text

    @classmethod
    def targets(cls, text: str) -> str:
        """The determined next chars, blank where the next char is open."""
        out, stack, pending, i = [], [], "", 0
        while i < len(text):
            c = text[i]
            if c in " >":
                out.append("<")
            elif c == "<":
                out.append(" ")  # an opening or a closing tag may follow
            elif c == "/":
                pending = stack.pop() + ">"
                out.append(pending[0])
                pending = pending[1:]
            elif pending:
                out.append(pending[0])
                pending = pending[1:]
            else:  # a char of an opening tag's name
                if text[i - 1] == "<":
                    stack.append("")
                stack[-1] += c
                out.append(" ")
            i += 1
        return "".join(out)


class TaskVariableAssignmentDataset(_SymbolTask):
    """Variable assignment (Associative LSTM paper): store key/value pairs, then recall the value of one key.

    Symbols ``" ,.SQ()abcdefgh"`` (dim 15). Input: 1-4 stores ``S(key,value)`` (keys of 2-4 chars, unique;
    values of 1 char) joined by ``,``, then ``,Q(key)``, the value and ``.``. Target: blank, except from the
    query's ``)`` on: the value's chars, then ``.``, then blank.
    """

    input_labels = " ,.SQ()abcdefgh"

    def generate_text(self, rng: np.random.RandomState) -> str:
        """The stores, the query, the answer."""
        chars = self.input_labels[7:]
        store: dict[str, str] = {}
        parts = []
        for _ in range(rng.randint(1, 5)):
            key_len = rng.randint(2, 5)
            key = ""
            while not key or key in store:
                key = "".join(_pick(rng, chars) for _ in range(key_len))
            value = "".join(_pick(rng, chars) for _ in range(rng.randint(1, 2)))
            parts.append(f"S({key},{value})")
            store[key] = value
        # RETURNN calls rng.choice(store.keys()), which fails on Python 3; its intent is a uniform pick of a key
        keys = list(store)
        key = keys[rng.randint(0, len(keys))]
        return ",".join(parts) + f",Q({key}){store[key]}."

    @classmethod
    def targets(cls, text: str) -> str:
        """Blank until the query is complete, then the stored value and ``.``."""
        query = text.rindex("Q(")
        close = text.index(")", query)
        store = dict(re.findall(r"S\(([a-h]+),([a-h]+)\)", text[:query]))
        answer = store[text[query + 2 : close]] + "."
        return " " * close + answer + " " * (len(text) - close - len(answer))


class TaskNumberBaseConvertDataset(GeneratingDataset):
    """A random number's digits in ``input_base`` -> its digits in ``output_base``, both sparse.

    ``data`` has ``min_input_seq_len``..``max_input_seq_len`` uniformly random digits (leading zeros
    included); ``classes`` the number without leading zeros (``[0]`` for zero). Labels are the first ``base``
    chars of ``"0123456789abcdefghijklmnopqrstuvwxyz"``.
    """

    digit_chars = "0123456789abcdefghijklmnopqrstuvwxyz"

    def __init__(
        self, input_base: int = 8, output_base: int = 2, min_input_seq_len: int = 1, max_input_seq_len: int = 8,
        **kwargs: Any,
    ) -> None:
        self.input_base, self.output_base = int(input_base), int(output_base)
        for name, base in (("input_base", self.input_base), ("output_base", self.output_base)):
            if not 2 <= base <= len(self.digit_chars):
                raise ConfigError(f"TaskNumberBaseConvertDataset: {name} must be in 2..36, got {base}")
        self.min_input_seq_len, self.max_input_seq_len = int(min_input_seq_len), int(max_input_seq_len)
        if not 0 < self.min_input_seq_len <= self.max_input_seq_len:
            raise ConfigError(
                f"TaskNumberBaseConvertDataset: need 0 < min_input_seq_len <= max_input_seq_len, "
                f"got {min_input_seq_len} and {max_input_seq_len}"
            )
        self.input_labels = self.digit_chars[: self.input_base]
        self.output_labels = self.digit_chars[: self.output_base]
        dims = {"data": [self.input_base, 1], "classes": [self.output_base, 1]}
        super().__init__(input_dim=self.input_base, output_dim=dims, **kwargs)

    @staticmethod
    def digits(number: int, base: int) -> list[int]:
        """Most significant digit first; ``[0]`` for zero."""
        out = []
        while True:
            number, d = divmod(number, base)
            out.append(d)
            if number == 0:
                return out[::-1]

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Random digits and the same number's digits in the output base."""
        length = rng.randint(self.min_input_seq_len, self.max_input_seq_len + 1)
        digits = [rng.randint(0, self.input_base) for _ in range(length)]
        number = 0
        for d in digits:
            number = number * self.input_base + int(d)
        return {"data": self.sparse(digits), "classes": self.sparse(self.digits(number, self.output_base))}


class CopyTaskDataset(GeneratingDataset):
    """Sparse ``data`` of random symbols and ``classes`` equal to it; lengths may grow with the epoch.

    A seq's length is uniform in ``[minlen + minlen_epoch_factor * epoch, maxlen + maxlen_epoch_factor * epoch]``
    (each bound truncated to int; RETURNN requires ``0 < min <= max``).
    """

    epoch_dependent = True

    def __init__(
        self,
        nsymbols: int,
        minlen: int = 0,
        maxlen: int = 0,
        minlen_epoch_factor: float = 0,
        maxlen_epoch_factor: float = 0,
        **kwargs: Any,
    ) -> None:
        self.nsymbols = int(nsymbols)
        if not 1 <= self.nsymbols <= 256:
            raise ConfigError(f"CopyTaskDataset: nsymbols must be in 1..256, got {nsymbols}")
        dims = {"data": [self.nsymbols, 1], "classes": [self.nsymbols, 1]}
        super().__init__(input_dim=self.nsymbols, output_dim=dims, **kwargs)
        self.minlen, self.maxlen = int(minlen), int(maxlen)
        self.minlen_epoch_factor, self.maxlen_epoch_factor = float(minlen_epoch_factor), float(maxlen_epoch_factor)

    def length_range(self, epoch: int) -> tuple[int, int]:
        """``(min, max)`` seq length in ``epoch``."""
        lo = int(self.minlen + self.minlen_epoch_factor * epoch)
        hi = int(self.maxlen + self.maxlen_epoch_factor * epoch)
        if not 0 < lo <= hi:
            raise ConfigError(
                f"{self.name}: epoch {epoch} gives seq lengths {lo}..{hi}; set minlen/maxlen (and their epoch "
                "factors) so that 0 < min <= max"
            )
        return lo, hi

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Random symbols, copied as the target."""
        lo, hi = self.length_range(epoch)
        x = self.sparse([rng.randint(0, self.nsymbols) for _ in range(rng.randint(lo, hi + 1))])
        return {"data": x, "classes": x.copy()}
