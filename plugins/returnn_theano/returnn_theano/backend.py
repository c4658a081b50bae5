"""The ``theano`` backend: builds the network as a PyTensor graph, compiles train/eval functions once."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_core.engine.backend import Backend, StepResult
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.errors import ConfigError, NetworkError, TrainingError, UnknownNameError
from returnn_core.network import DataRef, LayerRef, LayerSpec, NetworkDescription, resolve_layer_class
from returnn_theano._pt import floatX, pt, pytensor, shared_rng
from returnn_theano.layers.base import BuildContext, Layer, LayerOutput, ParamStore, RandomSource
from returnn_theano.losses import LossTerms
from returnn_theano.optimizers import Optimizer, clip_gradients
from returnn_theano.pytensor_setup import compile_mode, late_import_warning

if TYPE_CHECKING:
    from returnn_core.config import Config
    from returnn_core.datasets import BatchData, ExternData
    from returnn_core.log import Log
    from returnn_core.plugin import PluginManager

NAME = "theano"
OPTIMIZER_PREFIX = "optimizer:"


@dataclass
class _LossLayer:
    """A layer with a loss, as it enters the compiled step functions."""

    name: str
    terms: LossTerms
    scale: float


@dataclass
class _StepFunction:
    """A compiled function, the input variables it reads (in call order) and how its outputs are split."""

    fn: Any
    inputs: list[tuple[str, str]]  # (data key, "data" | "lens" | "lr")
    losses: list[_LossLayer]


class TheanoBackend(Backend):
    """RETURNN on PyTensor: symbolic batch and time dims, so each function is compiled once per network."""

    name = NAME
    checkpoint_marker = ".npz"

    def __init__(self, config: Config, manager: PluginManager, log: Log) -> None:
        super().__init__(config, manager, log)
        seed = config.int("random_seed", 42) if config is not None else 42
        self.params = ParamStore(seed=seed)
        self.rng = shared_rng(seed=seed + 1, name="dropout_rng")
        warning = late_import_warning()
        if warning:
            log.v2(f"theano backend: {warning}")
        self.network: NetworkDescription | None = None
        self.optimizer: Optimizer | None = None
        self.settings: OptimizerSettings | None = None
        self._inputs: dict[str, tuple[Any, Any]] = {}
        self._train_ctx: BuildContext | None = None
        self._eval_ctx: BuildContext | None = None
        self._train_fn: _StepFunction | None = None
        self._train_parts: tuple[list[_LossLayer], list[tuple[Any, Any]], Any] | None = None
        self._eval_fn: _StepFunction | None = None
        self._forward_fns: dict[str, _StepFunction] = {}

    # -- building ---------------------------------------------------------------------------------
    def build(self, network: NetworkDescription, extern_data: ExternData, *, train: bool) -> None:
        """Create the symbolic inputs, the eval graph and (with ``train``) the train graph and optimizer."""
        self.network = network
        self.extern_data = extern_data
        for key, spec in extern_data.items():
            if spec.sparse:
                value = pt.matrix(key, dtype=spec.dtype or "int32")
            else:
                value = pt.tensor3(key, dtype=floatX, shape=(None, None, spec.dim))
            self._inputs[key] = (value, pt.ivector(f"{key}:seq_lens"))
        if train:
            self._train_ctx = self._build_graph(train=True)
            self.settings = OptimizerSettings.from_config(self.config)
            self.optimizer = self._make_optimizer(self.settings)
        self._eval_ctx = self._build_graph(train=False)
        self.log.v4(f"theano backend: {len(self.params.params)} parameters, "
                    f"{sum(p.get_value(borrow=True).size for p in self.params.params.values())} values")

    def _input_outputs(self) -> dict[str, LayerOutput]:
        out = {}
        for key, (value, lens) in self._inputs.items():
            spec = self.extern_data[key]
            out[key] = LayerOutput(value, lens, spec.dim, sparse=spec.sparse)
        return out

    def _build_graph(self, *, train: bool) -> BuildContext:
        assert self.network is not None
        ctx = BuildContext(self.manager, self.params, train, self._input_outputs(), RandomSource(self.rng), backend=NAME)
        for spec in self.network:
            layer = self._make_layer(spec, ctx)
            sources = [self._source(spec, src, ctx) for src in spec.sources]
            ctx.layers[spec.name] = layer
            ctx.outputs[spec.name] = layer.build(sources)
        return ctx

    def _make_layer(self, spec: LayerSpec, ctx: BuildContext) -> Layer:
        return resolve_layer_class(self.manager, spec, NAME)(spec, ctx)

    @staticmethod
    def _source(spec: LayerSpec, src: DataRef | LayerRef, ctx: BuildContext) -> LayerOutput:
        if isinstance(src, DataRef):
            if src.key not in ctx.inputs:
                raise NetworkError(f"layer {spec.name!r}: data key {src.key!r} is not in extern_data")
            return ctx.inputs[src.key]
        return ctx.outputs[src.name]

    def _make_optimizer(self, settings: OptimizerSettings) -> Optimizer:
        try:
            cls = self.manager.updaters.get(settings.name, backend=NAME)
        except UnknownNameError as exc:
            raise ConfigError(f"optimizer: {exc}") from exc
        return cls(**settings.opts)

    def _loss_layers(self, ctx: BuildContext) -> list[_LossLayer]:
        assert self.network is not None
        out = []
        for spec in self.network.loss_layers:
            raw = spec.opts["loss"]
            loss_opts = dict(spec.opts.get("loss_opts") or {})
            if isinstance(raw, dict):
                loss_opts.update({k: v for k, v in raw.items() if k != "class"})
            try:
                cls = self.manager.losses.get(spec.loss, backend=NAME)
            except UnknownNameError as exc:
                raise UnknownNameError(f"layer {spec.name!r}: {exc}") from exc
            target_key = spec.target
            if target_key not in ctx.inputs:
                raise NetworkError(
                    f"layer {spec.name!r}: loss target {target_key!r} is not in the data "
                    f"({', '.join(sorted(ctx.inputs))})"
                )
            terms = cls(spec.name, **loss_opts)(ctx.outputs[spec.name], ctx.inputs[target_key])
            out.append(_LossLayer(spec.name, terms, float(spec.opts.get("loss_scale", 1.0))))
        return out

    def _objective(self, ctx: BuildContext, losses: list[_LossLayer]) -> Any:
        """Sum over loss layers of scale * loss per frame, plus the layers' ``L2`` terms."""
        total = pt.constant(np.float32(0.0))
        for loss in losses:
            total = total + np.float32(loss.scale) * loss.terms.loss / pt.maximum(loss.terms.frames, 1.0)
        assert self.network is not None
        for spec in self.network:
            l2 = spec.opts.get("L2")
            if l2:
                seen = {id(p): p for p in ctx.layer_params.get(spec.name, []) if self.params.trainable[p.name]}
                for p in seen.values():
                    total = total + np.float32(l2) * pt.sqr(p).sum()
        return total

    # -- compiling --------------------------------------------------------------------------------
    def _compile(self, outputs: list[Any], losses: list[_LossLayer], *, updates: list[tuple[Any, Any]] = (),
                 lr: Any = None, what: str) -> _StepFunction:
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
        fn = pytensor.function(variables, outputs, updates=list(updates), on_unused_input="ignore",
                               name=f"returnn-{what}", mode=compile_mode())
        self.log.v4(f"theano backend: compiled {what} function in {time.time() - start:.1f}s")
        return _StepFunction(fn, inputs, losses)

    @staticmethod
    def _loss_outputs(losses: list[_LossLayer]) -> list[Any]:
        outputs = []
        for loss in losses:
            t = loss.terms
            outputs += [t.loss, t.error if t.error is not None else pt.constant(np.float32(0.0)), t.frames]
            outputs += t.host_outputs
        return outputs

    def _train_graph(self) -> tuple[list[_LossLayer], list[tuple[Any, Any]], Any]:
        """Losses, updates (creating the optimizer's slots) and the learning-rate input; built once."""
        if self._train_parts is None:
            if self._train_ctx is None or self.optimizer is None or self.settings is None:
                raise TrainingError("the theano backend was built without train=True; cannot train")
            ctx = self._train_ctx
            losses = self._loss_layers(ctx)
            if not losses:
                raise NetworkError("no layer has a loss; set 'loss' on the output layer to train")
            objective = self._objective(ctx, losses)
            params = self.params.trainable_params()
            if not params:
                raise NetworkError("the network has no trainable parameters")
            grads = pytensor.grad(objective, params, disconnected_inputs="ignore")
            grads = clip_gradients(grads, clip=self.settings.gradient_clip,
                                   global_norm=self.settings.gradient_clip_global_norm)
            if self.settings.gradient_noise:
                std = np.float32(self.settings.gradient_noise)
                grads = [g + ctx.rand.normal(std, g.shape) for g in grads]
            lr = pt.scalar("learning_rate", dtype=floatX)
            n_accum = self.settings.accum_grad_multiple_step
            if n_accum > 1:
                updates = self._accumulating_updates(params, grads, lr, n_accum)
            else:
                updates = self.optimizer.updates(params, grads, lr)
            updates += list(ctx.updates) + ctx.rand.updates()
            self._train_parts = (losses, updates, lr)
        return self._train_parts

    def _train_function(self) -> _StepFunction:
        if self._train_fn is None:
            losses, updates, lr = self._train_graph()
            self._train_fn = self._compile(self._loss_outputs(losses), losses, updates=updates, lr=lr, what="train")
        return self._train_fn

    def _accumulating_updates(self, params: list[Any], grads: list[Any], lr: Any, n: int) -> list[tuple[Any, Any]]:
        """Sum gradients over ``n`` steps; every ``n``-th step the optimizer applies their mean."""
        assert self.optimizer is not None
        counter = pytensor.shared(np.int64(0), name="accum_grad/step")
        self.optimizer.slots[counter.name] = counter
        apply_now = pt.eq((counter + 1) % n, 0)
        accums = []
        for p in params:
            acc = pytensor.shared(np.zeros_like(p.get_value(borrow=True)), name=f"accum_grad/{p.name}")
            self.optimizer.slots[acc.name] = acc
            accums.append(acc)
        summed = [acc + g for acc, g in zip(accums, grads, strict=True)]
        applied = self.optimizer.updates(params, [s / np.float32(n) for s in summed], lr)
        updates = [(var, pt.switch(apply_now, new, var)) for var, new in applied]
        updates += [(acc, pt.switch(apply_now, pt.zeros_like(s), s)) for acc, s in zip(accums, summed, strict=True)]
        return [*updates, (counter, counter + 1)]

    def _eval_function(self) -> _StepFunction:
        if self._eval_fn is None:
            assert self._eval_ctx is not None, "build() first"
            losses = self._loss_layers(self._eval_ctx)
            if not losses:
                raise NetworkError("no layer has a loss; nothing to evaluate")
            self._eval_fn = self._compile(self._loss_outputs(losses), losses, what="eval")
        return self._eval_fn

    def _forward_function(self, layer: str) -> _StepFunction:
        if layer not in self._forward_fns:
            assert self._eval_ctx is not None, "build() first"
            if layer not in self._eval_ctx.outputs:
                raise NetworkError(f"forward: layer {layer!r} is not in the network")
            out = self._eval_ctx.outputs[layer]
            lens = out.seq_lens if out.has_time else pt.ones((out.value.shape[0],), dtype="int32")
            self._forward_fns[layer] = self._compile([out.value, lens], [], what=f"forward-{layer}")
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
        i = 0
        for loss in step.losses:
            t = loss.terms
            loss_v, err_v, frames_v = values[i : i + 3]
            i += 3
            host = values[i : i + len(t.host_outputs)]
            i += len(t.host_outputs)
            res.losses[loss.name] = float(loss_v)
            res.frames[loss.name] = float(frames_v)
            if t.error is not None:
                res.errors[loss.name] = float(err_v)
            elif t.host_error is not None:
                res.errors[loss.name] = t.host_error(host)
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
        if value.ndim == 2 and not self._eval_ctx.outputs[layer].has_time and not self._eval_ctx.outputs[layer].sparse:
            value = value[:, None, :]
        return value, np.asarray(lens, dtype="int32")

    # -- parameters and checkpoints -------------------------------------------------------------
    def get_param_values(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by ``<layer>/<param>``."""
        return {name: var.get_value() for name, var in self.params.params.items()}

    def set_param_values(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite the named parameters; names and shapes must match."""
        unknown = sorted(set(values) - set(self.params.params))
        if unknown:
            raise NetworkError(
                f"unknown parameter(s) {', '.join(unknown)}; this network has {', '.join(sorted(self.params.params))}"
            )
        for name, value in values.items():
            var = self.params.params[name]
            old = var.get_value(borrow=True)
            value = np.asarray(value, dtype=old.dtype)
            if value.shape != old.shape:
                raise NetworkError(f"parameter {name!r}: shape {value.shape} given, the network has {old.shape}")
            var.set_value(value)

    def _optimizer_slots(self) -> dict[str, Any]:
        if self.optimizer is None:
            return {}
        self._train_graph()  # slots are created with the update rules, no compile needed
        return dict(self.optimizer.slots)

    def save(self, prefix: str) -> list[str]:
        """Parameters and optimizer state in ``<prefix>.npz`` (written to a temporary file, then renamed)."""
        path = prefix + self.checkpoint_marker
        arrays = self.get_param_values()
        for name, var in self._optimizer_slots().items():
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
        missing = sorted(set(self.params.params) - set(params))
        if missing:
            raise TrainingError(f"checkpoint {path} lacks parameter(s) {', '.join(missing)}")
        extra = sorted(set(params) - set(self.params.params))
        if extra:
            raise TrainingError(f"checkpoint {path} has parameter(s) {', '.join(extra)} that this network does not")
        try:
            self.set_param_values(params)
        except NetworkError as exc:
            raise TrainingError(f"checkpoint {path}: {exc}") from exc
        if params_only or self.optimizer is None:
            return
        slots = self._optimizer_slots()
        for name, var in slots.items():
            key = OPTIMIZER_PREFIX + name
            if key in stored and stored[key].shape == var.get_value(borrow=True).shape:
                var.set_value(stored[key].astype(var.dtype))
