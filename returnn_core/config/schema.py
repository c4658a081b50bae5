"""Every config key the core, the first-party backends and the datasets read: kind, default, range, meaning.

:func:`validate_config` checks a whole config against it before any backend is imported; ``docs/config.md`` is
generated from it (``python -m returnn_core.config.schema > docs/config.md``).
"""

from __future__ import annotations

import difflib
import inspect
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from returnn_core.config.kinds import (
    AnyValue,
    Bool,
    Choice,
    Container,
    Dims,
    Invalid,
    Kind,
    Number,
    OneOf,
    Pattern,
    Text,
    WritablePath,
    literal,
)
from returnn_core.config.network_text import network_from_text
from returnn_core.errors import ConfigError
from returnn_core.network.pretrain import WrapEpochValue

TASKS = ("train", "eval", "forward", "search", "compute_priors", "nop")
SEARCH_OUTPUT_FORMATS = ("txt", "py")


@dataclass(frozen=True)
class Key:
    """One config key: its kind (type and range), RETURNN's default, the section of the docs and what it does."""

    name: str
    kind: Kind
    default: Any
    section: str
    doc: str


class _Registered(Choice):
    """A name from one of the plugin manager's registries (known once the plugins are loaded)."""

    def __init__(self, kind: str, what: str) -> None:
        super().__init__(what=what)
        self.kind = kind
        self.manager: Any = None

    def known(self) -> list[str]:
        return [] if self.manager is None else self.manager.registries[self.kind].names()

    def check(self, value: Any) -> None:
        if self.manager is None:
            Text().check(value)
            return
        if not isinstance(value, str):
            raise Invalid(self.allowed)
        self.manager.registries[self.kind].entry(value)  # an unknown name raises the registry's own error


class Dataset(Kind):
    """A dataset: ``{"class": ...}``, one of RETURNN's dataset strings, or a callable returning one."""

    allowed = "a dict with 'class', a dataset string ('Class:key=value,...', 'a.hdf,b.hdf', ...) or a callable"

    def check(self, value: Any) -> None:
        if not (isinstance(value, (str, Mapping)) or callable(value)):
            raise Invalid(self.allowed)


_INT_POS = Number(int, lo=1)
_DATASET = Dataset()
_PATH = WritablePath()

