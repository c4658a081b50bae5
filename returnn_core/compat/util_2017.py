"""The functions of RETURNN's 2017 ``Util`` module that configs of that era call (``from Util import ...``)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from returnn_core.compat import missing_name

__all__ = ["get_login_username"]


def get_login_username() -> str:
    """The user name of the current process (as RETURNN's: works without a terminal, unlike ``os.getlogin``)."""
    try:
        return getpass.getuser()
    except (ImportError, KeyError, OSError):  # no name in the environment and a uid without a passwd entry
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


def __getattr__(name: str) -> Any:
    return missing_name("Util", name, __all__)
