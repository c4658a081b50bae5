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
    with pytest.raises(ConfigError, match=r"\+\+num_epochs 'many' does not fit the config's int value: expected int$"):
        Config.from_args([path, "++num_epochs", "many"])
    with pytest.raises(ConfigError, match=r"\+\+adam 'maybe' does not fit the config's bool value: expected bool$"):
        Config.from_args([path, "++adam", "maybe"])
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


# -- RETURNN's own Config semantics (expected values from RETURNN's tests/test_Config.py) -----------------------------

def check_hidden_type(c: Config) -> None:
    assert c.has("num_inputs") and c.has("hidden_type") and c.int("num_inputs", -1) == 3
    assert c.value("hidden_type", "x") == "forward,lstm"
    assert c.value("hidden_type", "x", index=0) == "forward" and c.value("hidden_type", "x", index=1) == "lstm"
    assert c.list("hidden_type", ["x"]) == ["forward", "lstm"]


def test_line_format_values_are_untyped_text(tmp_path):
    c = Config.from_args([write(tmp_path, "a.config", "\n  # comment\n  num_inputs 3\n  hidden_type forward,lstm\n")])
    check_hidden_type(c)
    assert not c.is_typed("num_inputs") and not c.is_typed("hidden_type")
    with pytest.raises(ConfigError, match=r"'hidden_type': no item 2 in \['forward', 'lstm'\]"):
        c.value("hidden_type", "x", index=2)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.json", '\n{\n// comment\n"num_inputs": 3, /* block\n comment */ "hidden_type": ["forward", "lstm"],\n'
                   '"url": "http://x//y"\n}\n'),
        ("a.config", '#!rnn.py\n# comment\nnum_inputs = 3\nhidden_type = ["forward", "lstm"]\nurl = "http://x//y"\n'),
    ],
)
def test_json_and_python_values_are_typed(tmp_path, name, text):
    c = Config.from_args([write(tmp_path, name, text)])
    check_hidden_type(c)
    assert c.is_typed("num_inputs") and c.is_typed("hidden_type")
    assert c.typed_value("num_inputs") == 3 and c.typed_value("hidden_type") == ["forward", "lstm"]
    assert c.value("url") == "http://x//y"  # a // inside a JSON string is no comment


def test_json_comment_keeps_error_line(tmp_path):
    with pytest.raises(ConfigError, match=r"j.json:3: invalid JSON"):
        Config.from_args([write(tmp_path, "j.json", '{\n// "a": 1,\n "b": }\n')])


def test_python_config_sees_config_and_command_line_first(tmp_path):
    path = write(tmp_path, "a.config", '#!rnn.py\ntask = config.value("task", "train")\ndim = config.int("dim", 500)\n'
                 "test_value = 42\ndef test_func():\n  return task\n")
    c = Config.from_args([path, "++task", "search", "++dim", "20", "++extra", "5"])
    assert c.value("task") == "search" and c.is_typed("task") and c.typed_value("dim") == 20
    assert not c.is_typed("extra") and c.int("extra") == 5  # set only on the command line: untyped, as RETURNN
    assert c.typed_value("test_value") == 42 and c.typed_value("test_func")() == "search"
    assert not c.has("config")


def test_override_of_dict_by_number_is_seen_by_config_functions(tmp_path):
    path = write(tmp_path, "a.config", "#!rnn.py\nmax_seq_length = {'bpe': 75}\ndef test_func():\n"
                 "  return max_seq_length\n")
    c = Config.from_args([path, "++max_seq_length", "0"])
    assert c.is_typed("max_seq_length") and c.typed_value("test_func")() == 0 and c.typed_value("max_seq_length") == 0


def test_py_file_without_hashbang_is_python(tmp_path):
    path = write(tmp_path, "cfg.py", 'def test_func():\n  return config.value("task", "train")\n')
    c = Config.from_args([path])
    func = c.typed_value("test_func")
    assert c.is_typed("test_func") and func() == "train"
    c.set("task", "search")
    assert func() == "search"


def test_line_format_value_spanning_lines(tmp_path):
    path = write(tmp_path, "a.config", 'task train\nnetwork {\n  "output": {"class": "softmax",  # the output\n'
                 '             "loss": "ce", "from": ["data"]}\n}\nnum_epochs 2\n')
    c = Config.from_args([path])
    assert c.dict("network") == {"output": {"class": "softmax", "loss": "ce", "from": ["data"]}}
    assert c.int("num_epochs") == 2 and c.value("task") == "train"
    bad = write(tmp_path, "b.config", 'a 1\nnetwork {"output": {"class": "softmax"}\nb 2\n')
    with pytest.raises(ConfigError, match=r"b.config:2: the value of 'network' is never closed \(missing '}'\)"):
        Config.from_args([bad])


def test_overrides_over_dicts_and_lists_parse_returnn_literals(tmp_path):
    path = write(tmp_path, "a.config", "#!python\nnet = {'a': 1}\nlayers = [1]\nthreshold = 0.5\n")
    c = Config.from_args([path, "++layers", "[1, 2 * 3, -4]", "++net", "{'a': 2 ** 3}", "++threshold", "+-0.1"])
    assert c.typed_value("layers") == [1, 6, -4] and c.typed_value("net") == {"a": 8}
    assert c.typed_value("threshold") == -0.1
    for text, named in [("{'a': foo}", "'foo' is not a literal"), ("[1, 2", "is not valid Python"),
                        ("{'a': 1 + 'x'}", "arithmetic needs numbers"), ("{'a': __import__('os')}", "__import__")]:
        with pytest.raises(ConfigError, match=r"\+\+net .* does not fit the config's dict value") as info:
            Config.from_args([path, "++net", text])
        assert named in str(info.value) and "<" not in str(info.value) and "ast" not in str(info.value)


def test_index_getters_follow_returnn():
    c = Config({"sizes": [3, 4], "one": 5})
    assert c.int("sizes") == 3 and c.int("sizes", index=1) == 4 and c.typed_value("sizes", index=1) == 4
    assert c.value("one", index=0) == "5" and c.list("one") == [5] and c.list("missing") == []
    assert c.int_list("sizes") == [3, 4] and c.float_list("sizes") == [3.0, 4.0]


def test_manual_getters(tmp_path):
    c = Config.from_args([write(tmp_path, "a.config", "chunking 200:100\nwindow 5\nflag yes\nmode fast\nzero 0\n")])
    c.set("net", {"a": 1})
    c.set("empty", [])
    assert c.int_pair("chunking") == (200, 100) and c.int_pair("window") == (5, 5) and c.int_pair("no") == (0, 0)
    assert c.bool_or_other("flag") is True and c.bool_or_other("mode") == "fast" and c.bool_or_other("net") == {"a": 1}
    assert c.is_of_type("net", dict) and not c.is_of_type("window", str) and c.get_of_type("net", list, 7) == 7
    assert c.is_true("flag") and not c.is_true("zero") and not c.is_true("empty") and c.is_true("missing", True)
    c.set("hidden", ["a", "b"])
    assert c.value("hidden", list_join_str=" ") == "a b"
    with pytest.raises(ConfigError, match="'mode': expected int, got 'fast'"):
        c.int_pair("mode")
