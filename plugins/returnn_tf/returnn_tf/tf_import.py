"""TensorFlow's first import, without the Keras import that TF does eagerly but this backend never needs."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from returnn_tf.tf_logging import quiet_tensorflow

#: the package TF's ``__init__`` imports eagerly (``keras.src.optimizers``, for its SavedModel registry)
KERAS = "keras"


class _DeferredLoader(importlib.abc.Loader):
    """Fails the module's execution with ImportError, which TF's eager Keras import catches and skips."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        raise ImportError(f"{KERAS} is imported on first use of tf.keras, not while TensorFlow is imported",
                          name=module.__name__)


class _DeferKeras(importlib.abc.MetaPathFinder):
    """While installed, ``keras`` is found (TF reads its location) but its import fails (TF then skips it)."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != KERAS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                # the real location, so TF's keras path lookup (module_util) still finds the package directory
                deferred = importlib.machinery.ModuleSpec(fullname, _DeferredLoader(), origin=spec.origin,
                                                          is_package=True)
                deferred.submodule_search_locations = spec.submodule_search_locations
                return deferred
        return None


def import_tensorflow() -> ModuleType:
    """Import TensorFlow once, quietly (see :func:`quiet_tensorflow`), and without importing Keras.

    TF's ``__init__`` imports ``keras.src.optimizers`` eagerly when Keras is installed: Keras 3 and, through its
    visualization module, matplotlib, 1-2 s of a run that never uses them. ``tf.keras`` stays a lazy loader and
    imports Keras normally on first use; a process that imported Keras before keeps it.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_tensorflow()  # before TF's first import: it reads its log level from the environment only then
    defer = None if KERAS in sys.modules else _DeferKeras()
    if defer is not None:
        sys.meta_path.insert(0, defer)
    try:
        import tensorflow
    finally:
        if defer is not None:
            sys.meta_path.remove(defer)
            # the failed import left no module behind; make sure, so that keras's first real use finds the package
            keras = sys.modules.get(KERAS)
            if keras is not None and isinstance(getattr(keras.__spec__, "loader", None), _DeferredLoader):
                del sys.modules[KERAS]
    return tensorflow
