"""Stand-in for the RASR (Sprint) executables: plays Sprint's side of each Python interface as RASR does.

Options are RASR-style ``--*.key=value`` (later ones win). The corpus is an ``.npz`` file (``--*.corpus.file``)
with ``names``, ``feat_<i>`` (time, dim) float32, optional ``align_<i>`` (time,) and ``num_classes``: RASR would
read a Bliss corpus and feature caches instead; everything Python sees is the same.

Modes (``--*.action``):
  supervised-training (default): the nn-trainer with ``--*.trainer=python-trainer``: PythonSegmentOrder
      ``getSegmentList``, lazily ``init(inputDim, outputDim, config, targetMode)`` on the first segment,
      ``feedInputAndTargetAlignment``/``feedInput`` with features (dim, time), then ``exit()``. With
      ``--*.target-mode=criterion-by-sprint`` it calls ``feedInput`` for posteriors (dim, time) and answers
      with ``finishError(error, errorSignal, naturalPairingType="softmax")``.
  python-control: PythonControl ``init(name="Sprint.PythonControl", ..., callback=...)`` then
      ``run_control_loop(callback)``; the callback answers ``version``, ``get_loss_and_error_signal`` and
      ``export_allophone_state_fsa_by_segment_name`` from the corpus alignments (frame-wise cross entropy).
  segmentwise-training: PythonControl init without a control loop, segments from the PythonSegmentOrder,
      ``SprintNnPythonLayer.forward``/``backpropagate`` and ``notify_segment_loss`` per segment.
  feature-scorer: PythonFeatureScorer (``init``, ``get_feature_buffer_size``, ``add_feature``, ``compute``,
      ``get_scores``, ``reset``); writes the best class per frame to ``--*.fake.output`` (npz).
``--*.fake.orthography=true``: the trainer also hands over an orthography per segment (``feedInputAndTarget``).
Failure injection: ``--*.fake.die-after=N`` (exit status 3), ``--*.fake.hang-after=N``,
``--*.fake.garbage-after=N`` (garbage on the c2p pipe), counted in segments; for the loss callback
``--*.fake.die-on-segment=NAME``, ``--*.fake.hang-on-segment=NAME`` and ``--*.fake.die-once-on-segments=A,B``
(each only for the first child that meets it, remembered in files next to the corpus). A hanging stand-in writes
its pid to ``--*.fake.hang-marker=PATH`` if given. ``--*.fake.faults-in-epoch=N``: the faults counted in segments
happen only in (sub-)epoch N of an ExternSprintDataset.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

PYTHON_CONTROL_VERSION = 5


def parse_options(argv: list[str]) -> dict[str, str]:
    """``--*.a.b=v`` / ``--a.b=v`` -> {"a.b": "v"}; later options win."""
    opts: dict[str, str] = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            continue
        key, value = arg[2:].split("=", 1)
        if key.startswith("*."):
            key = key[2:]
        opts[key] = value
    return opts


def load_module(path: str, name: str):
    """What RASR does for ``pymod-path``/``pymod-name``."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name)


