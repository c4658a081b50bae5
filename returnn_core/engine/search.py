"""The ``search`` task: the network with RETURNN's search flag (``choice`` layers run beam search) on
``search_data``, the hypotheses of ``search_output_layer`` written to ``search_output_file``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from returnn_core.atomic_write import atomic_write_text
from returnn_core.datasets import Dataset
from returnn_core.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from returnn_core.engine.driver import Engine

#: ``search_output_file_format`` values, as in RETURNN: one hypothesis per line, or a Python dict literal by seq tag
OUTPUT_FORMATS = ("txt", "py")


def serialize_hypothesis(labels: Sequence[int], vocab: Sequence[str] | None) -> str:
    """A hypothesis as RETURNN's ``Dataset.serialize_data`` writes it: words joined by spaces, else the label ids."""
    if vocab:
        return " ".join(vocab[int(i)] for i in labels)
    return " ".join(str(int(i)) for i in labels)


def format_results(results: list[tuple[str, str]], fmt: str) -> str:
    """The search output file: ``txt`` one hypothesis per line, ``py`` a dict literal ``{seq_tag: hypothesis, ...}``."""
    if fmt == "txt":
        return "".join(f"{hyp}\n" for _, hyp in results)
    return "{\n" + "".join(f"{tag!r}: {hyp!r},\n" for tag, hyp in results) + "}\n"


def _search_dataset(engine: Engine) -> Dataset:
    key = engine.config.typed_value("search_data", "eval")
    if isinstance(key, str) and key in ("train", "dev", "eval"):
        dataset = engine.dataset(key)
        if dataset is None:
            raise ConfigError(f"task search: search_data is {key!r}, but the config has no {key!r} dataset")
        return dataset
    if not key:
        raise ConfigError("task search needs 'search_data' (a dataset, or 'train'/'dev'/'eval'; default 'eval')")
    return engine.dataset_from_spec(key)


def run_search(engine: Engine) -> None:
    """Beam search over ``search_data``; log each hypothesis and write ``search_output_file`` if set."""
    config = engine.config
    fmt = config.value("search_output_file_format", "txt")
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"search_output_file_format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    output_file = config.value("search_output_file", "")
    dataset = _search_dataset(engine)
    engine._load_for_inference(dataset, search=True)
    assert engine.network is not None and engine.extern_data is not None
    layer = config.value("search_output_layer", "output")
    if layer not in engine.network.layers:
        raise ConfigError(f"search_output_layer {layer!r} is not in the network ({', '.join(engine.network.layers)})")
    target = engine.network[layer].opts.get("target") or "classes"
    spec = engine.extern_data.get(target) if target in engine.extern_data else None
    vocab = spec.labels if spec is not None else None
    results: list[tuple[str, str]] = []
    for out, lens, tags in engine._forward_batches(dataset, layer):
        if out.shape[0] != len(tags):
            raise ConfigError(f"search_output_layer {layer!r} still has a beam ({out.shape[0] // max(len(tags), 1)} "
                              "hypotheses per seq); put a 'decide' layer on it and name that one")
        if out.ndim != 2 or not np.issubdtype(out.dtype, np.integer):
            raise ConfigError(f"search_output_layer {layer!r} must give label indices (a sparse output, e.g. a "
                              f"'decide' on a 'choice'), got shape {out.shape} {out.dtype}")
        for row, n, tag in zip(out, lens, tags):
            hyp = serialize_hypothesis(row[: int(n)], vocab)
            engine.log.v4(f"search: seq {tag!r}: {hyp!r}")
            results.append((tag, hyp))
    if not results:
        raise TrainingError(f"search: dataset {dataset.name} gave no seqs")
    engine.log.v1(f"search done: {len(results)} seqs")
    if output_file:
        atomic_write_text(output_file, format_results(results, fmt))
        engine.log.v2(f"search: wrote {output_file}")
