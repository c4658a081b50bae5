"""A ``rec`` layer whose ``unit`` is a dict: a sub-network evaluated once per time step (with beam search).

Inside the loop, ``from`` may name ``prev:<layer>`` (that layer's output of the previous step; its
``initial_output`` before the first), ``base:<layer>`` (a layer of the enclosing network), ``data`` or
``data:source`` (the current frame of the rec layer's input), ``data:<key>`` (the current frame of extern data
``key``) and ``:i`` (the step index). Parameters are named ``<rec layer>/rec/<sub layer>/<param>`` as in RETURNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.errors import NetworkError
from returnn_core.frontend._layer import Context, FrameShape
from returnn_core.frontend._network import Network
from returnn_core.frontend._output import LayerOutput
from returnn_core.network import DataRef, LayerRef, resolve_network
from returnn_core.network.description import LAYER_REF_OPTIONS

if TYPE_CHECKING:
    from returnn_core.frontend._layer import Layer
    from returnn_core.frontend._network import LossTerm
    from returnn_core.frontend._ops import Ops

#: the input frame of the rec layer, as a data key inside the loop
SOURCE_KEY = "source"
#: the step index, as a data key inside the loop
STEP_KEY = ":i"
#: options of sub-layers that the loop itself interprets
LOOP_OPTIONS = ("initial_output",)
#: layer classes that only make sense step by step
LOOP_ONLY_CLASSES = frozenset({"choice", "rnn_cell", "rec"})
#: without max_seq_len and an input time axis, a loop that ends by its end layer runs at most this many times the
#: longest 'data' seq
DEFAULT_MAX_LEN_FACTOR = 10
#: a score low enough that a beam entry is never chosen
NEG_INF = -1e30


@dataclass
class StepState:
    """What sub-layers (``choice``, ``rnn_cell``) see of the loop in the current step."""

    search: bool
    beam_size: int
    #: (B, K) accumulated log scores of the beam entries (search only)
    scores: Any = None
    #: (B*K,) float 1 where the hypothesis has ended already (search only)
    ended: Any = None
    #: data key -> current frame (B,) or (B, D) of extern data the loop reads (teacher forcing)
    frames: dict[str, LayerOutput] = field(default_factory=dict)
    #: sub-layer name -> its state tensors of the previous step (``rnn_cell``)
    prev_states: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    #: set by the search ``choice``: (labels (B*K,), source beam index (B*K,) into the old beams, scores (B, K))
    choice: tuple[Any, Any, Any] | None = None


def _parse_max_len(value: Any, *, layer: str) -> tuple[str | None, int, float]:
    """``max_seq_len`` as (base layer or None, constant, factor): an int, or ``max_len_from('base:x')`` [* f] [+ c]."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return None, value, 1.0
    if isinstance(value, str) and value.replace(" ", "").startswith("max_len_from("):
        text = value.replace(" ", "")
        inner, _, rest = text[len("max_len_from("):].partition(")")
        ref = inner.strip("'\"")
        factor, const = 1.0, 0
        for part in filter(None, rest.replace("+", " + ").replace("*", " * ").split(" ")):
            if part in ("+", "*"):
                op = part
                continue
            try:
                num = float(part)
            except ValueError:
                break
            if op == "*":
                factor *= num
            else:
                const += int(num)
        else:
            if ref.startswith("base:"):
                return ref[len("base:"):], const, factor
    raise NetworkError(f"layer {layer!r}: max_seq_len must be a positive int or \"max_len_from('base:<layer>')\" "
                       f"(optionally '* factor' and '+ n'), got {value!r}")