_KEYS: tuple[Key, ...] = (
    # -- the run ------------------------------------------------------------------------------------------
    Key("task", Choice(TASKS), "train", "run", "What to do: train, eval, forward, search, compute_priors, or nop (load the config only)."),
    Key("backend", _Registered("backends", "backend"), None, "run",
        "The backend plugin (tf, theano); unset: use_tensorflow decides, else theano (RETURNN's default)."),
    Key("use_tensorflow", Bool(), False, "run", "RETURNN's switch: True selects the tf backend, False theano."),
    Key("use_theano", Bool(), False, "run", "True selects the theano backend."),
    Key("device", Pattern(r"(?i)(cpu\d*|gpu(\d+|x)?)", "cpu, gpu, gpuN or gpuX"), None, "run",
        "Where to compute: cpu, gpu, gpu0, gpu1, ..., or RETURNN's gpuX (any GPU) (unset: the backend's choice)."),
    Key("model", _PATH, None, "run", "Checkpoint path prefix; epoch N is saved as `<model>.NNN`; a training run holds `<model>.lock`."),
    Key("load", Text("a checkpoint path prefix"), None, "run", "A checkpoint to load (instead of the newest one)."),
    Key("load_epoch", _INT_POS, None, "run", "Load the checkpoint of this epoch (train resumes after it)."),
    Key("import_model_train_epoch1", Text("a checkpoint path prefix"), None, "run",
        "Parameters to start training from when no checkpoint of this model exists."),
    Key("random_seed", Number(int), 42, "run", "Seed of parameter initialisation and random ops."),
    Key("prefer_plugins", OneOf(Text(), Container((list, tuple), "", Text()), allowed="a list of plugin names"), None,
        "run", "Plugins (short names or distributions) that win a name several plugins register."),
    # -- data ---------------------------------------------------------------------------------------------
    Key("train", _DATASET, None, "data", "The training dataset."),
    Key("dev", _DATASET, None, "data", "The development dataset, scored after each epoch."),
    Key("eval", _DATASET, None, "data", "A further dataset scored after each epoch (and by task eval/forward)."),
    Key("eval_datasets", Container((dict,), "a dict {name: dataset}", _DATASET), None, "data",
        "More datasets to score after each epoch, by name."),
    Key("forward_data", _DATASET, None, "data", "The dataset of task forward (default: eval)."),
    Key("search_data", _DATASET, "eval", "data", "The dataset of task search, or the name train, dev or eval."),
    Key("extern_data", Container((dict,), "a dict {key: {'dim': ..., 'sparse': ...}}"), None, "data",
        "The data keys of the network and their dims (overrides num_inputs/num_outputs)."),
    Key("num_inputs", _INT_POS, None, "data", "The dim of the input data 'data'."),
    Key("num_outputs", Dims(), None, "data",
        "The dim of 'classes', or {key: [dim, ndim]} for several streams (ndim 1: sparse, 2: dense)."),
    Key("window", _INT_POS, 1, "data", "Frames of context to concatenate around each input frame."),
    Key("batching", Text("a seq ordering ('default', 'sorted', 'random', 'laplace:N', ...)"), None, "data",
        "The train set's seq_ordering, unless the dataset sets its own."),
    Key("cache_size", AnyValue("a size ('1G', '512M', '0') or a list of two or three (train, dev, eval)"), None,
        "data", "HDF cache of the train, dev and eval sets (cache_byte_size); one size is shared evenly by the sets."),
    Key("batch_size", _INT_POS, 1, "data", "Upper limit of time * seqs of a mini-batch (padded frames)."),
    Key("max_seqs", Number(int, lo=1, special={-1: "no limit"}), -1, "data", "The most seqs in one mini-batch."),
    Key("max_seq_length", OneOf(Number(int, lo=0), Container((dict,), "", Number(int, lo=1)),
                                allowed="an int >= 0 (0: no limit) or a dict {key: int >= 1}"), None, "data",
        "Longer seqs are skipped when building batches."),
    Key("chunking", AnyValue("'size:step', a size, or per-key sizes {key: size}; 0: no chunking"), None, "data",
        "Cut train seqs into chunks of size frames every step frames (unset: each dataset's own chunking)."),
    # -- the network and training ---------------------------------------------------------------------------
    Key("network", Container((dict,), "a dict {layer name: layer dict}"), None, "network",
        "The layers: {name: {'class': ..., 'from': ..., 'n_out': ..., ...}}."),
    Key("hidden_size", AnyValue("layer sizes, e.g. 500,500 (or a list)"), None, "network",
        "RETURNN 2017's description without `network`: one hidden layer per size, `hidden_0`, ..., then a softmax `output`."),
    Key("hidden_type", AnyValue("layer classes, one for all or one per layer (e.g. forward,lstm)"), "forward", "network",
        "With hidden_size: the class of each hidden layer."),
    Key("hidden_name", AnyValue("layer names, one per layer ('_': the default hidden_N)"), None, "network",
        "With hidden_size: the names of the hidden layers."),
    Key("activation", AnyValue("activation names, one for all or one per layer"), None, "network",
        "With hidden_size: the activation of each hidden layer (required)."),
    Key("dropout", AnyValue("dropout rates, one per hidden layer and one for the output (the last repeats)"), 0.0,
        "network", "With hidden_size: dropout of each layer."),
    Key("L2_reg", Number(float, lo=0), 0.0, "network", "With hidden_size: L2 of every layer."),
    Key("L1_reg", Number(float, lo=0), 0.0, "network", "With hidden_size: L1 regularisation (not supported: 0 only)."),
    Key("bidirectional", Bool(), True, "network",
        "With hidden_size: recurrent hidden layers also run backwards (`<name>_fw`, `<name>_bw`)."),
    Key("truncation", Number(int), -1, "network", "With hidden_size: truncated BPTT of recurrent layers (-1 only)."),
    Key("sharpgates", Text(), "none", "network", "With hidden_size: the sharpgates option of LSTM layers that take it."),
    Key("loss", Text("a loss name"), "ce", "network", "With hidden_size: the loss of the output layer."),
    Key("pretrain", AnyValue("'default', True or a dict of repetitions, construction_algo, copy_output_layer, greedy, "
                             "output_layers, input_layers"), None, "training",
        "Layer-wise pretraining: the first epochs train growing networks (checkpoints `<model>.pretrain.NNN`), then "
        "the full one; num_epochs counts them all."),
    Key("pretrain_repetitions", AnyValue("an int, a list per step or a dict with 'default'/'final'/step index"), None,
        "training", "Epochs per pretrain construction step (the pretrain dict's repetitions wins)."),
    Key("pretrain_construction_algo", AnyValue("'from_output', 'from_input', 'no_network_modifications' or a "
                                               "function (idx, net_dict) -> net_dict or None"), "from_output",
        "training", "How the pretrain networks grow (the pretrain dict's construction_algo wins)."),
    Key("pretrain_copy_output_layer", AnyValue("True, False or 'ifpossible'"), "ifpossible", "training",
        "Whether the output layers' params carry over to the next pretrain network."),
    Key("pretrain_greedy", Bool(), False, "training",
        "In each pretrain epoch only the new layers and the output layers train."),
    Key("pretrain_learning_rate", Number(float, lo=0, lo_open=True), None, "training",
        "The constant learning rate of pretrain epochs (default: learning_rate)."),
    Key("use_learning_rate_control_always", Bool(), False, "training",
        "The learning-rate control also decides the rates of pretrain epochs and the first one after."),
    Key("num_epochs", _INT_POS, 5, "training", "Train up to this epoch."),
    Key("save_interval", _INT_POS, 1, "training", "Save a checkpoint every N epochs (and after the last)."),
    Key("use_last_best_model", AnyValue("True, or a dict of modulo, filter_score, only_last_n, min_score_dist, "
                                        "first_epoch"), None, "training",
        "Before each epoch, go back to a recent checkpoint that scored better than the last epoch by min_score_dist."),
    Key("learning_rate", Number(float, lo=0, lo_open=True), 1.0, "training", "The initial learning rate."),
    Key("learning_rates", OneOf(Container((list, tuple, dict), ""), Text(),
                                allowed="a list of rates per epoch or a dict {epoch: rate}"), None, "training", "Fixed learning rates for the first epochs."),
    Key("min_learning_rate", Number(float, lo=0), 0.0, "training", "The learning rate never falls below this."),
    Key("learning_rate_control", _Registered("lr_controls", "learning-rate control"), "constant", "training",
        "constant, newbob, newbob_rel, newbob_abs, newbob_multi_epoch, ..."),
    Key("learning_rate_control_error_measure", Text(), None, "training",
        "Which score drives newbob (e.g. dev_score)."),
    Key("learning_rate_control_relative_error_relative_lr", Bool(), False, "training",
        "Scale the relative error by the learning rate."),
    Key("learning_rate_control_min_num_epochs_per_new_lr", Number(int, lo=0), 0, "training",
        "Keep a new learning rate at least this many epochs."),
    Key("newbob_learning_rate_decay", Number(float, lo=0, lo_open=True), 0.5, "training",
        "Factor newbob multiplies the rate by."),
    Key("newbob_relative_error_threshold", Number(float), -0.01, "training", "newbob_rel: threshold."),
    Key("newbob_error_threshold", Number(float), -0.01, "training", "newbob_abs: threshold."),
    Key("newbob_multi_num_epochs", _INT_POS, 5, "training", "newbob_multi_epoch: epochs per decision."),
    Key("newbob_multi_update_interval", _INT_POS, None, "training",
        "newbob_multi_epoch: decide every N epochs (unset: newbob_multi_num_epochs)."),
    Key("learning_rate_file", _PATH, None, "training", "The learning-rate state file (RETURNN's format)."),
    Key("optimizer", OneOf(Container((dict,), ""), Text(), allowed="a dict {'class': name, ...} or a name"), None,
        "training", "The optimizer, e.g. {'class': 'adam'}."),
    Key("adam", Bool(), False, "training", "Legacy switch: use Adam."),
    Key("nadam", Bool(), False, "training", "Legacy switch: use Nadam."),
    Key("adadelta", Bool(), False, "training", "Legacy switch: use Adadelta."),
    Key("adagrad", Bool(), False, "training", "Legacy switch: use Adagrad."),
    Key("rmsprop", Bool(), False, "training", "Legacy switch: use RMSProp."),
    Key("momentum", OneOf(Bool(), Number(float, lo=0), allowed="a number >= 0 or a bool"), None, "training",
        "Legacy switch and value: selects SGD with momentum (True: 0.9)."),
    Key("optimizer_epsilon", Number(float, lo=0, lo_open=True), 1e-16, "training",
        "Epsilon of every optimizer that takes one (Adam, Nadam, Adadelta, Adagrad, RMSProp), unless given there."),
    Key("gradient_clip", Number(float, lo=0), None, "training", "Clip each gradient to [-x, x] (unset or 0: off)."),
    Key("gradient_clip_global_norm", Number(float, lo=0), None, "training", "Clip by global norm (unset or 0: off)."),
    Key("gradient_noise", Number(float, lo=0), None, "training", "Stddev of Gaussian noise added to gradients."),
    Key("accum_grad_multiple_step", _INT_POS, 1, "training", "Apply accumulated gradients every N steps."),
    Key("stop_on_nonfinite_train_score", Bool(), True, "training", "Stop the epoch at a NaN/inf loss."),
    # -- inference ---------------------------------------------------------------------------------------
    Key("output_file", Text("a path"), None, "inference", "Where task forward / compute_priors writes."),
    Key("output_file_format", Text("a registered output format (hdf, ...)"), None, "inference",
        "The format of task forward's output (default: from the file name, else hdf)."),
    Key("forward_output_layer", Text("a layer name"), "output", "inference", "The layer task forward writes."),
    Key("prior_file", Text("a path"), None, "inference", "compute_priors: the output file if output_file is unset."),
    Key("search_output_layer", Text("a layer name"), "output", "inference", "The layer task search decodes."),
    Key("search_output_file", Text("a path"), None, "inference", "Where task search writes its hypotheses."),
    Key("search_output_file_format", Choice(SEARCH_OUTPUT_FORMATS), "txt", "inference",
        "txt: one hypothesis per line; py: a dict literal by seq tag (with a beam: [(score, hyp), ...])."),
    Key("search_do_eval", Bool(), True, "inference",
        "Task search: log the label and seq error rates of the best hypotheses against the target."),
    # -- logging -----------------------------------------------------------------------------------------
    Key("log_verbosity", Number(int, lo=0, hi=5), 3, "logging", "What stdout gets: 0 (nothing) to 5 (debug)."),
    Key("log", OneOf(Text(), Container((list, tuple), "", Text()), allowed="a path or a list of paths"), [],
        "logging", "Log files."),
    Key("log_file_verbosity", Number(int, lo=0, hi=5), None, "logging",
        "The verbosity of the log files (unset: log_verbosity)."),
    Key("log_interval", Number(float, lo=0), 60, "logging",
        "Seconds between per-step lines in logs that are not a terminal (0: every step)."),
    # -- tf ----------------------------------------------------------------------------------------------
    Key("tf_log_dir", Text("a folder"), None, "tf", "TensorBoard folder (default: tensorboard/ next to model)."),
    Key("tf_intra_op_threads", Number(int, lo=0), 0, "tf", "TensorFlow's intra-op threads (0: its default)."),
    Key("tf_inter_op_threads", Number(int, lo=0), 0, "tf", "TensorFlow's inter-op threads (0: its default)."),
    Key("distributed", AnyValue(), None, "tf", "Ask for data-parallel training (run with returnn tf-distributed)."),
    Key("distributed_timeout", Number(float, lo=0, lo_open=True), None, "tf",
        "Seconds to wait for the other workers."),
    # -- sprint ------------------------------------------------------------------------------------------
    Key("sprint_trainer_exec_path", Text("a path"), None, "sprint", "The Sprint trainer of 'sprint:...' datasets."),
    Key("sprint_buffer_size", _INT_POS, 40, "sprint", "Seqs an external Sprint dataset buffers."),
    Key("sprint_reading_timeout", Number(float, lo=0, lo_open=True), 3600.0, "sprint",
        "Seconds to wait for a Sprint child before giving up."),
)

