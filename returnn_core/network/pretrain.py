"""RETURNN's layer-wise pretraining as network dicts: which network each pretrain epoch trains.

The network grows step by step towards the config's own one (``from_output``: hidden layers are taken away in front of
the output layers; ``from_input``: layers are added from the input on; a callable builds each step itself). Each step
runs for its number of repetitions; the last step is always the full network. Values wrapped in
:class:`WrapEpochValue` are resolved per pretrain epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from returnn_core.errors import ConfigError
from returnn_core.network.description import layer_sources

#: the names RETURNN accepts for ``construction_algo`` besides a callable
CONSTRUCTION_ALGOS = ("from_output", "from_input", "no_network_modifications")
#: values of ``copy_output_layer``
COPY_OUTPUT_LAYER = (True, False, "ifpossible", "reset")
#: values of ``copy_param_mode`` (and of a step's ``"#copy_param_mode"``): None/"ifpossible" carries what matches,
#: "reset" nothing
COPY_PARAM_MODES = (None, "ifpossible", "reset")
#: a callable construction_algo that never returns None would build steps forever
MAX_CUSTOM_STEPS = 1000

NetDict = dict[str, Any]


class WrapEpochValue:
    """A value inside the network dict that depends on the pretrain epoch: ``func(epoch=...)`` gives it."""

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise ConfigError(f"WrapEpochValue needs a function of epoch (e.g. lambda epoch: ...), got {func!r}")
        self.func = func

    def get_value(self, epoch: int) -> Any:
        """The value for pretrain epoch ``epoch`` (1-based)."""
        return self.func(epoch=epoch)

    def __repr__(self) -> str:
        return f"WrapEpochValue({getattr(self.func, '__name__', self.func)!r})"


def _has_wrap_value(v: Any) -> bool:
    if isinstance(v, WrapEpochValue):
        return True
    if isinstance(v, Mapping):
        return any(_has_wrap_value(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_wrap_value(x) for x in v)
    return False


def find_pretrain_wrap_values(net_dict: Mapping[str, Any]) -> bool:
    """Whether a :class:`WrapEpochValue` sits anywhere in ``net_dict`` (through dicts, lists and tuples)."""
    return _has_wrap_value(net_dict)


def resolve_wrap_values(value: Any, epoch: int) -> Any:
    """``value`` with every :class:`WrapEpochValue` replaced by its value for ``epoch`` (a new structure)."""
    if isinstance(value, WrapEpochValue):
        return value.get_value(epoch=epoch)
    if isinstance(value, Mapping):
        return {k: resolve_wrap_values(v, epoch) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and _has_wrap_value(value):
        return type(value)(resolve_wrap_values(v, epoch) for v in value)
    return value


class Pretrain:
    """The pretrain schedule: one network dict per pretrain epoch (RETURNN's ``Pretrain.Pretrain``)."""

    def __init__(
        self,
        original_network_json: Mapping[str, Any],
        network_init_args: Mapping[str, Any] | None = None,
        copy_output_layer: bool | str | None = None,
        greedy: bool | None = None,
        repetitions: int | Sequence[int] | Mapping[Any, int] | None = None,
        construction_algo: str | Callable[..., Any] | None = None,
        output_layers: Sequence[str] = ("output",),
        input_layers: Sequence[str] = ("data",),
        copy_param_mode: str | None = None,
    ) -> None:
        if not isinstance(original_network_json, Mapping) or not original_network_json:
            raise ConfigError("pretrain needs a network: set 'network' (or hidden_size/hidden_type)")
        _check_copy_param_mode("pretrain copy_param_mode", copy_param_mode)
        #: how params carry over to a new pretrain network: None/"ifpossible" by name and shape, "reset" not at all
        self.copy_param_mode = copy_param_mode
        if copy_output_layer is None:
            copy_output_layer = copy_param_mode or "ifpossible"
        if copy_output_layer not in COPY_OUTPUT_LAYER:
            raise ConfigError(f"pretrain copy_output_layer {copy_output_layer!r} is not allowed; expected one of "
                              f"{', '.join(map(repr, COPY_OUTPUT_LAYER))}")
        #: True: the output layers' params must carry over; "ifpossible": where the shapes match; False: fresh
        self.copy_output_layer: bool | str = False if copy_output_layer == "reset" else copy_output_layer
        self.greedy = bool(greedy)
        self.network_init_args = dict(network_init_args or {})
        self.output_layers = [output_layers] if isinstance(output_layers, str) else list(output_layers)
        self.input_layers = [input_layers] if isinstance(input_layers, str) else list(input_layers)
        self._original = dict(original_network_json)
        algo = construction_algo or "from_output"
        self.construction_algo = algo
        if callable(algo):
            steps = self._steps_custom(algo)
        elif algo == "from_output":
            steps = self._steps_from_output()
        elif algo == "from_input":
            steps = self._steps_from_input()
        elif algo == "no_network_modifications":
            steps = [self._original]
        else:
            raise ConfigError(f"pretrain construction_algo {algo!r} is not known; use one of "
                              f"{', '.join(CONSTRUCTION_ALGOS)} or a function (idx, net_dict) -> net_dict or None")
        if not callable(algo):  # a callable's steps are taken as they are
            steps = self._drop_steps_adding_only_fixed_layers(steps)
        for i, step in enumerate(steps):
            _check_copy_param_mode(f"pretrain step {i}: '#copy_param_mode'", step.get("#copy_param_mode"))
        reps = self._repetitions(repetitions, len(steps))
        for i, step in enumerate(steps):
            if "#repetition" in step:
                step = dict(step)
                reps[i] = _count("#repetition", step.pop("#repetition"))
                steps[i] = step
        self.repetitions = reps
        self._epochs: list[NetDict] = []
        for n, step in zip(reps, steps):
            for _ in range(n):
                epoch = len(self._epochs) + 1
                self._epochs.append(resolve_wrap_values(copy.deepcopy(step), epoch))
        if not self._epochs:
            raise ConfigError("pretrain: the repetitions leave no pretrain epoch; give each step at least 1")

    # -- public interface ---------------------------------------------------------------------------------
    def __str__(self) -> str:
        algo = self.construction_algo
        name = getattr(algo, "__name__", repr(algo)) if callable(algo) else repr(algo)
        text = f"Pretrain construction algo {name}, number of pretrain epochs: {self.get_train_num_epochs()}"
        if set(self.repetitions) != {1}:
            text += f" (repetitions: {self.repetitions})"
        return text

    def get_train_num_epochs(self) -> int:
        """How many epochs pretraining takes (construction steps times their repetitions)."""
        return len(self._epochs)

    def get_final_network_json(self) -> NetDict:
        """The network of the last pretrain epoch: the full network (its WrapEpochValues at that epoch)."""
        return self._epochs[-1]

    def get_network_json_for_epoch(self, epoch: int) -> NetDict:
        """The network dict of ``epoch`` (1-based; after pretraining the final one). Treat it as read-only."""
        if epoch < 1:
            raise ValueError(f"epochs start at 1, got {epoch}")
        return self._epochs[min(epoch, len(self._epochs)) - 1]

    def is_output_layer(self, net_dict: Mapping[str, Any], name: str) -> bool:
        """RETURNN's notion of an output layer during construction: named as one, a softmax, or with a target."""
        layer = net_dict[name]
        return name in self.output_layers or layer.get("class") == "softmax" or "target" in layer

    def get_train_layers_for_epoch(self, epoch: int) -> set[str] | None:
        """``greedy``: the layers that train in ``epoch`` (new ones and output layers); None: all of them."""
        if not self.greedy or epoch == 1 or epoch > len(self._epochs):
            return None
        prev, cur = self.get_network_json_for_epoch(epoch - 1), self.get_network_json_for_epoch(epoch)
        return {n for n in _layers(cur) if n not in prev or self.is_output_layer(cur, n)}

    # -- construction ------------------------------------------------------------------------------------
    def _steps_custom(self, func: Callable[..., Any]) -> list[NetDict]:
        # RETURNN calls it with keywords idx (0-based step) and net_dict (a fresh copy it may change in place)
        steps = []
        for idx in range(MAX_CUSTOM_STEPS):
            d = func(idx=idx, net_dict=copy.deepcopy(self._original))
            if not d:
                return steps + [self._original]
            if not isinstance(d, Mapping):
                raise ConfigError(f"pretrain construction_algo {getattr(func, '__name__', func)}(idx={idx}): "
                                  f"expected a network dict or None, got {type(d).__name__}")
            steps.append(dict(d))
        raise ConfigError(f"pretrain construction_algo {getattr(func, '__name__', func)} still returned a network "
                          f"at idx={MAX_CUSTOM_STEPS - 1}; return None once pretraining is done")

    def _steps_from_output(self) -> list[NetDict]:
        """Repeatedly replace the layers in front of the output layers by their own sources."""
        for name in self.output_layers:
            if name not in self._original:
                raise ConfigError(f"pretrain construction_algo 'from_output': output layer {name!r} is not in the "
                                  f"network; name the output layers with pretrain = {{'output_layers': [...]}}")
        steps = [self._original]
        while True:
            smaller = self._smaller_from_output(steps[0])
            if smaller is None:
                return steps
            steps.insert(0, smaller)

    def _smaller_from_output(self, net: NetDict) -> NetDict | None:
        net = copy.deepcopy(net)
        while True:
            current = sorted({s for name in self.output_layers for s in layer_sources(net[name], net)})
            new_sources: set[str] = set()
            removed: set[str] = set()
            for name in self.output_layers:
                for src in layer_sources(net[name], net):
                    if src in self.input_layers:
                        new_sources.add(src)
                    elif src in net:
                        new_sources.update(layer_sources(net[src], net))
                        del net[src]
                        removed.add(src)
                    elif src not in removed:
                        raise ConfigError(f"pretrain 'from_output': layer {name!r} reads {src!r}, which is not in "
                                          "the network")
            if sorted(new_sources) == current:
                return None
            for name in self.output_layers:
                net[name]["from"] = sorted(new_sources)
            # an output layer fed by the input directly would change its input dim: keep shrinking instead
            if new_sources & set(self.input_layers):
                continue
            if all(not self._original[r].get("trainable", True) for r in removed):
                continue
            return net

    def _steps_from_input(self) -> list[NetDict]:
        steps = []
        depth = 1
        while True:
            step = self._grown_from_input(depth)
            if step is None:
                return steps + [self._original]
            steps.append(step)
            depth += 1

    def _descendants(self, sources: Sequence[str]) -> list[str]:
        """Layers of the original network that read one of ``sources``."""
        return [name for name, layer in sorted(_layer_items(self._original))
                if any(s in layer_sources(layer, self._original) for s in sources)]

    def _existing_inputs(self, net: Mapping[str, Any], name: str, visited: set[str] | None = None) -> list[str]:
        """The sources of ``name`` in ``net``, with absent layers replaced by their own sources (recursively)."""
        visited = visited if visited is not None else {name}
        out: list[str] = []
        for src in layer_sources(self._original[name], self._original):
            if src in net or src == "data":
                if src not in out:
                    out.append(src)
            elif src not in visited and src in self._original:
                visited.add(src)
                out += [s for s in self._existing_inputs(net, src, visited) if s not in out]
        return out

    def _grown_from_input(self, depth: int) -> NetDict | None:
        """The network of ``depth`` layers from the input on, plus the output layers; None once it is complete."""
        new: NetDict = {}
        needed: set[str] = set()

        def add(name: str) -> None:
            needed.discard(name)
            new[name] = copy.deepcopy(self._original[name])
            needed.update(s for s in layer_sources(new[name], new) if s not in new and s != "data")

        # fixed (trainable False) layers right after the input, e.g. windowing, come along for free
        sources = ["data"]
        while True:
            fixed = [n for n in self._descendants(sources)
                     if n not in new and not self._original[n].get("trainable", True)]
            if not fixed:
                break
            for n in fixed:
                add(n)
                sources.append(n)
        for _ in range(depth):
            sources = [n for n in self._descendants(sources) if n not in new]
            if not sources:
                return None
            for n in sources:
                add(n)
        for name, _layer in sorted(_layer_items(self._original)):
            if name not in new and self.is_output_layer(self._original, name):
                add(name)
        if not needed:
            return None  # nothing is missing: this is the full network
        for name in sorted(new):
            srcs = self._existing_inputs(new, name)
            if srcs != layer_sources(new[name], new):
                new[name]["from"] = [s for s in srcs if s != "data"]
        return new

    def _drop_steps_adding_only_fixed_layers(self, steps: list[NetDict]) -> list[NetDict]:
        """Skip a step that adds no trainable non-output layer over the one before (the full network stays)."""
        kept = []
        prev: Mapping[str, Any] = {}
        for step in steps[:-1]:
            if any(name not in prev and not self.is_output_layer(step, name) and layer.get("trainable", True)
                   for name, layer in _layer_items(step)):
                kept.append(step)
            prev = step
        return kept + [steps[-1]]

    @staticmethod
    def _repetitions(repetitions: Any, num_steps: int) -> list[int]:
        if not repetitions:
            return [1] * num_steps
        if isinstance(repetitions, Mapping):
            reps = dict(repetitions)
            out = [_count("repetitions['default']", reps.pop("default", 1))] * num_steps
            for key, n in reps.items():
                index = num_steps - 1 if key == "final" else key
                if isinstance(index, bool) or not isinstance(index, int) or not -num_steps <= index < num_steps:
                    raise ConfigError(f"pretrain repetitions: key {key!r} is not allowed; use 'default', 'final' or "
                                      f"a step index 0..{num_steps - 1} (this pretraining has {num_steps} steps)")
                out[index] = _count(f"repetitions[{key!r}]", n)
            return out
        if isinstance(repetitions, (list, tuple)):
            reps = [_count("repetitions", n) for n in repetitions]
            if len(reps) > num_steps:
                raise ConfigError(f"pretrain repetitions: {len(reps)} values given for {num_steps} construction "
                                  "steps; give at most one per step (the last one repeats)")
            return reps + [reps[-1]] * (num_steps - len(reps))
        return [_count("repetitions", repetitions)] * num_steps


def _check_copy_param_mode(what: str, mode: Any) -> None:
    if mode == "subset":
        # RETURNN copies the overlapping part of a param whose dims grew, split per LSTM gate and per source; the
        # layers here do not record those splits, and an unsplit copy would mix the gates
        raise ConfigError(f"{what} 'subset' (copying part of a grown param) is not supported; keep the dims of the "
                          "pretrain networks equal to the final ones, or use 'ifpossible' (fresh values where the "
                          "shape changed) or 'reset'")
    if mode not in COPY_PARAM_MODES:
        raise ConfigError(f"{what} {mode!r} is not allowed; expected one of "
                          f"{', '.join(map(repr, COPY_PARAM_MODES))}")


def _count(what: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"pretrain {what}: {n!r} is not allowed; expected an int >= 0 (epochs per step)")
    return n


def _layer_items(net: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The layers of a network dict (RETURNN's ``#``-keys such as ``#config`` are no layers)."""
    return [(k, v) for k, v in net.items() if not k.startswith("#") and isinstance(v, Mapping)]


def _layers(net: Mapping[str, Any]) -> list[str]:
    return [k for k, _ in _layer_items(net)]
