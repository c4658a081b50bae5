"""Config files in the three formats, includes, ++ overrides and typed getters."""

from __future__ import annotations

import pytest

from returnn_core.config import Config, ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_python_config(tmp_path):
    path = write(tmp_path, "a.config", "#!rnn.py\nimport os\nnum_epochs = 3\nlearning_rate = 0.01\n"
                 "network = {'output': {'class': 'softmax', 'loss': 'ce'}}\ndef f(): return 1\n_private = 5\n")
    c = Config.from_args([path])
    assert c.int("num_epochs") == 3 and c.float("learning_rate") == 0.01
    assert c.typed_value("network")["output"]["loss"] == "ce"
    assert callable(c.typed_value("f")) and not c.has("_private") and not c.has("os")


def test_json_config(tmp_path):
    path = write(tmp_path, "a.json", '{"num_epochs": 4, "adam": true, "log": ["a.log", "b.log"]}')
    c = Config.from_args([path])
    assert c.int("num_epochs") == 4 and c.bool("adam") is True and c.list("log") == ["a.log", "b.log"]


def test_line_config_with_include(tmp_path):
    write(tmp_path, "base.config", "batch_size 5000\nlearning_rate 0.1\n")
    path = write(tmp_path, "main.config", "# comment\ninclude base.config\nlearning_rate 0.01  # override\n"
                 "task train\nadam true\nfiles a.hdf,b.hdf\n")
    c = Config.from_args([path])
    assert c.int("batch_size") == 5000 and c.float("learning_rate") == 0.01
    assert c.value("task") == "train" and c.bool("adam") is True and c.list("files") == ["a.hdf", "b.hdf"]


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path, "x.config", "include y.config\n")
    path = write(tmp_path, "y.config", "include x.config\n")
    with pytest.raises(ConfigError, match="include cycle"):
        Config.from_args([path])


def test_overrides_keep_the_type_of_the_existing_value(tmp_path):
    path = write(tmp_path, "a.config", "#!python\nnum_epochs = 3\nlearning_rate = 0.5\nadam = False\n"
                 "name = 'x'\nlayers = [1, 2]\n")
    c = Config.from_args([path, "++num_epochs", "7", "++learning_rate", "1e-3", "++adam", "true",
                          "++name", "123", "++layers", "[3]", "++new_key", "{'a': 1}"])
    assert c.typed_value("num_epochs") == 7 and c.typed_value("learning_rate") == 0.001
    assert c.typed_value("adam") is True and c.typed_value("name") == "123" and c.typed_value("layers") == [3]
    assert c.typed_value("new_key") == {"a": 1}
    with pytest.raises(ConfigError, match=r"\+\+num_epochs 'many' does not fit the config's int"):
        Config.from_args([path, "++num_epochs", "many"])
    with pytest.raises(ConfigError, match="needs a value"):
        Config.from_args([path, "++num_epochs"])


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("p.config", "#!python\nx = 1\ny = (\n", r"p.config:3: syntax error"),
        ("r.config", "#!python\nx = 1\ny = undefined_name + 1\n", r"r.config:3: NameError"),
        ("j.config", '{"a": 1,\n "b": }\n', r"j.config:2: invalid JSON"),
        ("l.config", "a 1\n!!! 2\n", r"l.config:2: expected 'key value'"),
    ],
)
def test_syntax_errors_name_file_and_line(tmp_path, name, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Config.from_args([write(tmp_path, name, text)])


def test_typed_getters_reject_bad_values():
    c = Config({"a": "abc", "b": "maybe", "d": "{'x': 1}"})
    with pytest.raises(ConfigError, match="'a': expected int"):
        c.int("a")
    with pytest.raises(ConfigError, match="'b': expected a bool"):
        c.bool("b")
    assert c.dict("d") == {"x": 1} and c.int("missing", 5) == 5


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config file /no/such.config"):
        Config.from_args(["/no/such.config"])
