"""Writing a Python config file for a test and loading it as ``returnn CONFIG`` does."""

from __future__ import annotations

import pathlib

from returnn_core.config import Config


def load_python_config(tmp_path: pathlib.Path, text: str) -> Config:
    """``text`` as the body of a ``#!rnn.py`` config file in ``tmp_path``, loaded."""
    path = tmp_path / "setup.config"
    path.write_text("#!rnn.py\n" + text)
    config = Config()
    config.load_file(str(path))
    return config
