"""The config schema: values checked before any backend loads, dataset options against signatures, unread keys,
the first batch against the network, and docs/config.md generated from the schema."""

from __future__ import annotations

import io
import pathlib

import pytest
from test_driver import make_config

from returnn_core.config import Config
from returnn_core.config.kinds import Number
from returnn_core.config.schema import SCHEMA, Key, render_markdown, unread_keys, validate_config
from returnn_core.engine import Engine
from returnn_core.errors import ConfigError, DatasetError, ReturnnError
from returnn_core.log import Log
from returnn_core.plugin import hookimpl

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "key, text, allowed",
    [
        ("num_epochs", "0", "an int >= 1"),
        ("num_epochs", "-1", "an int >= 1"),
        ("num_epochs", "2.5", "an int >= 1"),
        ("learning_rate", "-1", "a number > 0"),
        ("learning_rate", "abc", "a number > 0"),
        ("batch_size", "0", "an int >= 1"),
        ("batch_size", "-3", "an int >= 1"),
        ("max_seqs", "0", "-1 (no limit)"),
        ("task", "trian", "one of train, eval, forward, search, compute_priors"),
        ("log_verbosity", "6", "an int from 0 to 5"),
        ("num_outputs", "0", "a dim >= 1"),
        ("search_output_file_format", "csv", "one of txt, py"),
        ("device", "tpu", "cpu, gpu, gpuN or gpuX"),
        ("save_interval", "0", "an int >= 1"),
        ("stop_on_nonfinite_train_score", "maybe", "a bool"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(key, text, allowed, manager):
    config = Config()
    config.override(key, text)  # untyped text, as from a line-based config or ++
    with pytest.raises(ConfigError) as info:
        validate_config(config, manager)
    message = str(info.value)
    assert message.startswith(f"config key {key!r}: ") and repr(config.typed_value(key)) in message
    assert allowed in message and "\n" not in message


def test_typed_values_are_checked_too(manager):
    for key, value in [("num_epochs", True), ("batch_size", "5000"), ("max_seqs", 1.5), ("network", [1])]:
        config = Config({key: value})
        if key == "batch_size":
            validate_config(config, manager)  # "5000" is a number written as text: RETURNN reads it
            continue
        with pytest.raises(ConfigError, match=f"config key {key!r}"):
            validate_config(config, manager)


def test_good_config_passes_and_the_registries_decide_names(tmp_path, manager):
    config = make_config(tmp_path)
    validate_config(config, manager)
    config.set("learning_rate_control", "newbob_typo")
    with pytest.raises(ReturnnError, match="newbob_typo"):
        validate_config(config, manager)


@pytest.mark.parametrize("device", ["cpu", "gpu", "gpu1", "gpuX", "cpu127"])
def test_returnn_device_names_pass(tmp_path, manager, device):
    validate_config(make_config(tmp_path, device=device), manager)  # gpuX: RETURNN's "any GPU"


def test_unwritable_model_folder_is_found_before_training(tmp_path, manager):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = make_config(tmp_path, model=str(blocker / "sub" / "model"))
    with pytest.raises(ConfigError, match=r"config key 'model': .* is a file"):
        validate_config(config, manager)


def test_dataset_options_against_the_class_signature(tmp_path, manager):
    config = make_config(tmp_path, train={"class": "ToyDataset", "num_seq": 3})
    with pytest.raises(ConfigError, match=r"unknown option 'num_seq' for ToyDataset \(did you mean 'num_seqs'\?\); its "
                                          r"options: .*partition_epoch.*seq_len"):
        validate_config(config, manager)
    config = make_config(tmp_path, dev="ToyDataset:num_seqs='many'")
    with pytest.raises(ConfigError, match=r"'dev': ToyDataset option 'num_seqs': 'many' is not allowed; expected an int"):
        validate_config(config, manager)
    validate_config(make_config(tmp_path, train={"class": "ToyDataset", "seq_len": None, "sleep_per_seq": 0}), manager)
    from toy_plugin import ToyDataset

    with pytest.raises(ConfigError, match="unknown option 'bogus' for ToyDataset"):  # the class itself, in Python
        validate_config(make_config(tmp_path, train={"class": ToyDataset, "bogus": 1}), manager)
    config = make_config(tmp_path, train={"class": "NoSuchDataset"})
    with pytest.raises(ReturnnError, match="NoSuchDataset"):
        validate_config(config, manager)


def test_layer_dims_are_checked(tmp_path, manager):
    config = make_config(tmp_path, network={"output": {"class": "softmax", "loss": "ce", "n_out": 0}})
    with pytest.raises(ConfigError, match=r"network layer 'output': n_out 0 is not allowed; expected an int >= 1"):
        validate_config(config, manager)


def test_unread_keys_get_a_close_match_but_python_helpers_do_not(tmp_path):
    cfg = tmp_path / "a.config"
    cfg.write_text(
        "#!python\nimport os\ndim = 2\ndef make(n):\n    return n\n"
        "network = {'output': {'class': 'softmax', 'n_out': make(dim)}}\nnum_epoch = 3\n"
    )
    config = Config.from_args([str(cfg), "++batch_sise", "10", "++layer_dim", "4"])
    config.int("layer_dim", 1)  # read by someone: not reported
    assert dict(unread_keys(config)) == {"num_epoch": "num_epochs", "batch_sise": "batch_size"}
    assert dict(unread_keys(config, known=["num_epoch"])) == {"batch_sise": "batch_size"}


def test_engine_warns_once_per_unread_key_after_the_network_is_built(tmp_path, manager):
    out = io.StringIO()
    config = make_config(tmp_path, num_epochs=1)
    config.set("num_epoch", 4)
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    lines = [line for line in out.getvalue().splitlines() if "not a known key" in line]
    assert lines == ["warning: num_epoch: not a known key; did you mean num_epochs?"]


def test_returnn_keys_without_effect_say_so(tmp_path, manager):
    out = io.StringIO()
    config = make_config(tmp_path, num_epochs=1)
    config.set("debug_print_layer_output_template", True)
    config.set("cleanup_old_models", True)
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("warning: ")]
    assert lines == [
        "warning: debug_print_layer_output_template: a RETURNN debugging option without effect here "
        "(training is the same)",
        "warning: cleanup_old_models: a RETURNN option without effect here (training is the same; every checkpoint "
        "is kept)",
    ]


def test_first_batch_against_the_network(tmp_path, manager):
    config = make_config(tmp_path, num_outputs=3, num_epochs=1, network={"output": {"class": "softmax", "loss": "ce"}})
    with pytest.raises(DatasetError, match=r"dataset ToyDataset: data 'classes' is sparse with 2 classes, but the config "
                                           r"says sparse with 3 classes"):
        Engine(config, manager=manager, log=Log(verbosity=0)).run()
    from toy_plugin import ToyDataset

    from returnn_core.datasets import DataSpec

    class OneClassToy(ToyDataset):
        """Declares one class but delivers two, as an HDF file whose numLabels is too small."""

        def data_specs(self):
            return {"data": DataSpec(2), "classes": DataSpec(1, sparse=True)}

    manager.datasets.register("OneClassToy", OneClassToy)
    config = make_config(tmp_path, train={"class": "OneClassToy", "num_seqs": 30}, dev=None,
                         network={"output": {"class": "softmax", "loss": "ce"}})
    with pytest.raises(DatasetError, match=r"^dataset OneClassToy: seq '.*': class 1 of data 'classes' at frame \d+ "
                                           r"is outside 0..0 \(classes has dim 1\)"):
        Engine(config, manager=manager, log=Log(verbosity=0)).run()


def test_docs_config_md_is_generated_from_the_schema():
    assert (ROOT / "docs" / "config.md").read_text() == render_markdown()
    for name in ("num_epochs", "search_output_layer", "log_interval", "learning_rate_file"):
        assert f"| `{name}` |" in render_markdown()
    assert SCHEMA["max_seqs"].default == -1 and SCHEMA["num_epochs"].default == 5


def test_a_data_key_the_network_reads_but_the_dataset_lacks(tmp_path, manager):
    extern = {"data": {"dim": 2}, "classes": {"dim": 2, "sparse": True}, "extra": {"dim": 3}}
    network = {"output": {"class": "softmax", "loss": "ce", "n_out": 2, "from": "data:extra"}}
    config = make_config(tmp_path, extern_data=extern, network=network)
    with pytest.raises(DatasetError, match=r"^dataset ToyDataset has no data 'extra', which the network reads; it has: "
                                           r"classes, data$"):
        Engine(config, manager=manager, log=Log(verbosity=0)).run()


def test_plugin_declared_keys_are_checked_and_never_reported_unread(tmp_path, manager):
    class KeysPlugin:
        @hookimpl
        def returnn_register_config_keys(self, registry):
            registry.register("toy_threshold", Key("toy_threshold", Number(float, lo=0), 0.5, "toy", "A threshold."))

    manager.register(KeysPlugin(), "keys", distribution="returnn-keys")
    assert manager.plugins["keys"].provides == {"config_keys": ["toy_threshold"]}
    with pytest.raises(ConfigError, match=r"^config key 'toy_threshold': -1 is not allowed; expected a number >= 0$"):
        validate_config(make_config(tmp_path, toy_threshold=-1), manager)
    config = make_config(tmp_path, toy_threshold=0.1, num_epochs=1, toy_treshold=2)
    validate_config(config, manager)
    out = io.StringIO()
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    assert [line for line in out.getvalue().splitlines() if "not a known key" in line] == [
        "warning: toy_treshold: not a known key; did you mean toy_threshold?"
    ]


def test_window_widens_the_input_the_network_and_the_first_batch_check_see(tmp_path, manager):
    config = make_config(tmp_path, num_epochs=1, dev=None, train={"class": "ToyDataset", "num_seqs": 10, "window": 3})
    engine = Engine(config, manager=manager, log=Log(verbosity=0))
    engine.run()
    assert engine.extern_data["data"].dim == 6 and engine.backend.params["output/W"].shape == (6, 2)
