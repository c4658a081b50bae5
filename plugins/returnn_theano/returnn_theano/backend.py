"""The ``theano`` backend: the core's :class:`Network` as one PyTensor graph; train/eval functions compiled once."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.engine.backend import Backend, StepResult
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.errors import ConfigError, NetworkError, TrainingError, UnknownNameError
from returnn_core.frontend import LayerOutput, Network, Optimizer, accumulate, process_gradients
from returnn_theano._pt import TensorSharedVariable, floatX, pt, pytensor, shared_rng
from returnn_theano.ops import PyTensorOps, RandomSource
from returnn_theano.pytensor_setup import compile_mode, late_import_warning

if TYPE_CHECKING:
    from returnn_core.config import Config
    from returnn_core.datasets import BatchData, ExternData
    from returnn_core.log import Log
    from returnn_core.network import NetworkDescription
    from returnn_core.plugin import PluginManager

NAME = "theano"
OPTIMIZER_PREFIX = "optimizer:"
STEP_SLOT = "optimizer/step"
ACCUM_STEP_SLOT = "accum_grad/step"


class SharedVariables:
    """The core network's :class:`~returnn_core.frontend.VariableFactory`: float32 shared variables named by key."""

    def create(self, key: str, value: np.ndarray, *, trainable: bool) -> Any:
        """A shared variable with the static shape of ``value``."""
        value = np.asarray(value, dtype=floatX)
        return pytensor.shared(value, name=key, shape=value.shape)

    def shape(self, variable: Any) -> tuple[int, ...]:
        """The shape of the stored value."""
        return tuple(variable.get_value(borrow=True).shape)


@dataclass
class _Graph:
    """One built graph (train or eval): its ops (random draws, assign updates) and the layer outputs."""

    ops: PyTensorOps
    outputs: dict[str, LayerOutput]
    data: dict[str, LayerOutput]


@dataclass
class _StepFunction:
    """A compiled function, the input variables it reads (in call order) and its loss layers."""

    fn: Any
    inputs: list[tuple[str, str]]  # (data key, "data" | "lens" | "lr")
    #: loss layer names and whether each has an error output
    losses: list[tuple[str, bool]] = field(default_factory=list)


