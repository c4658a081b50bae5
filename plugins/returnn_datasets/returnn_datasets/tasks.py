"""Small generated algorithmic tasks: copying, episodic copying, XML modelling, variable lookup, base conversion."""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from returnn_core.errors import DatasetError
from returnn_datasets.generating import GeneratingDataset


class CopyTaskDataset(GeneratingDataset):
    """Sparse ``data`` of random symbols and ``classes`` equal to it; lengths grow with the epoch if asked.

    A seq's length is drawn from ``[minlen + minlen_epoch_factor * epoch, maxlen + maxlen_epoch_factor * epoch]``.
    """

    def __init__(
        self,
        nsymbols: int,
        minlen: int = 0,
        maxlen: int = 0,
        minlen_epoch_factor: float = 0,
        maxlen_epoch_factor: float = 0,
        num_seqs: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__([nsymbols, 1], {"classes": [nsymbols, 1]}, num_seqs, **kwargs)
        self.nsymbols = int(nsymbols)
        self.minlen, self.maxlen = int(minlen), int(maxlen)
        self.minlen_epoch_factor, self.maxlen_epoch_factor = float(minlen_epoch_factor), float(maxlen_epoch_factor)
        if self.nsymbols < 1:
            raise DatasetError(f"{self.name}: nsymbols must be >= 1, got {nsymbols}")

    def length_range(self, epoch: int) -> tuple[int, int]:
        """``(min, max)`` seq length in ``epoch`` (at least 1)."""
        lo = max(int(self.minlen + self.minlen_epoch_factor * epoch), 1)
        hi = max(int(self.maxlen + self.maxlen_epoch_factor * epoch), lo)
        return lo, hi

    def _prepare_epoch(self, epoch: int) -> None:
        if self.minlen_epoch_factor or self.maxlen_epoch_factor:
            self._seqs_seed = None  # lengths depend on the epoch, not only on the seed
        super()._prepare_epoch(epoch)

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Random symbols, copied as the target."""
        lo, hi = self.length_range(epoch)
        x = self.sparse(rng.randint(0, self.nsymbols, size=rng.randint(lo, hi + 1)))
        return {"data": x, "classes": x.copy()}


class TaskEpisodicCopyDataset(GeneratingDataset):
    """The copy-memory task: remember ``episode_len`` symbols over a delay, then reproduce them.

    Input (one-hot, dim ``nsymbols + 2``): the symbols, ``delay`` blanks, a delimiter, ``episode_len`` blanks.
    Target (sparse): blanks until the delimiter, then the symbols. Blank is ``nsymbols``, delimiter ``nsymbols + 1``.
    """

    def __init__(
        self, nsymbols: int = 8, episode_len: int = 10, min_delay: int = 5, max_delay: int = 20, num_seqs: int = 1000,
        **kwargs: Any,
    ) -> None:
        dim = int(nsymbols) + 2
        super().__init__(dim, dim, num_seqs, **kwargs)
        self.nsymbols, self.episode_len = int(nsymbols), int(episode_len)
        self.min_delay, self.max_delay = int(min_delay), int(max_delay)
        if self.max_delay < self.min_delay:
            raise DatasetError(f"{self.name}: max_delay {max_delay} < min_delay {min_delay}")

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Symbols, blanks, delimiter, blanks -> blanks, then the symbols."""
        blank, delim = self.nsymbols, self.nsymbols + 1
        symbols = rng.randint(0, self.nsymbols, size=self.episode_len)
        delay = rng.randint(self.min_delay, self.max_delay + 1)
        x = np.concatenate([symbols, [blank] * delay, [delim], [blank] * (self.episode_len - 1)])
        y = np.concatenate([[blank] * (self.episode_len + delay), symbols])
        return {"data": self.one_hot(x), "classes": self.sparse(y)}


XML_SYMBOLS = "<>/." + string.ascii_lowercase


class TaskXmlModelingDataset(GeneratingDataset):
    """Predict the next char of nested XML-like text (``<ab><c></c></ab>``); closing tags are predictable.

    ``data`` is the text one-hot over ``"<>/."`` + a-z; ``classes`` the next char ("." after the last one).
    """

    input_labels = tuple(XML_SYMBOLS)
    output_labels = tuple(XML_SYMBOLS)

    def __init__(
        self, limit_stack_depth: int = 4, max_tag_len: int = 3, min_seq_len: int = 10, max_seq_len: int = 100,
        num_seqs: int = 1000, **kwargs: Any,
    ) -> None:
        super().__init__(len(XML_SYMBOLS), len(XML_SYMBOLS), num_seqs, **kwargs)
        self.limit_stack_depth, self.max_tag_len = int(limit_stack_depth), int(max_tag_len)
        self.min_seq_len, self.max_seq_len = int(min_seq_len), int(max_seq_len)

    def generate_text(self, rng: np.random.RandomState, length: int) -> str:
        """Random open/close tags, never deeper than ``limit_stack_depth``; all open tags closed at the end."""
        stack: list[str] = []
        out = ""
        while len(out) < length:
            can_open = len(stack) < self.limit_stack_depth
            if stack and (not can_open or rng.uniform() < 0.4):
                out += f"</{stack.pop()}>"
            else:
                name = "".join(string.ascii_lowercase[i] for i in rng.randint(0, 26, size=rng.randint(1, self.max_tag_len + 1)))
                stack.append(name)
                out += f"<{name}>"
        while stack:
            out += f"</{stack.pop()}>"
        return out

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """Text and its next-char targets."""
        text = self.generate_text(rng, rng.randint(self.min_seq_len, self.max_seq_len + 1))
        x = [XML_SYMBOLS.index(c) for c in text]
        return {"data": self.one_hot(x), "classes": self.sparse(x[1:] + [XML_SYMBOLS.index(".")])}


VAR_SYMBOLS = "=;?." + string.ascii_lowercase


class TaskVariableAssignmentDataset(GeneratingDataset):
    """Assignments ``name=value;`` then a query ``?name;``: the target is that variable's value, then ".".

    ``data`` (one-hot over ``"=;?."`` + a-z) and ``classes`` (sparse, same symbols) differ in length.
    """

    input_labels = tuple(VAR_SYMBOLS)
    output_labels = tuple(VAR_SYMBOLS)

    def __init__(
        self, max_num_vars: int = 5, max_var_len: int = 3, max_value_len: int = 3, num_seqs: int = 1000, **kwargs: Any
    ) -> None:
        super().__init__(len(VAR_SYMBOLS), len(VAR_SYMBOLS), num_seqs, **kwargs)
        self.max_num_vars, self.max_var_len, self.max_value_len = int(max_num_vars), int(max_var_len), int(max_value_len)

    def _word(self, rng: np.random.RandomState, max_len: int) -> str:
        return "".join(string.ascii_lowercase[i] for i in rng.randint(0, 26, size=rng.randint(1, max_len + 1)))

    def generate_pair(self, rng: np.random.RandomState) -> tuple[str, str]:
        """The program text and its answer (without the final ".")."""
        env: dict[str, str] = {}
        text = ""
        for _ in range(rng.randint(1, self.max_num_vars + 1)):
            name, value = self._word(rng, self.max_var_len), self._word(rng, self.max_value_len)
            env[name] = value  # a later assignment overrides an earlier one
            text += f"{name}={value};"
        names = sorted(env)
        query = names[rng.randint(len(names))]
        return f"{text}?{query};", env[query]

    def generate_seq(self, seq_idx: int, rng: np.random.RandomState, epoch: int) -> dict[str, np.ndarray]:
        """One program and the queried value."""
        text, answer = self.generate_pair(rng)
        return {
            "data": self.one_hot([VAR_SYMBOLS.index(c) for c in text]),
            "classes": self.sparse([VAR_SYMBOLS.index(c) for c in answer + "."]),
        }


class TaskNumberBaseConvertDataset(GeneratingDataset):
    """A random number's digits in ``input_base`` (sparse ``data``) -> its digits in ``output_base`` (``classes``)."""

    def __init__(
        self, input_base: int = 8, output_base: int = 2, min_input_seq_len: int = 1, max_input_seq_len: int = 8,
        num_seqs: int = 1000, **kwargs: Any,
    ) -> None:
        super().__init__([int(input_base), 1], {"classes": [int(output_base), 1]}, num_seqs, **kwargs)
        self.input_base, self.output_base = int(input_base), int(output_base)
        if self.input_base < 2 or self.output_base < 2:
            raise DatasetError(f"{self.name}: bases must be >= 2, got {input_base} and {output_base}")
        self.min_len, self.max_len = int(min_input_seq_len), int(max_input_seq_len)

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
        """Digits without leading zeros (unless the number is 0)."""
        length = rng.randint(self.min_len, self.max_len + 1)
        digits = [int(d) for d in rng.randint(0, self.input_base, size=length)]
        if length > 1 and digits[0] == 0:
            digits[0] = int(rng.randint(1, self.input_base))
        number = 0
        for d in digits:
            number = number * self.input_base + d
        return {"data": self.sparse(digits), "classes": self.sparse(self.digits(number, self.output_base))}