SCHEMA: dict[str, Key] = {k.name: k for k in _KEYS}
DATASET_KEYS = ("train", "dev", "eval", "forward_data", "search_data")


def _error(key: str, value: Any, allowed: str) -> ConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigError(f"config key {key!r}: {shown} is not allowed; expected {allowed}")


def plugin_keys(manager: Any) -> list[Key]:
    """The keys plugins declare through ``returnn_register_config_keys`` (the core's own keys win a name)."""
    if manager is None:
        return []
    out = []
    for entry in manager.config_keys:
        if entry.alias_of is None and entry.name not in SCHEMA:
            key = entry.resolve()
            if not isinstance(key, Key):
                raise ConfigError(f"plugin {entry.plugin}: config key {entry.name!r} must be registered as a "
                                  f"returnn_core.config.schema.Key, got {type(key).__name__}")
            out.append(key)
    return out


def validate_config(config: Any, manager: Any = None) -> None:
    """Check every set key of the schema and the plugins, the datasets' options and the network's dims; the first
    problem raises."""
    for spec in [*_KEYS, *plugin_keys(manager)]:
        if not config.has(spec.name):
            continue
        value = config.typed_value(spec.name)
        if value is None:
            continue
        kind = spec.kind
        if isinstance(kind, _Registered):
            kind.manager = manager
        try:
            kind.check(value)
        except Invalid as exc:
            raise _error(spec.name, value, str(exc)) from None
    if config.has("chunking"):
        from returnn_core.datasets.chunking import parse_chunking

        try:
            parse_chunking(literal(config.typed_value("chunking")))
        except ConfigError as exc:
            raise ConfigError(f"config key 'chunking': {exc}") from None
    _check_network(config)
    if manager is not None:
        datasets = [(k, config.typed_value(k)) for k in DATASET_KEYS if config.has(k)]
        extra = literal(config.typed_value("eval_datasets")) or {}
        datasets += [(f"eval_datasets[{n!r}]", v) for n, v in extra.items()]
        for key, value in datasets:
            if key == "search_data" and value in ("train", "dev", "eval"):
                continue  # the name of another dataset key
            if value not in (None, ""):
                check_dataset(key, value, manager, config)


