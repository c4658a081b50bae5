"""The time loop shared by the Theano-era recurrent layers: direction, masking, ``grad_clip``, ``truncation``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from returnn_core.frontend._layer import Context, Layer
from returnn_core.frontend._network import Network
from returnn_core.frontend._ops import Ops
from returnn_core.frontend._output import LayerOutput
from returnn_core.frontend.activations import get_activation

Step = Callable[..., tuple[Any, tuple[Any, ...]]]


class TheanoRecurrentLayer(Layer):
    """Base of the Theano-era recurrent layers: ``direction`` 1 or -1 (backwards over each seq's present frames),
    ``grad_clip`` (the gradient through each state is clipped to [-grad_clip, grad_clip]) and ``truncation``
    (RETURNN's truncated BPTT, which only -1 or None, i.e. full backpropagation, is accepted here)."""

    options = frozenset({"direction", "grad_clip", "truncation"})
    handles_activation = True
    #: the Theano RecurrentLayer options (``reverse`` instead of ``direction``) of lstm, lstm_opt, ..., recurrent
    RECURRENT_LAYER_OPTIONS = frozenset({"reverse", "truncation", "compile", "projection", "sampling"})
    #: number of comma-separated activation names ``activation`` may give (0: a plain single activation)
    activation_slots: int = 0
    #: the default of each activation slot
    default_activations: tuple[str, ...] = ()
    #: how many leading slots one activation name sets (RETURNN keeps the gates' sigmoid then)
    single_activation_slots: int = 2

    def __init__(self, name: str, layer_class: str, opts: Mapping[str, Any], net: Network) -> None:
        opts = dict(opts)
        act = opts.pop("activation", None) if self.activation_slots else None
        super().__init__(name, layer_class, opts, net)
        self.opts = dict(opts)
        if self.activation_slots:
            self.opts["activation"] = act
            self.activations = self._activation_list(act)
        self.direction = self.opts.get("direction", 1)
        if self.opts.get("reverse"):
            self.direction = -1
        if self.direction not in (1, -1):
            raise self.error(f"direction must be 1 or -1, got {self.direction!r}")
        truncation = self.opts.get("truncation")
        if truncation not in (None, -1):
            raise self.error(f"truncation={truncation!r}: truncated backpropagation through time is not "
                             "supported; remove it (full backpropagation) or set it to -1")
        if self.opts.get("compile", True) is not True:
            raise self.error("compile=False (a Theano subclass hook without output) is not supported")
        if self.opts.get("sampling", 1) != 1:
            raise self.error(f"sampling={self.opts['sampling']!r} (scan every n-th frame) is not supported; use 1")
        for key, off in (("encoder", None), ("n_dec", 0)):
            if self.opts.get(key, off) not in (None, 0, [], ()):
                raise self.error(f"{key}={self.opts[key]!r}: the Theano encoder-decoder mode is not supported; use "
                                 "the rec layer's sub-network for decoders")
        clip = self.opts.get("grad_clip")
        self.grad_clip = None if clip in (None, 0, False) else self.float_opt("grad_clip", 0.0)
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise self.error(f"grad_clip must be positive, got {clip!r}")

    def _activation_list(self, spec: Any) -> list[Callable[[Ops, Any], Any]]:
        """``activation`` as functions: one name for all slots or ``activation_slots``-many comma-separated ones."""
        names = list(self.default_activations)
        if spec:
            given = [s.strip() for s in str(spec).split(",")]
            if len(given) == 1:
                names[: self.single_activation_slots] = given * self.single_activation_slots
            elif len(given) in self.activation_lengths():
                names[: len(given)] = given
            else:
                raise self.error(f"activation {spec!r}: give 1 or {'/'.join(map(str, self.activation_lengths()))} "
                                 "comma-separated activation names")
        fns = [get_activation(n, layer=self.name) for n in names]
        return [f if f is not None else _identity for f in fns]

    def activation_lengths(self) -> tuple[int, ...]:
        """How many comma-separated names ``activation`` may hold besides one."""
        return (self.activation_slots,)

    def time_input(self, sources: list[LayerOutput]) -> LayerOutput:
        """The concatenated sources, which must be (batch, time, feature)."""
        return time_input(self, sources)

    def clip(self, ops: Ops, x: Any) -> Any:
        """``x`` with its gradient clipped if ``grad_clip`` is set."""
        return x if self.grad_clip is None else ops.clip_gradient(x, -self.grad_clip, self.grad_clip)

    def loop(self, ctx: Context, step: Step, seqs: list[Any], src: LayerOutput, initial: tuple[Any, ...],
             non_sequences: list[Any] = ()) -> tuple[Any, tuple[Any, ...]]:
        """Run ``step(*frames, *states, *non_sequences) -> (y, new_states)`` over the batch-major ``seqs`` in
        ``direction``; padded frames keep the previous states and give zero output. Returns y (B, T, n) and the
        final states."""
        return time_loop(ctx.ops, step, seqs, src.mask(), src.seq_lens, initial, non_sequences,
                         direction=self.direction, clip=lambda x: self.clip(ctx.ops, x))


def time_input(layer: Layer, sources: list[LayerOutput]) -> LayerOutput:
    """``layer``'s sources concatenated, which must be (batch, time, feature)."""
    src = layer.single_source(sources)
    if not src.has_time or src.ndim - (0 if src.sparse else 1) != 2:
        raise layer.error("needs a (batch, time, feature) input")
    return src


def time_loop(ops: Ops, step: Step, seqs: list[Any], mask: Any, seq_lens: Any, initial: tuple[Any, ...],
              non_sequences: list[Any] = (), *, direction: int = 1,
              clip: Callable[[Any], Any] | None = None) -> tuple[Any, tuple[Any, ...]]:
    """Run ``step(*frames, *states, *non_sequences) -> (y, new_states)`` over the batch-major ``seqs`` (B, T, ...)
    with ``mask`` (B, T), backwards over each seq's present frames for ``direction`` -1; padded frames keep the
    previous states and give zero output; ``clip`` applies to each new state. Returns y (B, T, n) and the final
    states."""
    if direction == -1:
        seqs = [ops.reverse_sequence(s, seq_lens) for s in seqs]

    def masked_step(*args: Any) -> tuple[Any, tuple[Any, ...]]:
        frames, m_t, rest = args[: len(seqs)], args[len(seqs)], args[len(seqs) + 1 :]
        prev, extra = rest[: len(initial)], rest[len(initial) :]
        y, new = step(*frames, *prev, *extra)
        new = tuple(m_t * n + (1.0 - m_t) * p for n, p in zip(new, prev))
        return y * m_t, tuple(new if clip is None else map(clip, new))

    time_major = [ops.transpose(s, (1, 0, *range(2, ops.ndim(s)))) for s in seqs]
    m = ops.expand_dims(ops.transpose(mask, (1, 0)), 2)
    ys, final = ops.scan(masked_step, [*time_major, m], list(initial), non_sequences=list(non_sequences))
    y = ops.transpose(ys, (1, 0, 2))
    if direction == -1:
        y = ops.reverse_sequence(y, seq_lens)
    return y, tuple(final)


def _identity(ops: Ops, x: Any) -> Any:
    return x
