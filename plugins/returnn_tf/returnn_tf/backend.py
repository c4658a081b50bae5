"""The TensorFlow backend: builds the network, compiles train/eval/forward steps with ``tf.function``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from returnn_tf.tf_import import import_tensorflow

import_tensorflow()  # the first import: quiet, without Keras
import tensorflow as tf

from returnn_core.engine.backend import Backend, StepResult
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.errors import ConfigError, NetworkError
from returnn_core.frontend import LayerOutput, Network, Optimizer, process_gradients
from returnn_tf.checkpoint import assign_values, read_values, save_variables
from returnn_tf.compiled import CompiledStep
from returnn_tf.distributed import Workers
from returnn_tf.ops import TF_OPS
from returnn_tf.updates import Updater

if TYPE_CHECKING:
    from returnn_core.config import Config
    from returnn_core.datasets import BatchData, ExternData
    from returnn_core.log import Log
    from returnn_core.network import NetworkDescription
    from returnn_core.plugin import PluginManager

#: frames per seq of the dummy batch that creates the parameters
BUILD_FRAMES = 16


class TFVariables:
    """The network's parameters as ``tf.Variable`` (TF names ``<layer>__<param>``; checkpoints use the keys)."""

    def create(self, key: str, value: np.ndarray, *, trainable: bool) -> tf.Variable:
        """A new variable with initial ``value``."""
        return tf.Variable(value, trainable=trainable, name=key.replace("/", "__"))

    def shape(self, variable: tf.Variable) -> tuple[int, ...]:
        """The static shape of ``variable``."""
        return tuple(int(d) for d in variable.shape)


def dummy_batch(net: Network, keys: list[str]) -> dict[str, LayerOutput]:
    """A small eager batch (2 seqs, :data:`BUILD_FRAMES` and 3 fewer frames) of the data ``keys``."""
    rng = np.random.RandomState(0)
    data, lens = {}, {}
    for key in keys:
        spec = net.extern_data[key]
        if spec.sparse:
            data[key] = tf.constant(rng.randint(0, max(int(spec.dim or 1), 1), size=(2, BUILD_FRAMES)), tf.int32)
        else:
            data[key] = tf.constant(rng.uniform(-0.1, 0.1, size=(2, BUILD_FRAMES, int(spec.dim or 1))), tf.float32)
        lens[key] = tf.constant([BUILD_FRAMES, BUILD_FRAMES - 3], tf.int32)
    return net.make_data(data, lens)


def configure_devices(config: Config) -> None:
    """Apply ``device`` (``cpu`` hides GPUs; ``gpu`` requires one) and the thread-pool sizes."""
    device = (config.value("device", "") or "").lower()
    try:
        if device == "cpu" or os.environ.get("DISABLE_CUDA"):
            tf.config.set_visible_devices([], "GPU")
        intra = config.int("tf_intra_op_threads", 0)
        inter = config.int("tf_inter_op_threads", 0)
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        pass  # TF is already initialised in this process: keep its devices and threads
    if device.startswith("gpu") and not tf.config.list_physical_devices("GPU"):
        raise ConfigError("device = 'gpu' but TensorFlow sees no GPU (set device = 'cpu')")