class TheanoBackend(Backend):
    """RETURNN on PyTensor: symbolic batch and time dims, so each function is compiled once per network."""

    name = NAME
    checkpoint_marker = ".npz"

    def __init__(self, config: Config, manager: PluginManager, log: Log) -> None:
        super().__init__(config, manager, log)
        self.seed = config.int("random_seed", 42) if config is not None else 42
        self.rng = shared_rng(seed=self.seed + 1, name="dropout_rng")
        warning = late_import_warning()
        if warning:
            log.v2(f"theano backend: {warning}")
        self.net: Network | None = None
        self.optimizer: Optimizer | None = None
        self.settings: OptimizerSettings | None = None
        #: optimizer state by checkpoint name (``<param>/<slot>``, ``optimizer/step``, ``accum_grad/...``)
        self.slots: dict[str, Any] = {}
        self._inputs: dict[str, tuple[Any, Any]] = {}
        self._train: _Graph | None = None
        self._eval: _Graph | None = None
        self._train_fn: _StepFunction | None = None
        self._eval_fn: _StepFunction | None = None
        self._forward_fns: dict[str, _StepFunction] = {}

    # -- building ---------------------------------------------------------------------------------
    def build(self, network: NetworkDescription, extern_data: ExternData, *, train: bool) -> None:
        """Symbolic inputs, the train graph (with ``train``: parameters, optimizer and its slots), the eval graph."""
        self.extern_data = extern_data
        for key, spec in extern_data.items():
            if spec.sparse:
                value = pt.matrix(key, dtype=spec.dtype or "int32")
            else:
                value = pt.tensor3(key, dtype=floatX, shape=(None, None, spec.dim))
            self._inputs[key] = (value, pt.ivector(f"{key}:seq_lens"))
        net = Network(network, extern_data, manager=self.manager, log=self.log, backend=NAME,
                      variables=SharedVariables(), seed=self.seed)
        self.net = net
        for term in net.loss_terms:
            if getattr(term.loss, "needs_seq_tags", False):
                raise NetworkError(f"layer {term.layer!r}: loss {term.loss_name!r} needs the seq tags, which the "
                                   "theano backend does not feed (use backend 'tf')")
        data = net.make_data({k: v for k, (v, _) in self._inputs.items()},
                             {k: lens for k, (_, lens) in self._inputs.items()})
        eval_ops = PyTensorOps(RandomSource(self.rng))
        if train:
            train_ops = PyTensorOps(RandomSource(self.rng))
            self._train = _Graph(train_ops, net.build(train_ops, data, train=True), data)
            self.settings = OptimizerSettings.from_config(self.config)
            self.optimizer = self._make_optimizer(self.settings)
            self._make_slots()
            self._eval = _Graph(eval_ops, net.compute(eval_ops, data, train=False), data)
        else:
            self._eval = _Graph(eval_ops, net.build(eval_ops, data, train=False), data)
        self.log.v4(f"theano backend: {len(net.params)} parameters, "
                    f"{sum(p.get_value(borrow=True).size for p in net.params.values())} values")

    def _make_optimizer(self, settings: OptimizerSettings) -> Optimizer:
        try:
            cls = self.manager.updaters.get(settings.name, backend=NAME)
        except UnknownNameError as exc:
            raise ConfigError(f"optimizer: {exc}") from exc
        return settings.create(cls)

    def _make_slots(self) -> None:
        """One shared variable per trainable parameter and optimizer slot, the step counter, accumulators."""
        assert self.net is not None and self.optimizer is not None and self.settings is not None
        self.slots = {STEP_SLOT: pytensor.shared(np.float32(0.0), name=STEP_SLOT)}
        accum = self.settings.accum_grad_multiple_step > 1
        if accum:
            self.slots[ACCUM_STEP_SLOT] = pytensor.shared(np.int64(0), name=ACCUM_STEP_SLOT)
        for key, param in self.net.trainable_params().items():
            shape = param.get_value(borrow=True).shape
            for slot in self.optimizer.slots:
                self._add_slot(f"{key}/{slot}", np.full(shape, self.optimizer.slot_init(slot), dtype=floatX))
            if accum:
                self._add_slot(f"accum_grad/{key}", np.zeros(shape, dtype=floatX))

    def _add_slot(self, name: str, value: np.ndarray) -> None:
        self.slots[name] = pytensor.shared(value, name=name, shape=value.shape)

    # -- compiling --------------------------------------------------------------------------------
    def _compile(self, outputs: list[Any], *, updates: list[tuple[Any, Any]] = (), lr: Any = None,
                 losses: list[tuple[str, bool]] = (), what: str) -> _StepFunction:
        from pytensor.graph.traversal import graph_inputs

        needed = set(graph_inputs(list(outputs) + [u for _, u in updates]))
        inputs: list[tuple[str, str]] = []
        variables = []
        for key, (value, lens) in self._inputs.items():
            for kind, var in (("data", value), ("lens", lens)):
                if var in needed:
                    inputs.append((key, kind))
                    variables.append(var)
        if lr is not None:
            inputs.append(("", "lr"))
            variables.append(lr)
        start = time.time()
        fn = pytensor.function(variables, outputs, updates=_unique(updates), on_unused_input="ignore",
                               name=f"returnn-{what}", mode=compile_mode())
        self.log.v4(f"theano backend: compiled {what} function in {time.time() - start:.1f}s")
        return _StepFunction(fn, inputs, list(losses))

    def _loss_outputs(self, graph: _Graph) -> tuple[list[Any], list[tuple[str, bool]], list[Any]]:
        """Flat (loss, error, frames) outputs, the loss layers, and the per-term results for the objective."""
        assert self.net is not None
        results = self.net.loss_values(graph.ops, graph.outputs, graph.data)
        outputs: list[Any] = []
        losses = []
        for term, (loss, error, frames) in zip(self.net.loss_terms, results):
            outputs += [loss, frames] + ([] if error is None else [error])
            losses.append((term.layer, error is not None))
        return outputs, losses, results

    def _train_function(self) -> _StepFunction:
        if self._train_fn is not None:
            return self._train_fn
        if self._train is None or self.optimizer is None or self.settings is None:
            raise TrainingError("the theano backend was built without train=True; cannot train")
        assert self.net is not None
        graph, settings = self._train, self.settings
        outputs, losses, results = self._loss_outputs(graph)
        if not losses:
            raise NetworkError("no layer has a loss; set 'loss' on the output layer to train")
        objective = self.net.objective(graph.ops, results)
        params = self.net.trainable_params()
        if not params:
            raise NetworkError("the network has no trainable parameters")
        grads = pytensor.grad(objective, list(params.values()), disconnected_inputs="ignore")
        grads = process_gradients(graph.ops, grads, **settings.gradient_options())
        lr = pt.scalar("learning_rate", dtype=floatX)
        updates = self._optimizer_updates(graph.ops, params, grads, lr)
        updates += graph.ops.updates + graph.ops.random.updates()
        self._train_fn = self._compile(outputs, updates=updates, lr=lr, losses=losses, what="train")
        return self._train_fn

    def _optimizer_updates(self, ops: PyTensorOps, params: dict[str, Any], grads: list[Any],
                           lr: Any) -> list[tuple[Any, Any]]:
        """The optimizer's update of every parameter and slot (every ``n``-th step with gradient accumulation)."""
        assert self.optimizer is not None and self.settings is not None
        n = self.settings.accum_grad_multiple_step
        step_var = self.slots[STEP_SLOT]
        step = step_var + np.float32(1.0)
        updates: list[tuple[Any, Any]] = []
        for (key, param), grad in zip(params.items(), grads, strict=True):
            slot_vars = {slot: self.slots[f"{key}/{slot}"] for slot in self.optimizer.slots}
            if n > 1:
                accum = self.slots[f"accum_grad/{key}"]
                new_param, new_slots, new_accum = accumulate(ops, self.optimizer, param, grad, slot_vars, accum, lr,
                                                             step, self.slots[ACCUM_STEP_SLOT], n)
                updates.append((accum, new_accum))
            else:
                new_param, new_slots = self.optimizer.update(ops, param, grad, slot_vars, lr, step)
            updates.append((param, new_param))
            updates += [(slot_vars[slot], value) for slot, value in new_slots.items()]
        if n > 1:
            counter = self.slots[ACCUM_STEP_SLOT]
            # the optimizer's step counts applied updates only
            updates.append((step_var, ops.where(ops.equal((counter + 1) % n, 0), step, step_var)))
            updates.append((counter, counter + 1))
        else:
            updates.append((step_var, step))
        return updates

    def _eval_function(self) -> _StepFunction:
        if self._eval_fn is None:
            assert self._eval is not None, "build() first"
            outputs, losses, _ = self._loss_outputs(self._eval)
            if not losses:
                raise NetworkError("no layer has a loss; nothing to evaluate")
            self._eval_fn = self._compile(outputs, updates=self._eval.ops.random.updates(), losses=losses,
                                          what="eval")
        return self._eval_fn

    def _forward_function(self, layer: str) -> _StepFunction:
        if layer not in self._forward_fns:
            assert self._eval is not None, "build() first"
            if layer not in self._eval.outputs:
                raise NetworkError(f"forward: layer {layer!r} is not in the network")
            out = self._eval.outputs[layer]
            lens = out.seq_lens if out.has_time else pt.ones((out.tensor.shape[0],), dtype="int32")
            self._forward_fns[layer] = self._compile([out.tensor, lens], updates=self._eval.ops.random.updates(),
                                                     what=f"forward-{layer}")
        return self._forward_fns[layer]

    # -- running ----------------------------------------------------------------------------------
    def _call(self, step: _StepFunction, batch: BatchData, lr: float | None = None) -> list[np.ndarray]:
        args = []
        for key, kind in step.inputs:
            if kind == "lr":
                args.append(np.float32(lr))
                continue
            source = batch.data if kind == "data" else batch.seq_lens
            if key not in source:
                raise TrainingError(f"the batch has no data key {key!r}, which the network needs")
            arr = source[key]
            if kind == "lens":
                args.append(np.asarray(arr, dtype="int32"))
            else:
                spec = self.extern_data[key]
                args.append(np.asarray(arr, dtype=spec.dtype if spec.sparse else floatX))
        return step.fn(*args)

    @staticmethod
    def _result(step: _StepFunction, values: list[np.ndarray]) -> StepResult:
        res = StepResult()
        values = list(values)
        for name, has_error in step.losses:
            res.losses[name] = float(values.pop(0))
            res.frames[name] = float(values.pop(0))
            if has_error:
                res.errors[name] = float(values.pop(0))
        return res

    def train_step(self, batch: BatchData, learning_rate: float) -> StepResult:
        """One update; returns the losses before it."""
        step = self._train_function()
        return self._result(step, self._call(step, batch, learning_rate))

    def eval_step(self, batch: BatchData) -> StepResult:
        """Losses and errors without dropout and without updating."""
        step = self._eval_function()
        return self._result(step, self._call(step, batch))

    def forward_step(self, batch: BatchData, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """``layer``'s output (B, T, D) or (B, T) and its seq lengths."""
        step = self._forward_function(layer)
        value, lens = self._call(step, batch)
        out = self._eval.outputs[layer]
        if value.ndim == 2 and not out.has_time and not out.sparse:
            value = value[:, None, :]
        return value, np.asarray(lens, dtype="int32")

    # -- parameters and checkpoints -------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """All parameters (shared variables) by ``<layer>/<param>``."""
        return self.net.params if self.net is not None else {}

    def get_param_values(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by ``<layer>/<param>``."""
        return {name: var.get_value() for name, var in self.params.items()}

    def set_param_values(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite the named parameters; names and shapes must match."""
        params = self.params
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise NetworkError(
                f"unknown parameter(s) {', '.join(unknown)}; this network has {', '.join(sorted(params))}"
            )
        for name, value in values.items():
            var = params[name]
            old = var.get_value(borrow=True)
            value = np.asarray(value, dtype=old.dtype)
            if value.shape != old.shape:
                raise NetworkError(f"parameter {name!r}: shape {value.shape} given, the network has {old.shape}")
            var.set_value(value)

    def save(self, prefix: str) -> list[str]:
        """Parameters and optimizer state in ``<prefix>.npz`` (written to a temporary file, then renamed)."""
        path = prefix + self.checkpoint_marker
        arrays = self.get_param_values()
        for name, var in self.slots.items():
            arrays[OPTIMIZER_PREFIX + name] = var.get_value()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return [path]

    def load(self, prefix: str, *, params_only: bool = False) -> None:
        """Restore parameters (and unless ``params_only`` the optimizer state) from ``<prefix>.npz``."""
        path = prefix if prefix.endswith(self.checkpoint_marker) else prefix + self.checkpoint_marker
        if not os.path.exists(path):
            raise TrainingError(f"checkpoint {path} does not exist")
        try:
            with np.load(path) as f:
                stored = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise TrainingError(f"checkpoint {path} cannot be read: {exc}") from exc
        params = {k: v for k, v in stored.items() if not k.startswith(OPTIMIZER_PREFIX)}
        missing = sorted(set(self.params) - set(params))
        if missing:
            raise TrainingError(f"checkpoint {path} lacks parameter(s) {', '.join(missing)}")
        extra = sorted(set(params) - set(self.params))
        if extra:
            raise TrainingError(f"checkpoint {path} has parameter(s) {', '.join(extra)} that this network does not")
        try:
            self.set_param_values(params)
        except NetworkError as exc:
            raise TrainingError(f"checkpoint {path}: {exc}") from exc
        if params_only:
            return
        for name, var in self.slots.items():
            key = OPTIMIZER_PREFIX + name
            if key in stored and stored[key].shape == var.get_value(borrow=True).shape:
                var.set_value(stored[key].astype(var.dtype))


def _unique(updates: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """One update per variable (a later assignment wins), each of exactly its variable's type."""
    unique = {id(var): (var, value) for var, value in updates}
    return [(var, var.type.filter_variable(pt.cast(value, var.dtype), allow_convert=True)
             if isinstance(var, TensorSharedVariable) else value) for var, value in unique.values()]
