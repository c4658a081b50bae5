"""RETURNN's own config expectations (its tests/test_Config.py): the three formats, typed and untyped values,
command-line overrides seen by the config's own code."""

from __future__ import annotations

import pytest

from returnn_core.config import Config


def load(tmp_path, text: str, name: str = "x.config") -> Config:
    path = tmp_path / name
    path.write_text(text)
    config = Config()
    config.load_file(str(path))
    return config


FORMATS = {
    "lines": ("\n  # comment\n  num_inputs 3\n  hidden_type forward,lstm\n  ", False),
    "json": ('\n  {\n  // comment\n  "num_inputs": 3,\n  "hidden_type": ["forward", "lstm"]\n  }\n  ', True),
    "python": ('#!rnn.py\n# comment\nnum_inputs = 3\nhidden_type = ["forward", "lstm"]\n  ', True),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_formats_read_alike(tmp_path, fmt: str) -> None:
    text, typed = FORMATS[fmt]
    config = load(tmp_path, text)
    assert config.has("num_inputs") and config.has("hidden_type")
    assert config.int("num_inputs", -1) == 3
    assert config.value("hidden_type", "x") == "forward,lstm"
    assert config.value("hidden_type", "x", index=0) == "forward"
    assert config.value("hidden_type", "x", index=1) == "lstm"
    assert config.list("hidden_type", ["x"]) == ["forward", "lstm"]
    assert config.is_typed("num_inputs") is typed and config.is_typed("hidden_type") is typed
    if typed:
        assert config.typed_value("num_inputs") == 3 and config.typed_value("hidden_type") == ["forward", "lstm"]


@pytest.mark.parametrize("option", [["--task", "search"], ["-x", "search"], ["--task=search"], ["++task", "search"]])
def test_command_line_task_seen_by_config_code(tmp_path, option: list[str]) -> None:
    path = tmp_path / "c.config"
    path.write_text('#!rnn.py\ntask = config.value("task", "train")\n\ntest_value = 42\n\n'
                    "def test_func():\n  return task\n")
    config = Config.from_args([str(path), *option])
    assert config.value("task", None) == "search"
    assert config.is_typed("test_value") and config.typed_value("test_value") == 42
    assert config.is_typed("task") and config.is_typed("test_func")
    assert config.typed_value("test_func")() == "search"


def test_override_replaces_a_dict_value(tmp_path) -> None:
    path = tmp_path / "c.config"
    path.write_text("#!rnn.py\nmax_seq_length = {'bpe': 75}\n\ndef test_func():\n  return max_seq_length\n")
    config = Config.from_args([str(path), "++max_seq_length", "0"])
    assert config.is_typed("max_seq_length")
    assert config.typed_value("test_func")() == 0


def test_py_suffix_is_python_and_functions_see_later_sets(tmp_path) -> None:
    config = load(tmp_path, '\ndef test_func():\n  return config.value("task", "train")\n', "c.py")
    func = config.typed_value("test_func")
    assert func() == "train"
    config.set("task", "search")
    assert func() == "search"


def test_unknown_command_line_option_names_the_known_ones(tmp_path) -> None:
    from returnn_core.errors import ConfigError

    path = tmp_path / "c.config"
    path.write_text("#!rnn.py\n")
    with pytest.raises(ConfigError, match=r"unknown option '--bogus'.*--task"):
        Config.from_args([str(path), "--bogus", "1"])