def _check_network(config: Any) -> None:
    net = config.typed_value("network")
    if isinstance(net, str):
        net = network_from_text(net)  # the same reading the driver's build makes of a line-based network
    if isinstance(net, Mapping):
        _check_layers(net, "")


def _check_layers(layers: Mapping[str, Any], prefix: str) -> None:
    for name, layer in layers.items():
        if not isinstance(layer, Mapping):
            continue  # resolve_network names a layer that is not a dict
        where = f"network layer {prefix}{name!r}"
        for option in ("n_out", "beam_size"):
            v = layer.get(option)
            if isinstance(v, WrapEpochValue):
                continue  # its value per pretrain epoch is only known once the pretraining resolves it
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):  # layer options are typed
                raise ConfigError(f"{where}: {option} {v!r} is not allowed; expected an int >= 1")
        for sub in ("subnetwork", "unit"):
            if isinstance(layer.get(sub), Mapping) and all(isinstance(v, Mapping) for v in layer[sub].values()):
                _check_layers(layer[sub], f"{prefix}{name}/")


# -- datasets ----------------------------------------------------------------------------------------------
def dataset_options(cls: type) -> dict[str, inspect.Parameter] | None:
    """The keyword options ``cls`` takes, collected along the ``**kwargs`` chain of its bases; None: any."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return options
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        var_kw = False
        for i, (name, p) in enumerate(params.items()):
            if i == 0 or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif name not in options:
                options[name] = p
        if not var_kw:
            return options
    return options


def _annotation(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - an annotation we cannot evaluate is simply not checked
            continue
        if name in hints:
            return hints[name]
    return None


_SIMPLE = {int: "an int", float: "a number", str: "a string", bool: "a bool", list: "a list", dict: "a dict",
           tuple: "a tuple", type(None): "None"}


def _fits(value: Any, annotation: Any) -> str | None:
    """None if ``value`` fits the simple ``annotation`` (or it is not simple); else what is allowed."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (sys.version_info >= (3, 10) and isinstance(annotation, types.UnionType)):
        args = typing.get_args(annotation)
    else:
        args = (origin or annotation,)
    if not all(a in _SIMPLE or typing.get_origin(a) in _SIMPLE for a in args):
        return None
    plain = [typing.get_origin(a) or a for a in args]
    if value is None:
        return None  # None stands for "not set" in RETURNN's options; the class decides
    for t in plain:
        if t is bool and (isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))):
            return None
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return None
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        if t not in (int, float, bool) and isinstance(value, t):
            return None
    if float in plain and int in plain:
        plain.remove(int)
    return " or ".join(_SIMPLE[t] for t in plain)


