"""RETURNN's 2017 top-level modules (``Util``, ``TFUtil``, ...) as configs of that era import them.

While a Python config executes, :func:`legacy_modules` lets ``from Util import get_login_username`` and
``from Pretrain import WrapEpochValue`` (later ``from returnn.pretrain import ...``) find the few names provided here
(:mod:`returnn_core.compat.util_2017`, :mod:`returnn_core.compat.pretrain_2017`); the other 2017 modules and names
give an ``ImportError`` that names them and says what to do instead. A real module of the same name on ``sys.path``
wins.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

#: 2017 module name -> the compat module that provides some of its functions
PROVIDED = {"Util": "returnn_core.compat.util_2017", "Pretrain": "returnn_core.compat.pretrain_2017",
            "returnn.pretrain": "returnn_core.compat.pretrain_2017"}
#: later RETURNN's package: only a parent of the provided ``returnn.*`` names
PACKAGE = "returnn"
#: the manual's other top-level modules -> what a config should do instead
NOT_PROVIDED = {
    **dict.fromkeys(("TFUtil", "TFNetwork", "TFNetworkLayer", "TFNetworkRecLayer", "TFEngine", "TFUpdater",
                     "TFNativeOp", "TFSprint"),
                    "its helpers work on RETURNN 1.0's TensorFlow 1 graph objects; write the expression with "
                    "tf directly (e.g. in an eval layer) or as a layer plugin"),
    **dict.fromkeys(("TheanoUtil", "NetworkLayer", "NetworkHiddenLayer", "NetworkLstmLayer",
                     "NetworkRecurrentLayer", "NetworkCtcLayer", "NetworkTwoDLayer", "Device", "OpLSTMCustom",
                     "OpLSTMRec", "RecurrentTransform", "MultiBatchBeam", "CustomLSTMFunctions", "NativeOp",
                     "ActivationFunctions", "FunctionLoader"),
                    "its helpers work on Theano graph objects; use the layer classes by name in the network"),
    **dict.fromkeys(("Config", "Dataset", "GeneratingDataset", "LearningRateControl", "EngineUtil",
                     "Engine", "Log", "rnn", "Debug", "DebugHelpers", "TaskSystem", "SprintCache",
                     "SprintDataset", "SprintInterface", "SprintExternInterface", "SprintControl",
                     "SprintErrorSignals", "Fsa", "better_exchook", "better_exhook", "NetworkCopyUtils"),
                    "the config gets 'config' as a global; other parts are reached through config keys "
                    "(datasets, learning-rate control) or returnn_core's and the plugins' own modules"),
}


class _Alias(importlib.abc.Loader):
    """Loads a 2017 module name as the compat module that provides it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the compat module is imported already."""


class _Package(importlib.abc.Loader):
    """An empty package (Python's default module) whose provided submodules the finder supplies."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the package has no code of its own."""


class _LegacyFinder(importlib.abc.MetaPathFinder):
    """Finds 2017 module names after every other finder had its turn."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname in PROVIDED:
            return importlib.machinery.ModuleSpec(fullname, _Alias(PROVIDED[fullname]))
        if fullname == PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, _Package(), is_package=True)
        if fullname.startswith(PACKAGE + "."):
            provided = ", ".join(n for n in PROVIDED if n.startswith(PACKAGE + "."))
            raise ImportError(f"the config imports {fullname!r} of RETURNN's later package, which this RETURNN does "
                              f"not provide (of it only {provided}); reach the rest through config keys", name=fullname)
        if fullname in NOT_PROVIDED:
            raise ImportError(f"the config imports RETURNN's 2017 module {fullname!r}, which this RETURNN does not "
                              f"provide: {NOT_PROVIDED[fullname]}", name=fullname)
        return None


@contextmanager
def legacy_modules() -> Iterator[None]:
    """2017 module names importable (or refused with a clear error) inside the block."""
    finder = _LegacyFinder()
    sys.meta_path.append(finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def missing_name(module: str, name: str, provided: Sequence[str]) -> Any:
    """The ``ImportError`` for a 2017 name a compat module lacks (raised from its module ``__getattr__``)."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"the config uses RETURNN's 2017 {module}.{name}, which this RETURNN does not provide "
                      f"(of {module} only {', '.join(provided)}); define it in the config instead",
                      name=module)
