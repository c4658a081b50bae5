"""The training driver: tasks train/eval/forward/compute_priors over any backend."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from returnn_core.atomic_write import atomic_write_text, disk_full, is_disk_full
from returnn_core.config import Config
from returnn_core.config.network_text import network_from_text
from returnn_core.config.schema import warn_unread_keys
from returnn_core.datasets import Dataset, ExternData, init_dataset
from returnn_core.engine import signals
from returnn_core.engine.backend import Backend, StepResult
from returnn_core.engine.backend_choice import select_backend
from returnn_core.engine.checkpoints import checkpoint_prefix, completed_epochs, epoch_checkpoint, save_checkpoint
from returnn_core.engine.data_check import check_batch, check_keys, class_keys, network_keys
from returnn_core.engine.dataset_cache import cache_byte_sizes
from returnn_core.engine.last_best_model import epoch_to_go_back_to, last_best_options
from returnn_core.engine.prefetch import Prefetcher
from returnn_core.engine.pretrain import (
    apply_epoch_config,
    carried_params,
    layer_dict,
    pretrain_from_config,
    set_pretrain_learning_rate,
)
from returnn_core.engine.search import run_search
from returnn_core.errors import ConfigError, TrainingError
from returnn_core.learning_rate import LearningRateControl, learning_rate_control_from_config
from returnn_core.log import Log, Progress, epoch_line
from returnn_core.network import NetworkDescription, is_recurrent, resolve_network
from returnn_core.network.pretrain import Pretrain, find_pretrain_wrap_values
from returnn_core.network.topology import has_topology, network_from_topology, registry_accepts
from returnn_core.plugin import PluginManager, get_plugin_manager

TASKS = ("train", "eval", "forward", "search", "compute_priors", "nop")


def score_summary(prefix: str, result: StepResult) -> dict[str, float]:
    """Scores for the learning-rate file: ``<prefix>_score``/``_error`` of all layers, per layer if several."""
    scores, errors = result.scores(), result.error_rates()
    out: dict[str, float] = {}
    if not scores:
        return out
    out[f"{prefix}_score"] = sum(scores.values())
    main = "output" if "output" in scores else sorted(scores)[0]
    if main in errors:
        out[f"{prefix}_error"] = errors[main]
    if len(scores) > 1:
        for layer, score in scores.items():
            out[f"{prefix}_score_{layer}"] = score
            if layer in errors:
                out[f"{prefix}_error_{layer}"] = errors[layer]
    return out


class Engine:
    """Runs one config: builds datasets, network and backend, then the task."""

    def __init__(self, config: Config, *, manager: PluginManager | None = None, log: Log | None = None) -> None:
        self.config = config
        self.manager = manager or get_plugin_manager()
        self.log = log or Log.from_config(config)
        self.backend_name = select_backend(config, self.manager, self.log)
        self.backend_cls: type[Backend] = self.manager.backends.get(self.backend_name)
        self.model = config.value("model", None)
        self.batch_opts = self._read_batch_opts()
        self.backend: Backend | None = None
        self._datasets: list[Dataset] = []
        self.extern_data: ExternData | None = None
        self.network: NetworkDescription | None = None
        #: RETURNN's network.recurrent: False joins the frames of several seqs into one batch row
        self.recurrent_net = True
        self._pretrain: Pretrain | None | bool = False  # False: not read from the config yet
        #: the config values a pretrain network's "#config" replaced, to put back before the next epoch
        self._config_before_pretrain: dict[str, Any] = {}
        #: the layer dict the current backend was built from
        self.built_net_dict: dict[str, Any] | None = None
        self._unread_keys_warned = False

    # -- setup ----------------------------------------------------------------------------------
    def _read_batch_opts(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "batch_size": self.config.int("batch_size", 1),
            "max_seqs": self.config.int("max_seqs", -1),
            "max_seq_length": self.config.typed_value("max_seq_length", None),
        }
        if isinstance(opts["max_seq_length"], str):
            opts["max_seq_length"] = self.config.int("max_seq_length")
        return opts

    def dataset(self, key: str) -> Dataset | None:
        """The dataset configured under ``key`` (``train``, ``dev``, ``eval``), or None; closed after the task.

        RETURNN's ``batching`` key is the train set's ``seq_ordering`` unless the dataset sets its own, and its
        ``cache_size`` the HDF cache of each set (``cache_byte_size``) unless the dataset sets its own.
        """
        spec = self.config.typed_value(key)
        if spec is None or spec == "":
            return None
        defaults: dict[str, Any] = {}
        batching = self.config.value("batching", None) if key == "train" else None
        if batching:
            defaults["seq_ordering"] = batching
        cache_sizes = cache_byte_sizes(self.config)
        if cache_sizes is not None and key in cache_sizes:
            defaults["cache_byte_size"] = cache_sizes[key]
        return self.dataset_from_spec(spec, defaults=defaults or None)

    def dataset_from_spec(self, spec: Any, *, defaults: dict[str, Any] | None = None) -> Dataset:
        """A dataset from a config value (dict, dataset string, ...), read with this config; closed after the task."""
        dataset = init_dataset(spec, defaults=defaults, manager=self.manager, config=self.config)
        self._datasets.append(dataset)
        return dataset

    def config_network_dict(self) -> dict[str, Any]:
        """The config's ``network`` as a layer dict (a line-based config's text parsed; without ``network``, the
        2017 ``hidden_size``/``hidden_type`` description)."""
        if has_topology(self.config):
            return network_from_topology(self.config, registry_accepts(self.manager, self.backend_name))
        net_dict = self.config.typed_value("network")
        if net_dict is None:
            raise ConfigError("the config has no 'network'")
        return network_from_text(net_dict) if isinstance(net_dict, str) else net_dict

    @property
    def pretrain(self) -> Pretrain | None:
        """The pretrain schedule of the config's ``pretrain`` key, or None."""
        if self._pretrain is False:
            self._pretrain = pretrain_from_config(self.config, self.config_network_dict())
            if self._pretrain is not None:
                self.log.v3(f"pretrain: {self._pretrain}")
        return self._pretrain  # type: ignore[return-value]

    def is_pretrain_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of pretraining's (RETURNN's Engine.is_pretrain_epoch)."""
        return self.pretrain is not None and epoch <= self.pretrain.get_train_num_epochs()

    def is_first_epoch_after_pretrain(self, epoch: int) -> bool:
        """Whether ``epoch`` is the first one of the full network after pretraining."""
        return self.pretrain is not None and epoch == self.pretrain.get_train_num_epochs() + 1

    def network_dict(self, epoch: int | None = None) -> dict[str, Any]:
        """The layer dict to build: the config's network, or with ``pretrain`` the network of ``epoch`` (None: the
        final one), ``greedy``'s fixed layers marked."""
        pretrain = self.pretrain
        if pretrain is None:
            net_dict = self.config_network_dict()
            if find_pretrain_wrap_values(net_dict):
                raise ConfigError("the network has WrapEpochValue values but no pretraining is configured; set "
                                  "pretrain (e.g. 'default') or give plain values")
            return layer_dict(net_dict)
        if epoch is None:
            return layer_dict(pretrain.get_final_network_json())
        return layer_dict(pretrain.get_network_json_for_epoch(epoch), pretrain.get_train_layers_for_epoch(epoch))

    def build(self, reference: Dataset | None, *, train: bool, search: bool = False,
              extra_layers: Mapping[str, Any] | None = None, epoch: int | None = None) -> Backend:
        """Resolve the network against the data and let the backend build it (``search``: RETURNN's search flag;
        ``extra_layers``: layers a task adds to the config's network, e.g. search's beam scores; ``epoch``: whose
        pretrain network, None for the final one)."""
        self.extern_data = ExternData.from_config(self.config, reference)
        net_dict = self.network_dict(epoch)
        self.built_net_dict = net_dict
        if extra_layers:
            net_dict = {**net_dict, **extra_layers}
        self.network = resolve_network(net_dict, list(self.extern_data))
        self.network.search_flag = search
        backend = self.backend_cls(self.config, self.manager, self.log)
        backend.build(self.network, self.extern_data, train=train)
        self.backend = backend
        self.recurrent_net = is_recurrent(self.network, self.manager, self.backend_name)
        if not self.recurrent_net:
            self.log.v4("the network is not recurrent: train and eval batches join the frames of several seqs")
        self.log.v4(f"backend {self.backend_name}: network with layers {', '.join(self.network.layers)}")
        if not self._unread_keys_warned:  # once, not again at each pretrain network
            warn_unread_keys(self.config, self.log, self.manager)
            self._unread_keys_warned = True
        return backend

    def _require_model(self) -> str:
        if not self.model:
            raise ConfigError("set 'model' (the checkpoint path prefix, e.g. 'out/model') in the config")
        return self.model

    def _checkpoint(self, epoch: int) -> str:
        prefix = epoch_checkpoint(self._require_model(), epoch, self.backend_cls.checkpoint_marker)
        if prefix is None:
            prefix = checkpoint_prefix(self._require_model(), epoch)
            raise TrainingError(f"no complete checkpoint {prefix} (missing {prefix}{self.backend_cls.checkpoint_marker})")
        return prefix

    @staticmethod
    def epoch_model_filename(model_filename: str, epoch: int, is_pretrain: bool) -> str:
        """RETURNN's name of an epoch's checkpoint: ``<model>.NNN``, ``<model>.pretrain.NNN`` in pretraining."""
        return checkpoint_prefix(model_filename, epoch, pretrain=is_pretrain)

    def epoch_prefix(self, epoch: int) -> str:
        """Where ``epoch``'s checkpoint goes: ``<model>.pretrain.NNN`` in pretraining, else ``<model>.NNN``."""
        return self.epoch_model_filename(self._require_model(), epoch, self.is_pretrain_epoch(epoch))

    def last_epoch(self) -> int | None:
        """The newest epoch with a complete checkpoint."""
        if not self.model:
            return None
        epochs = completed_epochs(self.model, self.backend_cls.checkpoint_marker)
        return epochs[-1] if epochs else None

    # -- tasks ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the configured ``task``."""
        task = self.config.value("task", "train")
        handlers: dict[str, Callable[[], None]] = {
            "train": self.train,
            "eval": self.eval,
            "forward": self.forward,
            "search": lambda: run_search(self),
            "compute_priors": self.compute_priors,
            "nop": lambda: self.log.v1("Task: No-operation"),  # RETURNN's: the config loads, nothing runs
        }
        if task not in handlers:
            raise ConfigError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        try:
            handlers[task]()
        finally:
            # datasets may own child processes and files: release them even when the task failed
            for dataset in self._datasets:
                dataset.close()
            if self.backend is not None:
                self.backend.close()

    def run_epoch(self, dataset: Dataset, epoch: int, *, learning_rate: float | None, what: str) -> StepResult:
        """One pass over ``dataset``: train steps when ``learning_rate`` is given, else eval steps."""
        assert self.backend is not None and self.extern_data is not None
        train = learning_rate is not None
        dataset.init_seq_order(epoch)
        chunking = self.config.typed_value("chunking", None) if train else None
        if train and chunking is None:
            chunking = "from-dataset"
        total = StepResult()
        progress = Progress(self.log, f"{what} epoch {epoch}", self._known_num_seqs(dataset))
        step = 0
        batches = dataset.generate_batches(chunking=chunking, recurrent_net=self.recurrent_net, **self.batch_opts)
        extern_data = self.extern_data
        # the next batch is read and padded in a thread while the backend runs this one
        with Prefetcher(batches, lambda b: (b, b.to_data(extern_data))) as prefetched:
            for step, (batch, data) in enumerate(prefetched, 1):
                signals.check()  # SIGINT/SIGTERM: stop between steps, never inside one
                if step == 1:
                    check_batch(dataset, data, self.extern_data, network_keys(self.network, targets=True),
                                class_keys(self.network, targets=True))
                if train:
                    result = self.backend.train_step(data, learning_rate)  # type: ignore[arg-type]
                    if not result.is_finite() and self.config.bool("stop_on_nonfinite_train_score", True):
                        bad = ", ".join(f"{k}={v}" for k, v in result.losses.items() if not np.isfinite(v))
                        last = self.last_epoch()
                        kept = f"the last good checkpoint {self._checkpoint(last)} is kept" if last and self.model else "no checkpoint of this epoch is written"
                        raise TrainingError(
                            f"epoch {epoch} step {step}: non-finite loss ({bad}) in seqs {', '.join(data.tags[:3])}; "
                            f"stopped the epoch; {kept}. Lower the learning rate or enable gradient_clip."
                        )
                else:
                    result = self.backend.eval_step(data)
                total.add(result)
                progress.step(step, batch.slices[-1].seq.seq_idx + 1, result, data, learning_rate)
        progress.close()
        dataset.finish_epoch()
        if step == 0:
            raise TrainingError(f"{what} dataset {dataset.name} gave no batch in epoch {epoch} (empty, or all seqs too long)")
        return total

    @staticmethod
    def _known_num_seqs(dataset: Dataset) -> int | None:
        try:
            return dataset.num_seqs
        except (NotImplementedError, TypeError):
            return None  # a streaming dataset may not know its size up front

    def _eval_datasets(self) -> dict[str, Dataset]:
        out = {}
        for key in ("dev", "eval"):
            ds = self.dataset(key)
            if ds is not None:
                out[key] = ds
        for name, spec in (self.config.typed_value("eval_datasets") or {}).items():
            out[name] = self.dataset_from_spec(spec)
        return out

    def train(self) -> None:
        """The epoch loop with learning-rate control, checkpoints and resume."""
        model = self._require_model()
        train_data = self.dataset("train")
        if train_data is None:
            raise ConfigError("task train needs a 'train' dataset")
        eval_sets = self._eval_datasets()
        num_epochs = self.config.int("num_epochs", 5) or 5
        save_interval = max(self.config.int("save_interval", 1) or 1, 1)
        lrc: LearningRateControl = learning_rate_control_from_config(self.config, self.manager)
        start = self._restore_for_training(train_data)
        backend = self.backend
        assert backend is not None
        if start > num_epochs:
            self.log.v2(f"model {model} is trained up to epoch {start - 1} >= num_epochs {num_epochs}; nothing to do")
            return
        for ds in (train_data, *eval_sets.values()):  # a dev set without a key fails now, not after an epoch
            check_keys(ds, network_keys(self.network, targets=True))
        last_best = last_best_options(self.config.typed_value("use_last_best_model"))
        for epoch in range(start, num_epochs + 1):
            signals.check()
            t0 = time.monotonic()
            if self.pretrain is not None:
                backend = self._pretrain_network(train_data, epoch)
                apply_epoch_config(self.config, self.pretrain, lrc, epoch, self._config_before_pretrain, self.log)
                self.batch_opts = self._read_batch_opts()
                set_pretrain_learning_rate(self.config, self.pretrain, lrc, epoch)
            lr = lrc.learning_rate(epoch)
            if last_best is not None and not self.is_pretrain_epoch(epoch):
                self._maybe_go_back(lrc, epoch, last_best)
            self.log.v3(f"start {'pretrain ' if self.is_pretrain_epoch(epoch) else ''}epoch {epoch} "
                        f"with learning rate {lr:g}")
            train_res = self.run_epoch(train_data, epoch, learning_rate=lr, what="train")
            scores = score_summary("train", train_res)
            dev_lines: dict[str, dict[str, float]] = {}
            for name, ds in eval_sets.items():
                res = self.run_epoch(ds, epoch, learning_rate=None, what=name)
                s = score_summary(name, res)
                scores.update(s)
                dev_lines[name] = {"score": s.get(f"{name}_score", float("nan")), "error": s.get(f"{name}_error")}
            lrc.set_epoch_error(epoch, scores)
            if backend.is_chief:
                lrc.save()  # before the checkpoint: a crash in between retrains this epoch at the same rate
                if epoch % save_interval == 0 or epoch == num_epochs:
                    save_checkpoint(backend, self.epoch_prefix(epoch))
            backend.epoch_summary(epoch, {**scores, "learning_rate": lr})
            self.log.v1(epoch_line(epoch, scores.get("train_score"), time.monotonic() - t0, dev_lines))
        self.log.v3(f"finished training after epoch {num_epochs}")

    def _pretrain_network(self, reference: Dataset, epoch: int) -> Backend:
        """The backend with ``epoch``'s pretrain network: when it differs from the one built, a new one is built
        and takes over the params of the same name and shape (the others start freshly initialised)."""
        assert self.pretrain is not None and self.backend is not None and self.network is not None
        net_dict = self.network_dict(epoch)
        if self.is_pretrain_epoch(epoch):
            self.log.v3(f"pretrain epoch {epoch} (of {self.pretrain.get_train_num_epochs()}): network with layers "
                        f"{', '.join(net_dict)}")
        if net_dict == self.built_net_dict:
            return self.backend
        old_values = self.backend.get_param_values()
        self.backend.close()
        self.backend = None
        # As RETURNN (a new network gets a new updater), the optimizer state starts afresh: its slots (Adam moments,
        # Adadelta accumulators, ...) belong to the old network's variables, whose set and shapes have changed.
        backend = self.build(reference, train=True, epoch=epoch)
        assert self.network is not None
        pretraining = self.is_pretrain_epoch(epoch)
        copy_out = self.pretrain.copy_output_layer if pretraining else "ifpossible"
        mode = self.pretrain.get_network_json_for_epoch(epoch).get(
            "#copy_param_mode", self.pretrain.copy_param_mode if pretraining else None)
        values = {} if mode == "reset" else carried_params(
            old_values, backend.get_param_values(), self.network.output_layers, copy_out, self.log)
        backend.set_param_values(values)
        fresh = sorted(set(backend.get_param_values()) - set(values))
        self.log.v3(f"pretrain: new network for epoch {epoch}; {len(values)} params carried over"
                    + (f", freshly initialised: {', '.join(fresh)}" if fresh else ""))
        return backend

    def _maybe_go_back(self, lrc: LearningRateControl, epoch: int, opts: dict[str, Any]) -> None:
        """``use_last_best_model``: start ``epoch`` from the best recent checkpoint if it beat the last one."""
        if self.pretrain is not None:  # only among the epochs of the full network (the last pretrain one has it)
            opts = {**opts, "first_epoch": max(int(opts["first_epoch"]), self.pretrain.get_train_num_epochs())}
        best = epoch_to_go_back_to(lrc, epoch, opts)
        if best is None:
            return
        prefix = epoch_checkpoint(self._require_model(), best, self.backend_cls.checkpoint_marker)
        if prefix is None:
            self.log.v2(f"epoch {best} scored best ({lrc.epoch_error(best)}) but has no complete checkpoint; "
                        f"continuing from epoch {epoch - 1}")
            return
        self.log.v2(f"Last epoch {epoch - 1} (score: {lrc.epoch_error(epoch - 1)}) is not the optimal model but "
                    f"epoch {best} has better score {lrc.epoch_error(best)}, will use that model.")
        # RETURNN resets the optimizer's slots here; we take that epoch's own optimizer state with its params
        assert self.backend is not None
        self.backend.load(prefix)

    def _restore_for_training(self, reference: Dataset) -> int:
        """Build the network and load what the config asks for (or the newest checkpoint); return the first epoch
        to train. With pretraining, a checkpoint of epoch N is loaded into epoch N's network."""
        load_epoch = self.config.int("load_epoch", None)
        last = self.last_epoch()
        if load_epoch or last is not None:
            epoch = load_epoch or last
            prefix = self._checkpoint(epoch)  # type: ignore[arg-type]
            if not load_epoch:
                self.log.v2(f"resuming from {prefix}")
            self.build(reference, train=True, epoch=epoch)
            self.backend.load(prefix)  # type: ignore[union-attr]
            return epoch + 1  # type: ignore[operator]
        self.build(reference, train=True, epoch=1)
        import_path = self.config.value("import_model_train_epoch1", None)
        if import_path:
            self.backend.load(import_path, params_only=True)  # type: ignore[union-attr]
        elif self.config.value("load", None):
            self.backend.load(self.config.value("load"))  # type: ignore[union-attr,arg-type]
        return 1

    def _load_for_inference(self, reference: Dataset | None, *, search: bool = False,
                            extra_layers: Mapping[str, Any] | None = None) -> int:
        path = self.config.value("load", None)
        epoch = self.config.int("load_epoch", None) or self.last_epoch()
        from_path = bool(path and not self.config.int("load_epoch", None))
        # a pretrain epoch's checkpoint holds that epoch's network
        net_epoch = epoch if epoch is not None and not from_path and self.is_pretrain_epoch(epoch) else None
        self.build(reference, train=False, search=search, extra_layers=extra_layers, epoch=net_epoch)
        assert self.backend is not None
        if from_path:
            self.backend.load(path, params_only=True)  # type: ignore[arg-type]
            return epoch or 0
        if epoch is None:
            raise TrainingError(f"no complete checkpoint found for model {self.model!r}; train first or set load")
        self.backend.load(self._checkpoint(epoch), params_only=True)
        return epoch

    def eval(self) -> None:
        """Scores of the loaded model on ``dev``/``eval``/``eval_datasets``."""
        eval_sets = self._eval_datasets()
        if not eval_sets:
            raise ConfigError("task eval needs a 'dev', 'eval' or 'eval_datasets' dataset")
        epoch = self._load_for_inference(next(iter(eval_sets.values())))
        for name, ds in eval_sets.items():
            res = self.run_epoch(ds, epoch or 1, learning_rate=None, what=name)
            s = score_summary(name, res)
            self.log.v1(f"epoch {epoch} {name}: score {s.get(f'{name}_score', float('nan')):.6g}"
                        + (f" error {s[f'{name}_error']:.6g}" if f"{name}_error" in s else ""))

    def forward_batches(self, dataset: Dataset, layer: str):
        """``(out, lens, data)`` of ``layer`` for each batch of ``dataset`` in its default order (model loaded)."""
        assert self.backend is not None and self.extern_data is not None
        dataset.init_seq_order(1)
        for batch in dataset.generate_batches(chunking=None, **self.batch_opts):
            signals.check()
            data = batch.to_data(self.extern_data)
            check_batch(dataset, data, self.extern_data, network_keys(self.network, targets=False),
                        class_keys(self.network, targets=False))
            out, lens = self.backend.forward_step(data, layer)
            yield out, lens, data
        dataset.finish_epoch()

    def forward(self) -> None:
        """Write the outputs of ``forward_output_layer`` on the ``eval`` (or ``forward_data``) set to ``output_file``."""
        key = "forward_data" if self.config.has("forward_data") else "eval"
        dataset = self.dataset(key)
        if dataset is None:
            raise ConfigError("task forward needs an 'eval' (or 'forward_data') dataset")
        output_file = self.config.value("output_file", None)
        if not output_file:
            raise ConfigError("task forward needs 'output_file'")
        self._load_for_inference(dataset)
        layer = self.config.value("forward_output_layer", "output")
        assert self.network is not None
        if layer not in self.network.layers:
            raise ConfigError(f"forward_output_layer {layer!r} is not in the network")
        fmt = self.config.value("output_file_format", None) or os.path.splitext(output_file)[1].lstrip(".") or "hdf"
        writer_cls = self.manager.output_writers.get("hdf" if fmt in ("hdf", "h5") else fmt)
        writer = None
        try:
            for out, lens, data in self.forward_batches(dataset, layer):
                if writer is None:
                    sparse = out.ndim == 2
                    dim = self.network[layer].n_out if sparse else out.shape[-1]
                    writer = writer_cls(output_file, dim=int(dim or 0), sparse=sparse)
                writer.write_batch(out, lens, data.tags)
        except BaseException as exc:
            if writer is not None:
                writer.abort()
            if is_disk_full(exc):
                raise disk_full(output_file, "the partial output is removed") from None
            raise
        if writer is None:
            raise TrainingError(f"forward: dataset {dataset.name} gave no seqs; nothing written")
        writer.close()
        self.log.v2(f"forward: wrote {output_file}")

    def compute_priors(self) -> None:
        """Average output posteriors over the ``train`` set; write their logs to ``output_file`` (one line)."""
        dataset = self.dataset("train")
        if dataset is None:
            raise ConfigError("task compute_priors needs a 'train' dataset")
        output_file = self.config.value("output_file", None) or self.config.value("prior_file", None)
        if not output_file:
            raise ConfigError("task compute_priors needs 'output_file'")
        self._load_for_inference(dataset)
        layer = self.config.value("forward_output_layer", "output")
        total, frames = None, 0
        for out, lens, _ in self.forward_batches(dataset, layer):
            mask = np.arange(out.shape[1])[None, :] < lens[:, None]
            s = out[mask].astype(np.float64).sum(axis=0)
            total = s if total is None else total + s
            frames += int(lens.sum())
        if total is None or frames == 0:
            raise TrainingError("compute_priors: the train dataset gave no frames")
        priors = np.log(np.maximum(total / frames, 1e-30))
        atomic_write_text(output_file, " ".join(f"{p:.8g}" for p in priors) + "\n")
        self.log.v2(f"compute_priors: wrote {output_file}")