def check_dataset(key: str, value: Any, manager: Any, config: Any = None) -> None:
    """The dataset ``value`` of config key ``key``: its class is registered, its options exist and fit their types."""
    from returnn_core.datasets.factory import parse_dataset_str

    if callable(value) and not isinstance(value, (str, Mapping)):
        return  # built when the task needs it
    if isinstance(value, str):
        try:
            value = parse_dataset_str(value, config=config)
        except ConfigError as exc:
            raise ConfigError(f"config key {key!r}: {exc}") from None
    if not isinstance(value, Mapping):
        raise _error(key, value, Dataset.allowed)
    opts = dict(value)
    name = opts.pop("class", None)
    if isinstance(name, type):  # a Python config may give the class itself
        cls, name = name, name.__name__
    elif not isinstance(name, str) or not name:
        raise ConfigError(f"config key {key!r}: the dataset has no 'class' (a registered dataset class name or a "
                          "Dataset class)")
    else:
        cls = manager.datasets.get(name)
    if not isinstance(cls, type):
        return
    known = dataset_options(cls)
    if known is None:
        return
    for option, v in opts.items():
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"config key {key!r}: unknown option {option!r} for {name}{hint}; its options: {', '.join(sorted(known))}"
            )
        annotation = _annotation(cls, option)
        allowed = _fits(v, annotation) if annotation is not None else None
        if allowed is not None:
            raise ConfigError(f"config key {key!r}: {name} option {option!r}: {v!r} is not allowed; expected {allowed}")