class RecSubnet:
    """The loop of one ``rec`` layer: its sub-layers, what moves out of the loop, and the step function."""

    def __init__(self, rec: Layer, unit: Mapping[str, Any]) -> None:
        self.rec = rec
        self.name = rec.name
        if "output" not in unit:
            raise NetworkError(f"layer {self.name!r}: its unit sub-network needs a layer named 'output'")
        self.initial_outputs: dict[str, Any] = {}
        #: data keys that outer layers register (register_as_extern_data) -> those layers
        self.registered = rec.net.root.description.registered_data
        rewritten, self.base_refs, prev_refs, extern_keys = self._rewrite(
            unit, {**rec.net.extern_data, **dict.fromkeys(self.registered)})
        data_keys = ["data", SOURCE_KEY, STEP_KEY, *extern_keys, *[f"prev:{p}" for p in unit],
                     *[f"base:{b}" for b in self.base_refs]]
        try:
            desc = resolve_network(rewritten, data_keys, default_input=SOURCE_KEY)
        except NetworkError as exc:
            raise NetworkError(f"layer {self.name!r} (rec unit): {exc} (only 'prev:' references may form a cycle)"
                               ) from None
        self.description = desc
        self.prev_refs = prev_refs
        self.extern_keys = extern_keys
        # parameters live under "<rec>/rec/<sub>" like RETURNN's variable scope; layer names stay "<rec>/<sub>"
        root = rec.net.root
        self.net = Network(desc, root.extern_data, manager=rec.net.manager, log=rec.net.log, backend=rec.net.backend,
                           parent=rec.net, prefix=f"{self.name}/")
        self.net.rec_loop = self
        for short, layer in self.net.layers.items():
            if layer.param_owner.startswith(f"{self.name}/"):
                layer.param_owner = f"{self.name}/rec/{layer.param_owner[len(self.name) + 1:]}"
            spec = desc[short]
            # as RETURNN's templates: a sub-layer with a target (and a loss, or none, e.g. an output whose loss is
            # on the rec layer) takes its n_out from that target
            target = spec.target if spec.loss else spec.opts.get("target")
            if (layer.n_out is None and isinstance(target, str) and target in root.extern_data
                    and spec.layer_class not in LOOP_ONLY_CLASSES):
                dim = root.extern_data[target].dim
                layer.n_out = None if dim is None else dim + (1 if spec.loss == "ctc" else 0)
        self.loss_terms: list[LossTerm] = [replace(t, layer=f"{self.name}/{t.layer}")
                                           for t in self.net._make_loss_terms()]
        choices = [s.name for s in desc if s.layer_class == "choice"]
        if len(choices) > 1:
            raise NetworkError(f"layer {self.name!r}: its unit has several choice layers ({', '.join(choices)}); "
                               "one loop searches over one choice")
        self.choice = choices[0] if choices else None
        self.loop_dependent = self._loop_dependent()
        self.after_choice = self._dependents(self.choice) if self.choice else set()
        #: layers whose output is kept over time: the output and those with a loss
        self.kept = [s.name for s in desc if s.name == "output" or s.loss or s.opts.get("is_output_layer")]
        #: sub-layers that carry a unit's state from step to step
        self.cells = {s.name for s in desc if s.layer_class in ("rnn_cell", "rec")}
        self.carried = sorted(set(prev_refs) | self.cells)
        #: the loop state of the step being built (for ``choice`` and ``rnn_cell``), else None
        self.current: StepState | None = None
        #: the frame shape of the rec layer's input (``data:source``) while it is built
        self._source_shape: FrameShape | None = None

    # -- resolution -----------------------------------------------------------------------------------------
    def _rewrite(self, unit: Mapping[str, Any], extern: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
        """``from`` entries as data keys (``prev:x``, ``base:x``, ``:i``); unknown ``prev:`` names are errors."""
        out: dict[str, Any] = {}
        base_refs: list[str] = []
        prev_refs: list[str] = []
        extern_keys: list[str] = []
        for name, layer in unit.items():
            if not isinstance(layer, Mapping):
                raise NetworkError(f"layer {self.name}/{name!r}: expected a dict, got {type(layer).__name__}")
            layer = dict(layer)
            for opt in LOOP_OPTIONS:
                if opt in layer:
                    self.initial_outputs[name] = layer.pop(opt)
            default_from = ["data"]
            if layer.get("class") == "generic_attention" and isinstance(layer.get("weights"), str):
                default_from = [layer["weights"]]  # RETURNN: the weights are its source (so they come first)
            raw = layer.get("from", default_from)
            new = []
            for src in [raw] if isinstance(raw, str) else list(raw):
                if not isinstance(src, str):
                    new.append(src)
                elif src.startswith("prev:"):
                    ref = src[len("prev:"):]
                    if ref not in unit:
                        raise NetworkError(
                            f"layer '{self.name}/{name}': 'from' names {src!r}, but the loop of rec layer "
                            f"{self.name!r} has no layer {ref!r} (its layers: {', '.join(unit)})")
                    prev_refs.append(ref)
                    new.append("data:" + src)
                elif src.startswith("base:"):
                    base_refs.append(src[len("base:"):])
                    new.append("data:" + src)
                elif src == STEP_KEY:
                    new.append("data:" + STEP_KEY)
                elif src.startswith("data:") and src[5:] != SOURCE_KEY:
                    if src[5:] not in extern:
                        raise NetworkError(f"layer '{self.name}/{name}': 'from' names {src!r}, which is not in the "
                                           f"data ({', '.join(sorted(extern))}) nor 'data:source'")
                    extern_keys.append(src[5:])
                    new.append(src)
                else:
                    new.append(src)
            layer["from"] = new
            for opt in LAYER_REF_OPTIONS:  # e.g. an attention's base="base:encoder"
                ref = layer.get(opt)
                if isinstance(ref, str) and ref.startswith("base:"):
                    base_refs.append(ref[len("base:"):])
            if layer.get("class") == "choice":
                target = layer.get("target")
                if not isinstance(target, str) or target not in extern:
                    raise NetworkError(f"layer '{self.name}/{name}' (class 'choice'): needs 'target', a data key "
                                       f"({', '.join(sorted(extern))}); got {target!r}")
                extern_keys.append(target)
            out[name] = layer
        return out, sorted(set(base_refs)), sorted(set(prev_refs)), sorted(set(extern_keys))

    def _dependents(self, name: str) -> set[str]:
        """Sub-layers that read ``name`` in the same step (directly or through others), and ``name`` itself."""
        found = {name}
        for spec in self.description:
            if any(isinstance(s, LayerRef) and s.name in found for s in spec.sources):
                found.add(spec.name)
        return found

    def _loop_dependent(self) -> set[str]:
        """Sub-layers that must run step by step (the rest may move out of the loop and run over the sequence)."""
        dep: set[str] = set(self.prev_refs) if self.rec.opts.get("optimize_move_layers_out", True) else set(
            self.description.layers)
        for spec in self.description:
            # a framewise layer (its class says recurrent = False) may run over the whole sequence outside the loop
            if self.net.layers[spec.name].recurrent or spec.layer_class in LOOP_ONLY_CLASSES:
                dep.add(spec.name)
            for src in spec.sources:
                if isinstance(src, LayerRef) and src.name in dep:
                    dep.add(spec.name)
                if isinstance(src, DataRef) and (src.key.startswith(("prev:", "base:")) or src.key == STEP_KEY):
                    dep.add(spec.name)
            if spec.name == "end":
                dep.add(spec.name)
        return dep

    # -- running --------------------------------------------------------------------------------------------
    def search_active(self) -> bool:
        """Whether this loop runs beam search (the network's search flag and a ``choice`` that searches)."""
        if self.choice is None:
            return False
        return bool(self.net.layers[self.choice].searches(self.net.root))

    def __call__(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """The rec layer's output: the sub-layer ``output`` over all steps."""
        ops = ctx.ops
        search = self.search_active()
        beam = int(self.net.layers[self.choice].beam_size) if search else 1
        src = self.rec.single_source(sources) if sources else None
        if src is not None and not src.has_time:
            raise self.rec.error("the input of a rec sub-network needs a time axis")
        batch = ops.dynamic_dim(src.tensor, 0) if src is not None else ctx.batch_size
        self._source_shape = self._outer_shape(src) if src is not None else None
        seq_lens, num_steps, by_end = self._length(ctx, src, search)
        train_ctx = Context(ops=ops, train=ctx.train, net=self.net, batch_size=batch)
        # layers moved out of the loop, computed over the whole sequence
        seq_data = {SOURCE_KEY: src} if src is not None else {}
        for key in self.extern_keys:
            if not search or self._reads_in_search(key):
                seq_data[key] = self._extern(ctx, key)
        for name, layer in self.net.layers.items():  # n_out from a target an outer layer registers
            target = self.description[name].opts.get("target")
            if layer.n_out is None and target in self.registered \
                    and self.description[name].layer_class not in LOOP_ONLY_CLASSES:
                layer.n_out = self._extern(ctx, target).dim
        moved: dict[str, LayerOutput] = {}
        for spec in self.description:
            if spec.name in self.loop_dependent:
                continue
            srcs = [moved[s.name] if isinstance(s, LayerRef) else self._seq_input(seq_data, s.key, spec.name)
                    for s in spec.sources]
            train_ctx.outputs = moved
            moved[spec.name] = self.net.layers[spec.name](srcs, train_ctx)
        step_names = [s.name for s in self.description if s.name in self.loop_dependent]
        outputs: dict[str, LayerOutput] = {}
        if step_names:
            outputs = self._loop(ctx, src, seq_data, moved, seq_lens, num_steps, by_end, search, beam, batch)
            seq_lens = outputs.pop("__lens__").tensor
        for name in self.kept:
            if name in moved:
                out = moved[name]
                outputs[name] = self._tile_seq(ops, out, beam) if search else out
        for name, out in outputs.items():  # reachable as "<rec>/<sub>", e.g. by their losses
            ctx.outputs[f"{self.name}/{name}"] = out
        return outputs["output"]

    def _extern(self, ctx: Context, key: str) -> LayerOutput:
        """Data ``key`` over the whole sequence: extern data, or the output of the outer layer registering it."""
        if key in self.registered:
            return ctx.get(self.registered[key], layer=self.name)
        return ctx.net.data_output(key, layer=self.name)

    def _reads_in_search(self, key: str) -> bool:
        """Whether data ``key`` is read in search other than as a choice target."""
        return any(isinstance(s, DataRef) and s.key == key for spec in self.description for s in spec.sources)

    def _seq_input(self, seq_data: dict[str, LayerOutput], key: str, layer: str) -> LayerOutput:
        if key not in seq_data:
            raise NetworkError(f"layer '{self.name}/{layer}': needs {key!r}, which rec layer {self.name!r} "
                               "does not have here (no input, or a target in search)")
        return seq_data[key]

    def _length(self, ctx: Context, src: LayerOutput | None, search: bool) -> tuple[Any, Any, bool]:
        """(seq lens or None, number of steps, whether the ``end`` layer decides the lengths)."""
        ops = ctx.ops
        opts = self.rec.opts
        key = opts.get("size_target") or (opts.get("target") if not search else None)
        if key:
            data = self._extern(ctx, key)
            return data.seq_lens, ops.dynamic_dim(data.tensor, 1), False
        has_end = "end" in self.description.layers
        if src is not None and not has_end:
            return src.seq_lens, ops.dynamic_dim(src.tensor, 1), False
        max_len = opts.get("max_seq_len")
        if not has_end and max_len is None:
            raise NetworkError(f"layer {self.name!r}: the loop does not know its length: add an 'end' layer to the "
                               "unit or set 'max_seq_len' (or give 'target' outside search, or a source with a "
                               "time axis)")
        if max_len is None:
            if src is not None:
                return None, ops.dynamic_dim(src.tensor, 1), True
            try:
                data: LayerOutput | None = ctx.net.root.data_output("data", layer=self.name)
            except NetworkError:
                data = None
            if data is None or not data.has_time:
                raise NetworkError(f"layer {self.name!r}: a loop that ends by its 'end' layer needs 'max_seq_len' "
                                   "(or a source with a time axis) to bound it")
            # RETURNN runs such a loop until every hypothesis ended; the backends' loops need a bound, so it is a
            # multiple of the longest input seq (an end layer stops the hypotheses of any real task well before)
            if ctx.net.root.building and self.rec.net.log is not None:
                self.rec.net.log.v3(f"layer {self.name!r}: no max_seq_len; the loop stops at the latest after "
                                    f"{DEFAULT_MAX_LEN_FACTOR} x the longest 'data' seq")
            longest = ops.reduce(ops.cast(data.seq_lens, "float32"), "max")
            return None, ops.cast(longest * np.float32(DEFAULT_MAX_LEN_FACTOR), "int32"), True
        ref, const, factor = _parse_max_len(max_len, layer=self.name)
        if ref is None:
            steps = const
        else:
            base = ctx.get(ref, layer=self.name)
            if not base.has_time:
                raise NetworkError(f"layer {self.name!r}: max_seq_len refers to {ref!r}, which has no time axis")
            longest = ops.reduce(ops.cast(base.seq_lens, "float32"), "max")
            steps = ops.cast(longest * np.float32(factor) + np.float32(const), "int32")
        if not has_end:  # no end layer: every seq runs max_seq_len steps, as RETURNN's loop without one
            return ops.cast(ops.fill([ctx.batch_size], 1.0), "int32") * steps, steps, False
        return None, steps, True

    @staticmethod
    def _tile_seq(ops: Ops, out: LayerOutput, beam: int) -> LayerOutput:
        lens = None if out.seq_lens is None else repeat_beam(ops, out.seq_lens, beam)
        return replace(out, tensor=repeat_beam(ops, out.tensor, beam), seq_lens=lens,
                       logits=None if out.logits is None else repeat_beam(ops, out.logits, beam))

    def _static_shape(self, name: str, ctx: Context, seen: frozenset[str] = frozenset()) -> FrameShape | None:
        """The frame shape of sub-layer ``name`` before it ran, as its class states it from its options and its
        sources' shapes (:meth:`Layer.out_shape_from_opts`, RETURNN's templates); None where unknown."""
        if name in seen:
            return None  # on a cycle through prev:, the other sources decide
        seen = seen | {name}
        layer, spec = self.net.layers[name], self.description[name]
        opts = dict(spec.opts)
        if layer.n_out is not None:  # n_out may come from a loss target
            opts["n_out"] = layer.n_out

        def layer_shape(ref: str) -> FrameShape | None:
            if ref.startswith("prev:"):
                ref = ref[len("prev:"):]
            if ref in self.description.layers:
                if self.description[ref].layer_class == "choice":
                    return None  # sparse labels
                return self._static_shape(ref, ctx, seen)
            if ref.startswith("base:"):
                return self._outer_shape(ctx.get(ref[len("base:"):], layer=f"{self.name}/{name}"))
            if ref == SOURCE_KEY:
                return self._source_shape
            spec_ = self.net.root.extern_data.get(ref)
            return None if spec_ is None or spec_.sparse or spec_.dim is None else (int(spec_.dim),)

        sources = [layer_shape(s.name if isinstance(s, LayerRef) else s.key) for s in spec.sources]
        return type(layer).out_shape_from_opts(opts, sources, layer_shape)

    @staticmethod
    def _outer_shape(out: LayerOutput) -> FrameShape | None:
        """The frame shape (after batch and time) of a built dense output."""
        if out.sparse:
            return None
        dims = list(out.ops.static_shape(out.tensor))[1 + int(out.has_time):]
        if dims and out.dim is not None:
            dims[-1] = int(out.dim)
        return tuple(dims)

    def _initial(self, ctx: Context, name: str, batch: Any, beam: int) -> LayerOutput:
        """``prev:name`` before the first step: its ``initial_output`` (zeros by default)."""
        ops = ctx.ops
        spec = self.description[name]
        init = self.initial_outputs.get(name, 0)
        rows = batch * beam if beam > 1 else batch
        if spec.layer_class == "choice":
            target = spec.opts["target"]
            # the dim of extern data is known without its values (which search does not feed)
            dim = self._extern(ctx, target).dim if target in self.registered else self.net.root.extern_data[target].dim
            if not isinstance(init, int):
                raise NetworkError(f"layer '{self.name}/{name}': initial_output of a choice must be a label index")
            return LayerOutput(ops.cast(ops.fill([rows], float(init)), "int32"), None, dim, sparse=True)
        shape = self._static_shape(name, ctx)
        if shape and shape[0] is None and None not in shape[1:] and isinstance(init, (int, float)):
            # a frame over the encoder's time, like RETURNN's accumulated attention weights (out_type shape
            # (None, 1)): its time and seq lengths are those of its base: source with a time axis
            over = self._base_time_source(ctx, name)
            if over is not None:
                x = repeat_beam(ops, over.tensor, beam) if beam > 1 else over.tensor
                lens = repeat_beam(ops, over.seq_lens, beam) if beam > 1 else over.seq_lens
                zeros = ops.fill([rows, ops.dynamic_dim(x, 1), *shape[1:]], float(init))
                return LayerOutput(zeros, lens, shape[-1])
        if not shape or None in shape:
            raise NetworkError(f"layer '{self.name}/{name}': needs 'n_out', since the loop reads it as "
                               f"'prev:{name}' before the first step (its class cannot tell its shape from its "
                               "options and sources)")
        n_out = shape[-1]
        if isinstance(init, str):
            ref = init[len("base:"):] if init.startswith("base:") else init
            out = ctx.get(ref, layer=f"{self.name}/{name}")
            if out.has_time or self._outer_shape(out) != shape:
                raise NetworkError(f"layer '{self.name}/{name}': initial_output {init!r} must be (batch, "
                                   f"{', '.join(map(str, shape))})")
            tensor = repeat_beam(ops, out.tensor, beam)
        elif isinstance(init, (int, float)) and not isinstance(init, bool):
            tensor = ops.fill([rows, *shape], float(init))
        else:
            raise NetworkError(f"layer '{self.name}/{name}': initial_output must be a number or a layer name, "
                               f"got {init!r}")
        return LayerOutput(tensor, None, n_out)

    def _base_time_source(self, ctx: Context, name: str, seen: frozenset[str] = frozenset()) -> LayerOutput | None:
        """The first ``base:`` layer with a time axis that sub-layer ``name`` reads, directly or through the
        sub-layers of the same step it reads (None if none)."""
        seen = seen | {name}
        for src in self.description[name].sources:
            ref = src.name if isinstance(src, LayerRef) else src.key
            if ref.startswith("base:"):
                out = ctx.get(ref[len("base:"):], layer=f"{self.name}/{name}")
                if out.has_time:
                    return out
            elif ref in self.description.layers and ref not in seen:
                found = self._base_time_source(ctx, ref, seen)
                if found is not None:
                    return found
        return None

    def _loop(self, ctx: Context, src: LayerOutput | None, seq_data: dict[str, LayerOutput],
              moved: dict[str, LayerOutput], seq_lens: Any, num_steps: Any, by_end: bool, search: bool, beam: int,
              batch: Any) -> dict[str, LayerOutput]:
        """Run the step-dependent sub-layers with :meth:`Ops.scan`; the kept outputs over time (batch-major)."""
        ops = ctx.ops
        rows = batch * beam if search else batch
        # per-step inputs, time-major and (in search) repeated for every beam entry
        seq_inputs: dict[str, LayerOutput] = {}
        for key, out in list(seq_data.items()) + [(f"moved:{k}", v) for k, v in moved.items()]:
            seq_inputs[key] = self._tile_seq(ops, out, beam) if search else out
        keys = sorted(seq_inputs)
        tm_seqs = [ops.transpose(seq_inputs[k].tensor, (1, 0, *range(2, seq_inputs[k].ndim))) for k in keys]
        # with per-frame inputs the loop runs over their time axis (the source's or the target's)
        steps = ops.arange(ops.dynamic_dim(tm_seqs[0], 0) if tm_seqs else num_steps)
        outer = Context(ops=ops, train=ctx.train, net=ctx.net, batch_size=rows,
                        outputs={r: self._tile_plain(ops, ctx.get(r, layer=self.name), beam if search else 1)
                                 for r in self.base_refs})
        init_meta = {name: self._initial(ctx, name, batch, beam if search else 1) for name in self.carried}
        init_states: list[Any] = []
        carried_meta: list[tuple[str, int]] = []
        for name in self.carried:
            first = init_meta[name]
            states = self._initial_cell_states(ctx, name, rows, beam if search else 1) if name in self.cells else ()
            init_states.extend([first.tensor, *states])
            carried_meta.append((name, len(states)))
        zeros = ops.zeros([rows])
        init_states.extend([zeros, ops.cast(zeros, "int32")])  # ended, length
        if search:
            first_beam = np.full((1, beam), NEG_INF, dtype=np.float32)
            first_beam[0, 0] = 0.0
            init_states.append(ops.zeros([batch, beam]) + ops.constant(first_beam))
        meta: dict[str, tuple[int, bool, str | None, bool, tuple[int, ...]]] = {}

        def step(i: Any, *args: Any) -> tuple[Any, tuple[Any, ...]]:
            frames, states = args[:len(keys)], list(args[len(keys):])
            data: dict[str, LayerOutput] = {}
            for k, f in zip(keys, frames):
                data[k] = LayerOutput(f, None, seq_inputs[k].dim, seq_inputs[k].sparse)
            pos = 0
            prev_states: dict[str, tuple[Any, ...]] = {}
            for name, n_states in carried_meta:
                data[f"prev:{name}"] = replace(init_meta[name], tensor=states[pos])
                prev_states[name] = tuple(states[pos + 1: pos + 1 + n_states])
                pos += 1 + n_states
            ended, length = states[pos], states[pos + 1]
            scores = states[pos + 2] if search else None
            data[STEP_KEY] = LayerOutput(ops.expand_dims(ops.cast(i, "float32") + zeros, 1), None, 1)
            state = StepState(search=search, beam_size=beam, scores=scores, ended=ended,
                              frames={k: data[k] for k in self.extern_keys if k in data}, prev_states=prev_states)
            self.current = state
            outs = self._step_layers(ops, ctx.train, data, outer, rows)
            self.current = None
            if search and state.choice is None:
                raise NetworkError(f"layer '{self.name}/{self.choice}': the search choice did not run")
            reorder = (lambda x: x) if not search else (lambda x: ops.gather(x, state.choice[1], axis=0))
            old = set(self.description.layers) - self.after_choice

            def new_order(name: str, x: Any) -> Any:
                return reorder(x) if name in old else x

            ended_old, length_old = reorder(ended), reorder(length)
            length_new = length_old + ops.cast(1.0 - ended_old, "int32")
            end_now = ended_old
            if "end" in outs:
                flag = outs["end"].tensor
                flag = ops.cast(ops.not_equal(ops.cast(flag, "int32"), 0), "float32")
                if ops.ndim(flag) > 1:
                    flag = ops.reshape(flag, [rows])
                end_now = ops.maximum(ended_old, new_order("end", flag))
            new_states: list[Any] = []
            for name, n_states in carried_meta:
                out = outs[name]
                new_states.append(ops.cast(new_order(name, out.tensor), ops.dtype(init_meta[name].tensor)))
                cell = out.final_state or ()
                new_states.extend(new_order(name, s) for s in cell[:n_states])
            new_states.extend([end_now, length_new])
            packed = []
            for name in self.kept:
                if name in outs:
                    out = outs[name]
                    parts = [out.tensor] + ([out.logits] if out.logits is not None else [])
                    flat = [ops.cast(new_order(name, p), "float32") for p in parts]
                    flat = [ops.expand_dims(p, 1) if ops.ndim(p) == 1 else p for p in flat]
                    for p in flat:
                        if ops.ndim(p) != 2:
                            raise NetworkError(f"layer '{self.name}/{name}': a kept per-step output must be "
                                               "(batch, dim) or (batch,)")
                    width = ops.static_shape(flat[0])[-1]
                    meta[name] = (int(width), out.sparse, out.activation, out.logits is not None,
                                  (out.dim,) if out.dim is not None else ())
                    packed.extend(flat)
            if search:
                labels, src_idx, new_scores = state.choice
                packed.append(ops.expand_dims(ops.cast(src_idx, "float32"), 1))
                new_states.append(new_scores)
            # the kept outputs travel as one float32 tensor (scan stacks one output); labels are exact in float32
            return ops.concat(packed, axis=-1), tuple(new_states)

        if ctx.net.root.building:
            # one step outside the loop creates the sub-layers' parameters before the backend traces the loop
            first_frames = [f[0] for f in tm_seqs]
            step(ops.constant(0, "int32"), *first_frames, *init_states)
        stacked, finals = ops.scan(step, [steps, *tm_seqs], init_states)
        pos = sum(1 + n for _, n in carried_meta)
        lengths = finals[pos + 1]
        result: dict[str, LayerOutput] = {}
        offset = 0
        pieces: dict[str, tuple[Any, Any | None]] = {}
        for name in self.kept:
            if name not in meta:
                continue
            width, sparse, activation, has_logits, _ = meta[name]
            value = stacked[:, :, offset:offset + width]
            offset += width
            logits = None
            if has_logits:
                logits = stacked[:, :, offset:offset + width]
                offset += width
            pieces[name] = (value, logits)
        if search:
            src_idx = ops.cast(stacked[:, :, offset] + 0.5, "int32")  # (T, B*K)
            positions = self._backtrack(ops, src_idx, batch, beam)  # (T, B*K) rows of the final hypotheses
            pieces = {n: (take_rows(ops, v, positions), None if lg is None else take_rows(ops, lg, positions))
                      for n, (v, lg) in pieces.items()}
        if by_end:
            seq_lens = lengths
        elif search:
            seq_lens = repeat_beam(ops, seq_lens, beam)
        beam_scores = finals[-1] if search else None
        normalize = search and self.net.layers[self.choice].length_normalization
        if normalize:
            # the choice's length_normalization: the final beam ranked by score per label, best first, as RETURNN
            lens_bk = ops.reshape(ops.cast(seq_lens, "float32"), [batch, beam])
            beam_scores, order = ops.top_k(beam_scores / ops.maximum(lens_bk, 1.0), beam)
            rows = ops.reshape(order + ops.expand_dims(ops.arange(batch) * beam, 1), [batch * beam])
            seq_lens = ops.gather(seq_lens, rows, axis=0)
            pieces = {n: (ops.gather(v, rows, axis=1), None if lg is None else ops.gather(lg, rows, axis=1))
                      for n, (v, lg) in pieces.items()}
        for name, (value, logits) in pieces.items():
            width, sparse, activation, has_logits, dim = meta[name]
            if sparse:
                value = ops.cast(ops.squeeze(value + 0.5, -1), "int32")
            bm = ops.transpose(value, (1, 0, *range(2, ops.ndim(value))))
            lg = None if logits is None else ops.transpose(logits, (1, 0, 2))
            result[name] = LayerOutput(bm, seq_lens, dim[0] if dim else width, sparse=sparse, logits=lg,
                                       activation=activation)
            if search:
                # normalised here already: decide takes the best entry as it is
                result[name].extra.update(beam_size=beam, beam_scores=beam_scores, length_normalization=False)
        result["__lens__"] = LayerOutput(seq_lens, None, None)
        return result

    def _initial_cell_states(self, ctx: Context, name: str, rows: Any, beam: int) -> tuple[Any, ...]:
        layer = self.net.layers[name]
        sizes = layer.state_sizes()
        per_state = layer.initial_state_per_state(len(sizes))
        if per_state is None:
            return tuple(ctx.ops.zeros([rows, size]) for size in sizes)
        return tuple(layer.initial_state_value(ctx, value, size, rows, beam) for value, size in zip(per_state, sizes))

    @staticmethod
    def _tile_plain(ops: Ops, out: LayerOutput, beam: int) -> LayerOutput:
        if beam == 1:
            return out
        lens = None if out.seq_lens is None else repeat_beam(ops, out.seq_lens, beam)
        return replace(out, tensor=repeat_beam(ops, out.tensor, beam), seq_lens=lens, logits=None,
                       final_state=None)

    def _step_layers(self, ops: Ops, train: bool, data: dict[str, LayerOutput], outer: Context,
                     rows: Any) -> dict[str, LayerOutput]:
        """The step-dependent sub-layers of one step (moved-out ones come in as ``moved:<name>`` frames)."""
        step_ctx = Context(ops=ops, train=train, net=self.net, batch_size=rows)
        # options that name outer layers (an attention's base) look them up as "base:<name>"
        step_ctx.outputs.update({f"base:{name}": out for name, out in outer.outputs.items()})
        for spec in self.description:
            if spec.name not in self.loop_dependent:
                continue
            srcs = []
            for s in spec.sources:
                if isinstance(s, LayerRef):
                    srcs.append(step_ctx.outputs[s.name] if s.name in step_ctx.outputs else data[f"moved:{s.name}"])
                elif s.key.startswith("base:"):
                    srcs.append(outer.get(s.key[len("base:"):], layer=f"{self.name}/{spec.name}"))
                elif s.key in data:
                    srcs.append(data[s.key])
                else:
                    raise NetworkError(f"layer '{self.name}/{spec.name}': needs {s.key!r}, which rec layer "
                                       f"{self.name!r} does not have here (no input, or a target in search)")
            step_ctx.outputs[spec.name] = self.net.layers[spec.name](srcs, step_ctx)
        return step_ctx.outputs

    @staticmethod
    def _backtrack(ops: Ops, src_idx: Any, batch: Any, beam: int) -> Any:
        """(T, B*K) row indices of the final beam entries' history, from the per-step source rows."""
        rows = ops.arange(batch * beam)

        def back(idx_t: Any, pos: Any) -> tuple[Any, tuple[Any, ...]]:
            return pos, (ops.gather(idx_t, pos, axis=0),)

        rev, _ = ops.scan(back, [src_idx[::-1]], [rows])
        return rev[::-1]


def repeat_beam(ops: Ops, x: Any, beam: int) -> Any:
    """Each batch entry of ``x`` (B, ...) repeated ``beam`` times in a row: (B*beam, ...)."""
    if beam == 1:
        return x
    shape = ops.shape(x)
    tiled = ops.tile(ops.expand_dims(x, 1), [1, beam] + [1] * (len(shape) - 1))
    return ops.reshape(tiled, [shape[0] * beam, *shape[1:]])


def take_rows(ops: Ops, x: Any, positions: Any) -> Any:
    """``x[t, positions[t, r]]`` for time-major ``x`` (T, R, D) and int ``positions`` (T, R)."""
    idx = ops.expand_dims(positions, -1) + ops.cast(ops.zeros_like(x), "int32")
    return ops.take_along_axis(x, idx, axis=1)
