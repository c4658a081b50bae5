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


#: a seq's search result: its best hypothesis, or with a beam left in, [(score, hypothesis), ...] best first
Result = str | list[tuple[float, str]]


def format_results(results: list[tuple[str, Result]], fmt: str) -> str:
    """The search output file as RETURNN writes it: ``txt`` one result per line, ``py`` a dict literal
    ``{seq_tag: result, ...}``; a result with a beam is the list ``[(score, hypothesis), ...]``."""
    if fmt == "txt":
        return "".join(f"{res}\n" for _, res in results)
    return "{\n" + "".join(f"{tag!r}: {res!r},\n" for tag, res in results) + "}\n"


def edit_distance(hyp: Sequence[int], ref: Sequence[int]) -> int:
    """Levenshtein distance between two label sequences."""
    row = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        prev, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (h != r))
    return row[-1]


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


def _scores_layer(engine: Engine, layer: str) -> str:
    """A name for the beam-scores layer the search adds (not one of the config's layers)."""
    net = engine.network_dict()
    if layer not in net:
        raise ConfigError(f"search_output_layer {layer!r} is not in the network ({', '.join(net)})")
    name = f"{layer}_beam_scores"
    while name in net:
        name += "_"
    return name


def run_search(engine: Engine) -> None:
    """Beam search over ``search_data``; log each hypothesis (and, with ``search_do_eval``, the error rates of the
    best ones against the target) and write ``search_output_file`` if set (seqs in corpus order), as RETURNN's
    ``Engine.search``."""
    config = engine.config
    fmt = config.value("search_output_file_format", "txt")
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"search_output_file_format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    output_file = config.value("search_output_file", "")
    do_eval = config.bool("search_do_eval", True)
    dataset = _search_dataset(engine)
    layer = config.value("search_output_layer", "output")
    scores_layer = _scores_layer(engine, layer)
    engine._load_for_inference(dataset, search=True,
                               extra_layers={scores_layer: {"class": "beam_scores", "from": [layer]}})
    assert engine.network is not None and engine.extern_data is not None and engine.backend is not None
    target = engine.network[layer].opts.get("target") or "classes"
    spec = engine.extern_data.get(target) if target in engine.extern_data else None
    vocab = spec.labels if spec is not None else None
    results: list[tuple[int, str, Result]] = []  # (corpus index, tag, result)
    errors = [0, 0, 0, 0]  # label edits, ref labels, wrong seqs, seqs
    for out, lens, data in engine.forward_batches(dataset, layer):
        num = len(data.tags)
        beam = out.shape[0] // max(num, 1)
        scores = np.zeros((num, 1), np.float32)
        if beam > 1:
            # the scores come from a second run of the search: the backends return one layer per forward step
            scores = engine.backend.forward_step(data, scores_layer)[0].reshape(num, -1)
        if out.shape[0] != num * scores.shape[1] or out.ndim != 2 or not np.issubdtype(out.dtype, np.integer):
            raise ConfigError(f"search_output_layer {layer!r} must give label indices (a sparse output: a 'choice' "
                              f"or a 'decide' on it), got shape {out.shape} {out.dtype} for {num} seqs")
        refs = data.data.get(target) if do_eval else None
        for i, tag in enumerate(data.tags):
            corpus_idx = dataset.corpus_index(data.seq_idx[i])
            rows = range(i * scores.shape[1], (i + 1) * scores.shape[1])
            hyps = [serialize_hypothesis(out[r, : int(lens[r])], vocab) for r in rows]
            if beam > 1:
                entries = [(float(scores[i, k]), hyp) for k, hyp in enumerate(hyps)]
                results.append((corpus_idx, tag, entries))
                engine.log.v4(f"search: seq {tag!r}: " + "; ".join(f"{sc:.4g} {h!r}" for sc, h in entries))
            else:
                results.append((corpus_idx, tag, hyps[0]))
                engine.log.v4(f"search: seq {tag!r}: {hyps[0]!r}")
            if refs is not None and refs.ndim == 2:
                ref = list(refs[i, : int(data.seq_lens[target][i])])
                best = list(out[rows[0], : int(lens[rows[0]])])
                edits = edit_distance(best, ref)
                errors = [errors[0] + edits, errors[1] + len(ref), errors[2] + int(best != ref), errors[3] + 1]
    if not results:
        raise TrainingError(f"search: dataset {dataset.name} gave no seqs")
    line = f"search done: {len(results)} seqs"
    if errors[3]:
        line += (f", label error rate {errors[0] / max(errors[1], 1):.4g} (edit distance of the best hypothesis to "
                 f"{target!r}), seq error rate {errors[2] / errors[3]:.4g}")
    engine.log.v1(line)
    if output_file:
        # RETURNN writes the seqs in corpus order, whatever order the search ran them in (a txt line per seq)
        ordered = [(tag, res) for _, tag, res in sorted(results, key=lambda r: r[0])]
        atomic_write_text(output_file, format_results(ordered, fmt))
        engine.log.v2(f"search: wrote {output_file}")
