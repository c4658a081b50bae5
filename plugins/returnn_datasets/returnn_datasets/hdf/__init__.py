"""The RETURNN HDF format: :class:`HDFDataset` reads it lazily, :class:`HDFWriter` writes it atomically."""

from returnn_datasets.hdf.reader import HDFDataset
from returnn_datasets.hdf.simple_writer import SimpleHDFWriter
from returnn_datasets.hdf.writer import HDFWriter, dump_dataset_to_hdf

__all__ = ["HDFDataset", "HDFWriter", "SimpleHDFWriter", "dump_dataset_to_hdf"]