class Corpus:
    """The stand-in for a Bliss corpus with feature and alignment caches."""

    def __init__(self, path: str) -> None:
        data = np.load(path)
        self.names = [str(n) for n in data["names"]]
        self.features = {n: data[f"feat_{i}"] for i, n in enumerate(self.names)}
        self.alignments = {n: data[f"align_{i}"] for i, n in enumerate(self.names) if f"align_{i}" in data}
        self.num_classes = int(data["num_classes"]) if "num_classes" in data else 0
        self.dim = int(next(iter(self.features.values())).shape[1])

    def orthography(self, name: str) -> str:
        """A made-up transcription with a non-ASCII letter (the corpus has none)."""
        return f"grüße {name.rsplit('/', 1)[-1]}"

    def partition(self, n: int, select: int) -> list[str]:
        """Contiguous part ``select`` of ``n``."""
        total = len(self.names)
        return self.names[select * total // n : (select + 1) * total // n]


class Faults:
    """Failure injection after N segments."""

    def __init__(self, opts: dict[str, str]) -> None:
        self.opts = opts
        self.count = 0
        only = opts.get("fake.faults-in-epoch")
        order_cfg = opts.get("python-segment-order-config", "").split(",")
        self.active = only is None or f"epoch:{only}" in order_cfg

    def segment_done(self) -> None:
        self.count += 1
        if not self.active:
            return
        if self.count == int(self.opts.get("fake.die-after", -1)):
            print(f"fake sprint: simulated crash after {self.count} segments", flush=True)
            os._exit(3)
        if self.count == int(self.opts.get("fake.hang-after", -1)):
            print("fake sprint: hanging", flush=True)
            hang(self.opts)
        if self.count == int(self.opts.get("fake.garbage-after", -1)):
            cfg = dict(item.split(":", 1) for item in self.opts["pymod-config"].split(",") if item)
            print("fake sprint: writing garbage", flush=True)
            os.write(int(cfg["c2p_fd"]), b"\x10\x00\x00\x00this is no pickle")
            time.sleep(3600)


def cross_entropy(log_posteriors: np.ndarray, alignment: np.ndarray) -> tuple[float, np.ndarray]:
    """Frame-wise CE of log posteriors (time, dim): loss and error signal w.r.t. the pre-softmax activations."""
    t = np.arange(len(alignment))
    loss = float(-log_posteriors[t, alignment].sum())
    error = np.exp(log_posteriors)
    error[t, alignment] -= 1.0
    return loss, error.astype(np.float32)


def alignment_fsa(alignment: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """A linear HMM over the runs of the alignment: loop and forward edges (from, to, emission), weights 0."""
    runs = [int(a) for i, a in enumerate(alignment) if i == 0 or alignment[i - 1] != a]
    edges, weights = [], []
    for s, label in enumerate(runs):
        edges.append((s, s, label))
        edges.append((s, s + 1, label))
    for _ in edges:
        weights.append(0.0)
    return len(runs) + 1, np.array(edges, dtype=np.uint32).T.copy(), np.array(weights, dtype=np.float32)


def segment_order(opts: dict[str, str], names: list[str]) -> Iterator[str]:
    """Segments to visit; from the PythonSegmentOrder module if enabled, iterated lazily as RASR does."""
    if opts.get("python-segment-order", "false") != "true":
        return iter(names)
    mod = load_module(opts.get("python-segment-order-pymod-path", ""), opts["python-segment-order-pymod-name"])
    return iter(mod.getSegmentList(corpusName="corpus", segmentList=names, config=opts.get("python-segment-order-config", "")))


def run_trainer(opts: dict[str, str], corpus: Corpus, names: list[str], faults: Faults) -> None:
    mod = load_module(opts.get("pymod-path", ""), opts["pymod-name"])
    target_mode = opts.get("target-mode", "target-alignment" if corpus.alignments else "unsupervised")
    initialized = False
    for name in segment_order(opts, names):
        if name not in corpus.features:
            print(f"fake sprint: segment {name!r} not in corpus", flush=True)
            sys.exit(1)
        features = np.ascontiguousarray(corpus.features[name].T.astype(np.float32))  # (dim, time) as RASR
        if not initialized:
            mod.init(inputDim=corpus.dim, outputDim=corpus.num_classes, config=opts.get("pymod-config", ""), targetMode=target_mode)
            initialized = True
        if target_mode == "criterion-by-sprint":
            posteriors = np.asarray(mod.feedInput(features=features, segmentName=name))
            log_post = np.log(np.maximum(posteriors.T, 1e-30))
            loss, error = cross_entropy(log_post, corpus.alignments[name])
            mod.finishError(error=loss, errorSignal=error.T, naturalPairingType="softmax")
        elif target_mode == "target-alignment" and opts.get("fake.orthography") == "true":
            mod.feedInputAndTarget(features=features, segmentName=name, orthography=corpus.orthography(name),
                                   alignment=corpus.alignments[name].astype(np.int32))
        elif target_mode == "target-alignment":
            mod.feedInputAndTargetAlignment(features=features, targetAlignment=corpus.alignments[name].astype(np.int32), segmentName=name)
        else:
            mod.feedInput(features=features, segmentName=name)
        faults.segment_done()
    if initialized:
        mod.exit()


def hang(opts: dict[str, str]) -> None:
    """Sleep for an hour, after telling the test our pid if it asked."""
    marker = opts.get("fake.hang-marker")
    if marker:
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
    time.sleep(3600)


def dies_once(opts: dict[str, str], seg_name: str) -> bool:
    """Whether this is the first child to meet ``seg_name`` of ``fake.die-once-on-segments``."""
    if seg_name not in opts.get("fake.die-once-on-segments", "").split(","):
        return False
    marker = f"{opts['corpus.file']}.died-on-{seg_name.replace('/', '_')}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def make_callback(corpus: Corpus, opts: dict[str, str]):
    def callback(action: str, *args):
        if action == "version":
            return "<version>fake-sprint</version>"
        if action == "get_loss_and_error_signal":
            seg_name, seg_len, log_posteriors = args
            if seg_name == opts.get("fake.die-on-segment") or dies_once(opts, seg_name):
                print(f"fake sprint: simulated crash on {seg_name}", flush=True)
                os._exit(3)
            if seg_name == opts.get("fake.hang-on-segment"):
                print(f"fake sprint: hanging on {seg_name}", flush=True)
                hang(opts)
            alignment = corpus.alignments[seg_name]
            assert log_posteriors.shape == (seg_len, corpus.num_classes), log_posteriors.shape
            return cross_entropy(np.asarray(log_posteriors, dtype=np.float64), alignment)
        if action == "export_allophone_state_fsa_by_segment_name":
            (seg_name,) = args
            return alignment_fsa(corpus.alignments[seg_name])
        raise ValueError(f"fake sprint callback: unknown action {action!r}")

    return callback


def run_python_control(opts: dict[str, str], corpus: Corpus) -> None:
    mod = load_module(opts.get("pymod-path", ""), opts["pymod-name"])
    callback = make_callback(corpus, opts)
    ctrl = mod.init(
        name="Sprint.PythonControl",
        reference=object(),
        config=opts.get("pymod-config", ""),
        sprint_unit="NnTrainer.pythonControl",
        version_number=PYTHON_CONTROL_VERSION,
        callback=callback,
    )
    try:
        ctrl.run_control_loop(callback)
    except SystemExit:
        pass
    ctrl.exit()


def run_segmentwise(opts: dict[str, str], corpus: Corpus) -> None:
    mod = load_module(opts.get("pymod-path", ""), opts["pymod-name"])
    ctrl = mod.init(
        name="Sprint.PythonControl",
        reference=object(),
        config=opts.get("pymod-config", ""),
        sprint_unit="SegmentwiseNnTrainer",
        version_number=PYTHON_CONTROL_VERSION,
        callback=make_callback(corpus, opts),
    )
    layer = mod.SprintNnPythonLayer(config=opts.get("pymod-config", ""))
    layer.setInputDimension(0, corpus.dim)
    layer.setOutputDimension(corpus.num_classes)
    for name in segment_order(opts, list(corpus.names)):
        ctrl.init_segment(segment_name=name)
        features = np.ascontiguousarray(corpus.features[name].T.astype(np.float32))
        log_post = layer.forward((features,))
        loss, error = cross_entropy(np.asarray(log_post, dtype=np.float64).T, corpus.alignments[name])
        layer.backpropagate(error.T)
        ctrl.notify_segment_loss(segment_name=name, loss=loss)
    layer.finalize()
    ctrl.exit()


def run_feature_scorer(opts: dict[str, str], corpus: Corpus) -> None:
    mod = load_module(opts.get("pymod-path", ""), opts["pymod-name"])
    scorer = mod.init(
        name="Sprint.PythonControl",
        reference=object(),
        config=opts.get("pymod-config", ""),
        sprint_unit="PythonFeatureScorer",
        version_number=PYTHON_CONTROL_VERSION,
        callback=make_callback(corpus, opts),
    )
    num_classes = int(opts.get("python-feature-scorer-output-dimension", corpus.num_classes))
    scorer.init(input_dim=corpus.dim, output_dim=num_classes)
    assert scorer.get_feature_buffer_size() != 0
    best = {}
    for name in corpus.names:
        feats = corpus.features[name].astype(np.float32)
        for t, vec in enumerate(feats):
            scorer.add_feature(feature=vec, time=t)
        scorer.compute(num_frames=len(feats))
        scores = np.stack([np.asarray(scorer.get_scores(time=t)) for t in range(len(feats))])
        assert scores.shape == (len(feats), num_classes), scores.shape
        best[name] = scores.argmin(axis=1)  # scores are -log: the best class has the smallest
        scorer.reset(num_frames=len(feats))
    scorer.exit()
    np.savez(opts["fake.output"], names=np.array(list(best)), **{f"best_{i}": v for i, v in enumerate(best.values())})


def main(argv: list[str]) -> int:
    opts = parse_options(argv)
    print(f"fake sprint[pid {os.getpid()}]: {' '.join(argv)}", flush=True)
    corpus = Corpus(opts["corpus.file"])
    action = opts.get("action", "supervised-training")
    if action == "python-control":
        run_python_control(opts, corpus)
    elif action == "segmentwise-training":
        run_segmentwise(opts, corpus)
    elif action == "feature-scorer":
        run_feature_scorer(opts, corpus)
    else:
        names = list(corpus.names)
        partitions = int(opts.get("corpus.partition", 1))
        if partitions > 1:
            names = corpus.partition(partitions, int(opts.get("corpus.select-partition", 0)))
        run_trainer(opts, corpus, names, Faults(opts))
    print("fake sprint: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
