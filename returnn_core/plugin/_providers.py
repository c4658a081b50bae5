"""What the first-party plugins provide, so an unknown name can say which package to install."""

from __future__ import annotations

#: plugin short name -> distribution
FIRST_PARTY: dict[str, str] = {
    "tf": "returnn-tf",
    "theano": "returnn-theano",
    "sprint": "returnn-sprint",
    "datasets": "returnn-datasets",
    "native": "returnn-native",
}

#: backend name -> plugin that provides it (and its per-backend layers, losses, ...)
BACKEND_PLUGINS: dict[str, str] = {"tf": "tf", "tensorflow": "tf", "theano": "theano", "pytensor": "theano"}

#: extension point -> name -> plugin short name (names not tied to a backend plugin)
KNOWN_PROVIDERS: dict[str, dict[str, str]] = {
    "backends": dict(BACKEND_PLUGINS),
    "datasets": {
        **{
            name: "datasets"
            for name in (
                "HDFDataset",
                "Task12AXDataset",
                "DummyDataset",
                "StaticDataset",
                "CopyTaskDataset",
                "TaskEpisodicCopyDataset",
                "TaskXmlModelingDataset",
                "TaskVariableAssignmentDataset",
                "TaskNumberBaseConvertDataset",
                "LmDataset",
                "MetaDataset",
                "CombinedDataset",
                "ConcatDataset",
                "NumpyDumpDataset",
                "RawWavDataset",
            )
        },
        **{name: "sprint" for name in ("SprintCacheDataset", "ExternSprintDataset")},
    },
    "rec_units": {"nativelstm": "native"},
    "native_ops": {"NativeLstm": "native", "NativeMatMul": "native"},
    "output_writers": {"hdf": "datasets"},
    "cli_tools": {
        "dump-dataset": "datasets",
        "hdf-dump": "datasets",
        "sprint-cache": "sprint",
        "compile-native-op": "native",
    },
}


def provider_of(kind: str, name: str, backend: str | None) -> str | None:
    """The first-party plugin expected to provide ``name`` of ``kind`` (for ``backend``), if known."""
    plugin = KNOWN_PROVIDERS.get(kind, {}).get(name)
    if plugin is None and backend:
        plugin = BACKEND_PLUGINS.get(backend)
    return plugin