class TFBackend(Backend):
    """Backend ``tf``: TF2 eager variables with ``tf.function``-compiled steps; checkpoints ``<prefix>.index``."""

    name = "tf"
    checkpoint_marker = ".index"

    def __init__(self, config: Config, manager: PluginManager, log: Log) -> None:
        super().__init__(config, manager, log)
        configure_devices(config)
        # the strategy must exist before any other TF op runs in this process
        self.workers = Workers.from_env(timeout=config.float("distributed_timeout", None))
        if self.workers is None and config.typed_value("distributed", None):
            log.v2("tf backend: 'distributed' is set but TF_CONFIG names no workers: training in one process "
                   "(start the workers with: returnn tf-distributed CONFIG)")
        self.seed = config.int("random_seed", 42) or 0
        tf.random.set_seed(self.seed)
        self.net: Network | None = None
        self.optimizer: Any = None
        self.updater: Any = None
        self.settings: OptimizerSettings | None = None
        self.learning_rate = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="learning_rate")
        self.global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
        self._forward_fns: dict[str, Any] = {}
        self._has_error: list[bool] = []
        self._no_tags = tf.constant([], tf.string)
        self._summary_writer: Any = None
        self._summaries_failed = False
        #: train steps so far in this run: the x axis of the per-step TensorBoard scalars
        self._train_steps = 0
        self._broadcasts: dict[bool, Any] = {}

    # -- building -------------------------------------------------------------------------------------------
    def build(self, network: NetworkDescription, extern_data: ExternData, *, train: bool) -> None:
        """Create layers, parameters, losses and (``train``) the optimizer; compile the step functions."""
        net = Network(network, extern_data, manager=self.manager, log=self.log, backend=self.name,
                      variables=TFVariables(), seed=self.seed)
        self.input_keys = net.input_keys()
        self.target_keys = net.target_keys()
        self.step_keys = sorted(set(self.input_keys) | set(self.target_keys))
        # parameters are created by one eager pass over a small dummy batch
        net.build(TF_OPS, dummy_batch(net, self.step_keys))
        self.net = net
        self.trainable = net.trainable_params()
        self.needs_tags = any(getattr(t.loss, "needs_seq_tags", False) for t in net.loss_terms)
        if train:
            if not net.loss_terms:
                raise NetworkError("the network has no loss to train (set 'loss' on an output layer)")
            self.settings = OptimizerSettings.from_config(self.config)
            cls = self.manager.updaters.get(self.settings.name, backend=self.name)
            self.optimizer = self.settings.create(cls)
            if isinstance(self.optimizer, Optimizer):
                self.updater = Updater(self.optimizer, self.trainable)
            else:  # a TF optimizer of the old duck-typed interface (build, apply, state)
                self.optimizer.build(self.trainable)
                self.updater = self.optimizer
            self._accum = None
            if self.settings.accum_grad_multiple_step > 1:
                self._accum = {k: tf.Variable(tf.zeros_like(v), trainable=False) for k, v in self.trainable.items()}
        self._make_functions(train)
        if self.workers is not None:
            # identical initial state on all workers, whatever the initializers did
            self._broadcast_state(params_only=False)
            self.log.v3(f"tf backend: worker {self.workers.rank} of {self.workers.num_workers} "
                        "(MultiWorkerMirroredStrategy)")
        self.log.v4(f"tf backend: {len(net.params)} parameters "
                    f"({sum(int(np.prod(v.shape)) for v in net.params.values())} values)")

    def _signature(self, keys: list[str]) -> tuple[dict[str, tf.TensorSpec], dict[str, tf.TensorSpec]]:
        data, lens = {}, {}
        for key in keys:
            spec = self.net.extern_data[key]
            if spec.sparse:
                data[key] = tf.TensorSpec([None, None], tf.as_dtype(spec.dtype), name=key)
            else:
                data[key] = tf.TensorSpec([None, None, spec.dim], tf.as_dtype(spec.dtype), name=key)
            lens[key] = tf.TensorSpec([None], tf.int32, name=f"{key}_lens")
        return data, lens

    def _make_functions(self, train: bool) -> None:
        data_sig, lens_sig = self._signature(self.step_keys)
        tags_sig = tf.TensorSpec([None], tf.string)
        scalar = tf.TensorSpec([], tf.float32)
        workers = self.workers
        if workers is None:
            self._eval_fn = CompiledStep(self._eval_graph, (data_sig, lens_sig, tags_sig), name="eval step")
        else:
            self._eval_fn = CompiledStep(lambda data, lens, tags, weight: workers.run(
                self._eval_graph, (data, lens, tags, weight)), (data_sig, lens_sig, tags_sig, scalar), name="eval step")
        if not train:
            return
        if workers is None:
            self._train_fn = CompiledStep(self._train_graph, (data_sig, lens_sig, tags_sig, scalar), name="train step")
        else:
            self._train_fn = CompiledStep(lambda data, lens, tags, lr, weight: workers.run(
                self._train_graph, (data, lens, tags, lr, weight)), (data_sig, lens_sig, tags_sig, scalar, scalar),
                name="train step")

    # -- compiled steps -------------------------------------------------------------------------------------
    def _pack(self, results: list[tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]]) -> tf.Tensor:
        self._has_error = [err is not None for _, err, _ in results]
        flat = []
        for loss, err, frames in results:
            flat.extend([loss, err if err is not None else tf.constant(0.0), frames])
        return tf.stack(flat)

    def _objective(self, results: list[tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]]) -> tf.Tensor:
        frames = None
        l2_scale = 1.0
        if self.workers is not None:
            # normalise by the frames of the global batch; the workers' gradients are summed, and so is the L2 term
            local = [f for _, _, f in results]
            frames = tf.unstack(self.workers.all_sum(tf.stack(local))) if local else []
            l2_scale = 1.0 / self.workers.num_workers
        return self.net.objective(TF_OPS, results, frames=frames, l2_scale=l2_scale)

    @staticmethod
    def _weighted(results: list[tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]],
                  weight: tf.Tensor | None) -> list[tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]]:
        if weight is None:
            return results
        return [(loss * weight, None if err is None else err * weight, frames * weight) for loss, err, frames in results]

    def _eval_graph(self, data: dict, lens: dict, tags: tf.Tensor, weight: tf.Tensor | None = None) -> tf.Tensor:
        d = self.net.make_data(data, lens)
        outputs = self.net.compute(TF_OPS, d, train=False)
        packed = self._pack(self._weighted(self.net.loss_values(TF_OPS, outputs, d, tags), weight))
        return packed if self.workers is None else self.workers.all_sum(packed)

    def _train_graph(self, data: dict, lens: dict, tags: tf.Tensor, lr: tf.Tensor,
                     weight: tf.Tensor | None = None) -> tf.Tensor:
        self.learning_rate.assign(lr)
        names = list(self.trainable)
        variables = [self.trainable[n] for n in names]
        d = self.net.make_data(data, lens)
        with tf.GradientTape() as tape:
            outputs = self.net.compute(TF_OPS, d, train=True)
            results = self._weighted(self.net.loss_values(TF_OPS, outputs, d, tags), weight)
            objective = self._objective(results)
        grads = tape.gradient(objective, variables)
        if self.workers is not None:
            grads = self.workers.all_sum_gradients(grads)
        grads = self._process_gradients(grads)
        if self._accum is None:
            self.updater.apply(grads, variables, names, self.learning_rate)
        else:
            self._accumulate(grads, variables, names)
        self.global_step.assign_add(1)
        packed = self._pack(results)
        return packed if self.workers is None else self.workers.all_sum(packed)

    def _process_gradients(self, grads: list[Any]) -> list[Any]:
        s = self.settings
        # embedding lookups give IndexedSlices, which the ops do not take
        grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
        return process_gradients(TF_OPS, grads, **s.gradient_options())

    def _accumulate(self, grads: list[Any], variables: list[tf.Variable], names: list[str]) -> None:
        n = self.settings.accum_grad_multiple_step
        for g, name in zip(grads, names):
            if g is not None:
                self._accum[name].assign_add(g)
        apply_now = tf.equal((self.global_step + 1) % n, 0)

        def apply() -> tf.Tensor:
            summed = [self._accum[name].read_value() / float(n) for name in names]
            self.updater.apply(summed, variables, names, self.learning_rate)
            for name in names:
                self._accum[name].assign(tf.zeros_like(self._accum[name]))
            return tf.constant(True)

        tf.cond(apply_now, apply, lambda: tf.constant(False))

    # -- the Backend interface ------------------------------------------------------------------------------
    def _feed(self, batch: BatchData, keys: list[str]) -> tuple[dict, dict, tf.Tensor]:
        missing = [k for k in keys if k not in batch.data]
        if missing:
            raise NetworkError(f"the batch lacks data key(s) {', '.join(missing)} that the network needs "
                               f"(it has {', '.join(sorted(batch.data))})")
        data = {k: batch.data[k] for k in keys}
        lens = {k: batch.seq_lens[k] for k in keys}
        tags = tf.constant(batch.tags, tf.string) if self.needs_tags else self._no_tags
        return data, lens, tags

    def _result(self, packed: np.ndarray) -> StepResult:
        res = StepResult()
        for i, term in enumerate(self.net.loss_terms):
            res.losses[term.layer] = float(packed[3 * i])
            if self._has_error[i]:
                res.errors[term.layer] = float(packed[3 * i + 1])
            res.frames[term.layer] = float(packed[3 * i + 2])
        return res

    def train_step(self, batch: BatchData, learning_rate: float) -> StepResult:
        """One update; returns the losses computed before it (with several workers: summed over them)."""
        if self.workers is None:
            data, lens, tags = self._feed(batch, self.step_keys)
            result = self._result(self._train_fn(data, lens, tags, np.float32(learning_rate)).numpy())
        else:
            share, weight = self.workers.shard(batch)
            data, lens, tags = self._feed(share, self.step_keys)
            result = self._result(self._train_fn(data, lens, tags, np.float32(learning_rate), np.float32(weight)).numpy())
        self._train_steps += 1
        if self.log.max_verbosity >= 4:
            self._summarize(lambda writer: self._step_summary(writer, result, learning_rate))
        return result

    def _summarize(self, write: Any) -> None:
        """Call ``write(writer)`` with the TensorBoard writer; a failing writer (full disk, unwritable
        ``tf_log_dir``) ends the summaries with one warning line, never the training."""
        if self._summaries_failed:
            return
        try:
            writer = self._writer()
            if writer is not None:
                write(writer)
        except (tf.errors.OpError, OSError) as exc:
            self._summaries_failed = True
            reason = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
            self.log.v1(f"warning: TensorBoard summaries stopped ({reason}); training goes on without them")

    def _step_summary(self, writer: Any, result: StepResult, learning_rate: float) -> None:
        """Per-step TensorBoard scalars ``step/cost:LAYER``, ``step/error:LAYER``, ``step/learning_rate`` (chief)."""
        values = {f"step/cost:{k}": v for k, v in result.scores().items()}
        values.update({f"step/error:{k}": v for k, v in result.error_rates().items()})
        values["step/learning_rate"] = float(learning_rate)
        with writer.as_default(step=self._train_steps):
            for key, value in values.items():
                if np.isfinite(value):
                    write_scalar(key, value, self._train_steps)

    def eval_step(self, batch: BatchData) -> StepResult:
        """Losses and errors without an update (dropout off)."""
        if self.workers is None:
            data, lens, tags = self._feed(batch, self.step_keys)
            return self._result(self._eval_fn(data, lens, tags).numpy())
        share, weight = self.workers.shard(batch)
        data, lens, tags = self._feed(share, self.step_keys)
        return self._result(self._eval_fn(data, lens, tags, np.float32(weight)).numpy())

    def forward_step(self, batch: BatchData, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Output of ``layer``: (B, T, D) (or (B, T) if sparse) and its seq lengths."""
        if layer not in self.net.layers:
            raise NetworkError(f"forward: layer {layer!r} is not in the network ({', '.join(self.net.layers)})")
        fn = self._forward_fns.get(layer)
        if fn is None:
            data_sig, lens_sig = self._signature(self.input_keys)

            def forward(data: dict, lens: dict) -> tuple[tf.Tensor, tf.Tensor]:
                outputs = self.net.compute(TF_OPS, self.net.make_data(data, lens), train=False)
                out = outputs[layer]
                tensor = out.tensor
                if not out.has_time:
                    tensor = tf.expand_dims(tensor, 1)
                    return tensor, tf.ones([tf.shape(tensor)[0]], tf.int32)
                return tensor, out.seq_lens

            fn = self._forward_fns[layer] = CompiledStep(forward, (data_sig, lens_sig), name=f"forward {layer}")
        data, lens, _ = self._feed(batch, self.input_keys)
        out, seq_lens = fn(data, lens)
        return out.numpy(), seq_lens.numpy()

    def _state_variables(self, params_only: bool) -> dict[str, tf.Variable]:
        out: dict[str, tf.Variable] = dict(self.net.params)
        if not params_only:
            out["global_step"] = self.global_step
            if self.updater is not None:
                out.update(self.updater.state())
            for name, var in (getattr(self, "_accum", None) or {}).items():
                out[f"accum_grad/{name}"] = var
        return out

    @property
    def is_chief(self) -> bool:
        """Worker 0 of a data-parallel run (or the only process) writes checkpoints and the learning-rate file."""
        return self.workers is None or self.workers.is_chief

    def save(self, prefix: str) -> list[str]:
        """Write parameters and optimizer state as ``<prefix>.data-*`` and ``<prefix>.index`` (last)."""
        return save_variables(prefix, self._state_variables(params_only=False))

    def load(self, prefix: str, *, params_only: bool = False) -> None:
        """Restore parameters (and unless ``params_only`` the optimizer state) from a checkpoint.

        With several workers the chief reads it and broadcasts the values to the others.
        """
        if self.workers is None or self.workers.is_chief:
            values = read_values(prefix)
            assign_values(self.net.params, values, source=f"checkpoint {prefix}")
            if not params_only:
                extra = {k: v for k, v in self._state_variables(params_only=False).items() if k not in self.net.params}
                assign_values(extra, values, source=f"checkpoint {prefix}", required=False)
        if self.workers is not None:
            self._broadcast_state(params_only)

    def _broadcast_state(self, params_only: bool) -> None:
        fn = self._broadcasts.get(params_only)
        if fn is None:
            state = self._state_variables(params_only)
            fn = self._broadcasts[params_only] = self.workers.make_broadcast([state[k] for k in sorted(state)])
        fn()

    def get_param_values(self) -> dict[str, np.ndarray]:
        """All parameters by canonical name."""
        return {name: var.numpy() for name, var in self.net.params.items()}

    def set_param_values(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite parameters by canonical name."""
        unknown = sorted(set(values) - set(self.net.params))
        if unknown:
            raise NetworkError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(self.net.params))}")
        assign_values({k: self.net.params[k] for k in values}, values, source="set_param_values")

    def epoch_summary(self, epoch: int, scores: dict[str, Any]) -> None:
        """Write the epoch's scores and learning rate as TensorBoard scalars under the model dir (chief only)."""
        values = dict(_flatten(scores))
        values.setdefault("learning_rate", float(self.learning_rate.numpy()))

        def write(writer: Any) -> None:
            with writer.as_default(step=epoch):
                for key, value in values.items():
                    write_scalar(key, value, epoch)
            writer.flush()

        self._summarize(write)

    def _writer(self) -> Any:
        """The TensorBoard writer for ``tf_log_dir`` (default: ``tensorboard/`` beside the model); None if not chief."""
        if not self.is_chief:
            return None
        if self._summary_writer is None:
            log_dir = self.config.value("tf_log_dir", None)
            if log_dir is None:
                model = self.config.value("model", None)
                if not model:
                    return None
                log_dir = os.path.join(os.path.dirname(os.path.abspath(model)), "tensorboard")
            self._summary_writer = tf.summary.create_file_writer(log_dir)
        return self._summary_writer

    def close(self) -> None:
        """Close the summary writer."""
        if self._summary_writer is not None:
            self._summary_writer.close()
            self._summary_writer = None


def write_scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar through ``tf.summary.write`` (works without the tensorboard package installed)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=meta.SerializeToString())


def _flatten(scores: Any, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    if isinstance(scores, dict):
        for k, v in scores.items():
            out.extend(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(scores, (int, float, np.floating, np.integer)) and not isinstance(scores, bool):
        if np.isfinite(scores):
            out.append((prefix or "score", float(scores)))
    return out
