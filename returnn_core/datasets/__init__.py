"""The Dataset API: base class, data specs, seq orderings, chunking and batch generation."""

from returnn_core.datasets.batch_set import BatchSetGenerator
from returnn_core.datasets.batching import (
    Batch,
    BatchData,
    DatasetSeq,
    SeqSlice,
    chunk_seq,
    generate_batches,
    parse_chunking,
)
from returnn_core.datasets.chunking import parse_context_window
from returnn_core.datasets.dataset import Dataset
from returnn_core.datasets.factory import init_dataset
from returnn_core.datasets.seq_order import ORDERINGS, seq_order
from returnn_core.datasets.seqs import BatchSeqCopyPart
from returnn_core.datasets.spec import DataSpec, ExternData

__all__ = [
    "ORDERINGS",
    "Batch",
    "BatchData",
    "BatchSeqCopyPart",
    "BatchSetGenerator",
    "DataSpec",
    "Dataset",
    "DatasetSeq",
    "ExternData",
    "SeqSlice",
    "chunk_seq",
    "generate_batches",
    "init_dataset",
    "parse_chunking",
    "parse_context_window",
    "seq_order",
]
