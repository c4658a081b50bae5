"""Entry point of the returnn-datasets plugin: registrations only (imports nothing but the standard library and the core)."""

from returnn_core.plugin import Registrar, hookimpl

_PKG = "returnn_datasets"

#: config class name -> import target
DATASETS: dict[str, str] = {
    "DummyDataset": f"{_PKG}.generating:DummyDataset",
    "StaticDataset": f"{_PKG}.generating:StaticDataset",
    "Task12AXDataset": f"{_PKG}.task_12ax:Task12AXDataset",
    "HDFDataset": f"{_PKG}.hdf.reader:HDFDataset",
    "MetaDataset": f"{_PKG}.meta:MetaDataset",
    "CombinedDataset": f"{_PKG}.meta:CombinedDataset",
    "ConcatDataset": f"{_PKG}.meta:ConcatDataset",
    "ClusteringDataset": f"{_PKG}.clustering:ClusteringDataset",
    "NumpyDumpDataset": f"{_PKG}.numpy_dump:NumpyDumpDataset",
    "RawWavDataset": f"{_PKG}.raw_wav:RawWavDataset",
    "LmDataset": f"{_PKG}.lm:LmDataset",
    "TranslationDataset": f"{_PKG}.lm:TranslationDataset",
    "CopyTaskDataset": f"{_PKG}.tasks:CopyTaskDataset",
    "TaskEpisodicCopyDataset": f"{_PKG}.tasks:TaskEpisodicCopyDataset",
    "TaskXmlModelingDataset": f"{_PKG}.tasks:TaskXmlModelingDataset",
    "TaskVariableAssignmentDataset": f"{_PKG}.tasks:TaskVariableAssignmentDataset",
    "TaskNumberBaseConvertDataset": f"{_PKG}.tasks:TaskNumberBaseConvertDataset",
}


@hookimpl
def returnn_register_datasets(registry: Registrar) -> None:
    """Generated tasks, HDF files, text corpora, wav files and combinations of datasets."""
    for name, target in DATASETS.items():
        registry.register(name, target)


@hookimpl
def returnn_register_output_writers(registry: Registrar) -> None:
    """The forward task's HDF output (RETURNN layout)."""
    registry.register("hdf", f"{_PKG}.hdf.writer:HDFWriter", aliases=("h5",))


@hookimpl
def returnn_register_cli_tools(registry: Registrar) -> None:
    """Dataset inspection and conversion commands."""
    registry.register(
        "dump-dataset", f"{_PKG}.cli.dump_dataset:main",
        description="print seqs, shapes, tags or statistics (mean/std per feature dim) of a dataset",
    )
    registry.register("hdf-dump", f"{_PKG}.cli.hdf_dump:main", description="write any dataset as a RETURNN HDF file")