# -- keys nothing reads --------------------------------------------------------------------------------------
def unread_keys(config: Any, known: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """Set keys that neither the schema, ``known`` (plugin keys), any reader nor the config's own code uses,
    each with its closest known key."""
    names = set(SCHEMA) | set(known) | config.read_keys()
    out = []
    for key in config.keys():
        if key in names or key in config.helper_names():
            continue
        close = difflib.get_close_matches(key, sorted(names), n=1)
        out.append((key, close[0] if close else None))
    return out


#: RETURNN keys that configs of its time set and that nothing here reads, with what that means for the run
RETURNN_KEYS_WITHOUT_EFFECT = {
    **dict.fromkeys(
        ("debug_print_layer_output_template", "debug_print_layer_output_shape", "debug_add_check_numerics_ops",
         "debug_add_check_numerics_on_output", "debug_grad_summaries", "debug_objective_loss_summaries",
         "tf_log_memory_usage", "store_metadata_mod_step"),
        "a RETURNN debugging option without effect here (training is the same)"),
    **dict.fromkeys(("tf_session_opts", "multiprocessing", "cleanup_old_models"),
                    "a RETURNN option without effect here (training is the same; every checkpoint is kept)"),
}


def warn_unread_keys(config: Any, log: Any, manager: Any = None) -> None:
    """One log line per key that nothing reads (not the schema's, a plugin's or any reader's), with a close match;
    RETURNN keys that have no effect here say so instead."""
    known = manager.config_keys.names() if manager is not None else ()
    for key, close in unread_keys(config, known):
        if key in RETURNN_KEYS_WITHOUT_EFFECT:
            log.v1(f"warning: {key}: {RETURNN_KEYS_WITHOUT_EFFECT[key]}")
            continue
        hint = f"; did you mean {close}?" if close else ""
        log.v1(f"warning: {key}: not a known key{hint}")


# -- docs ------------------------------------------------------------------------------------------------
_SECTIONS = {"run": "The run", "data": "Data and batches", "network": "Network", "training": "Training",
             "inference": "Forward, search, priors", "logging": "Logging", "tf": "TensorFlow backend (returnn-tf)",
             "sprint": "Sprint (returnn-sprint)"}


def render_markdown() -> str:
    """``docs/config.md``: every key with its kind, default and meaning, by section."""
    lines = [
        "# Config keys",
        "",
        "Generated from `returnn_core/config/schema.py` (`python -m returnn_core.config.schema > docs/config.md`).",
        "`returnn` checks every key below before it imports a backend: a value outside what is allowed stops the",
        "run with one line naming the key, the value and what is allowed. Dataset options are checked against the",
        "dataset class's signature. After the network is built, each key that nothing reads gets one warning line",
        "with the closest known key (a Python config's own helper variables, functions and modules are exempt).",
        "Plugins declare the keys they read with `returnn_register_config_keys` (see docs/plugins.md); those are",
        "checked the same way and listed by `returnn --list-plugins` under `config_keys`.",
    ]
    for section, title in _SECTIONS.items():
        lines += ["", f"## {title}", "", "| key | allowed | default | meaning |", "| --- | --- | --- | --- |"]
        for k in _KEYS:
            if k.section == section:
                default = "" if k.default is None else f"`{k.default!r}`"
                lines.append(f"| `{k.name}` | {k.kind.allowed} | {default} | {k.doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
