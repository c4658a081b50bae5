"""returnn-sprint with the TF backend: training from Sprint caches and through ExternSprintDataset, and the
Sprint loss (its gradient is the error signal the stand-in Sprint returned)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from returnn_sprint.archive import FileArchive  # noqa: E402
from returnn_sprint.error_signals import SprintInstancePool  # noqa: E402
from returnn_sprint.fast_bw import baum_welch  # noqa: E402
from returnn_sprint.tf_loss import FastBaumWelchLoss, SprintLoss  # noqa: E402
from sprint_corpus import FAKE_SPRINT, NUM_CLASSES, archive_bytes, make_corpus  # noqa: E402

from returnn_core.learning_rate.state_file import load_state  # noqa: E402

RETURNN = str(pathlib.Path(sys.executable).parent / "returnn")


def _run_returnn(cfg: pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([RETURNN, str(cfg)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _dev_errors(lr_file: pathlib.Path) -> list[float]:
    state = load_state(str(lr_file))
    return [state[ep].error["dev_error"] for ep in sorted(state)]


def _children_of(pid: int) -> set[int]:
    out = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out |= {int(p) for p in open(f"/proc/{pid}/task/{task}/children").read().split()}
        except OSError:
            pass
    return out


def _sprint_processes_for(marker: str) -> list[int]:
    """Pids of any process (running or zombie) whose command line mentions ``marker``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().decode("utf8", "replace")
            except OSError:
                continue
            if marker in cmdline and "fake_sprint" in cmdline:
                out.append(int(entry))
    return out


NETWORK = """
network = {
    "hidden": {"class": "linear", "activation": "tanh", "n_out": 16},
    "output": {"class": "softmax", "loss": "ce", "from": ["hidden"]},
}
"""


def test_training_on_sprint_caches(tmp_path):
    """Train on RETURNN- and RASR-layout archives laid out byte by byte (and one from our writer); dev from our writer."""
    allo = tmp_path / "allophones"
    allo.write_text("#allophones\n" + "".join(f"p{k}{{#+#}}\n" for k in range(NUM_CLASSES)))
    tying = tmp_path / "state-tying"
    tying.write_text("".join(f"p{k}{{#+#}}.{s} {k}\n" for k in range(NUM_CLASSES) for s in range(3)))
    ab = archive_bytes
    # train: features in a bundle of a RETURNN-layout archive (laid out byte by byte) and one from our writer
    # (compressed); alignments in a RASR-layout archive (compressed, with a removed entry)
    ref = np.load(make_corpus(tmp_path / "train.npz", 60, 1))
    feat_entries, align_entries = [], [("", b"removed", False)]
    with FileArchive(str(tmp_path / "train.feat.1.cache"), "w", compress=True) as ours:
        for i, name in enumerate(map(str, ref["names"])):
            x, align = ref[f"feat_{i}"], ref[f"align_{i}"]
            if i % 2:
                ours.add_features(name, x)
            else:
                times = [(0.01 * t, 0.01 * t + 0.01) for t in range(len(x))]
                feat_entries.append((name, ab.feature_record(x, times), False))
            runs = [(1, ab.emission(int(a), t % 3)) for t, a in enumerate(align)]
            align_entries.append((name, ab.plain_alignment_record(runs), True))
    (tmp_path / "train.feat.0.cache").write_bytes(ab.archive(feat_entries, trailer="returnn").data)
    (tmp_path / "train.feat.bundle").write_text("train.feat.0.cache\ntrain.feat.1.cache\n")
    (tmp_path / "train.align.cache").write_bytes(ab.archive(align_entries, trailer="rasr").data)
    # dev: both from our writer
    ref = np.load(make_corpus(tmp_path / "dev.npz", 15, 2))
    with FileArchive(str(tmp_path / "dev.feat.cache"), "w") as feats, FileArchive(str(tmp_path / "dev.align.cache"), "w") as al:
        for i, name in enumerate(map(str, ref["names"])):
            feats.add_features(name, ref[f"feat_{i}"])
            al.add_alignment(name, [(t, int(a), t % 3) for t, a in enumerate(ref[f"align_{i}"])])
    (tmp_path / "dev.feat.bundle").write_text("dev.feat.cache\n")
    labeling = {"allophone_file": str(allo), "state_tying_file": str(tying)}

    def dataset(part: str) -> str:
        return repr({
            "class": "SprintCacheDataset",
            "data": {
                "data": {"filename": str(tmp_path / f"{part}.feat.bundle")},
                "classes": {"filename": str(tmp_path / f"{part}.align.cache"), "allophone_labeling": labeling},
            },
            **({"seq_ordering": "random"} if part == "train" else {}),
        })

    cfg = tmp_path / "caches.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
task = "train"
train = {dataset("train")}
dev = {dataset("dev")}
batch_size = 400
max_seqs = 8
{NETWORK}
adam = True
learning_rate = 0.02
model = "{tmp_path}/model"
learning_rate_file = "{tmp_path}/lr.txt"
num_epochs = 4
log_verbosity = 2
""")
    _run_returnn(cfg, tmp_path)
    errors = _dev_errors(tmp_path / "lr.txt")
    assert len(errors) == 4
    assert errors[-1] < 0.1 < errors[0] or errors[-1] < 0.05, errors  # chance level is 0.75
    assert (tmp_path / "model.004.index").exists() or any(p.name.startswith("model.004") for p in tmp_path.iterdir())


def test_training_through_extern_sprint_dataset(tmp_path):
    """Train and dev data streamed from stand-in Sprint children (partitioned train epochs), with no child left."""
    train = make_corpus(tmp_path / "train.npz", 60, 3)
    dev = make_corpus(tmp_path / "dev.npz", 15, 4)

    def dataset(corpus: str, **extra) -> str:
        return repr({
            "class": "ExternSprintDataset",
            "sprintTrainerExecPath": [sys.executable, FAKE_SPRINT],
            "sprintConfigStr": f"--*.corpus.file={corpus}",
            **extra,
        })

    cfg = tmp_path / "extern.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
task = "train"
train = {dataset(train, partitionEpoch=2, seq_ordering="random")}
dev = {dataset(dev)}
batch_size = 400
max_seqs = 8
{NETWORK}
adam = True
learning_rate = 0.02
model = "{tmp_path}/model"
learning_rate_file = "{tmp_path}/lr.txt"
num_epochs = 6
log_verbosity = 2
""")
    proc = subprocess.Popen([RETURNN, str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert not _sprint_processes_for(str(tmp_path)), "Sprint children outlived the returnn run"
    errors = _dev_errors(tmp_path / "lr.txt")
    assert len(errors) == 6
    assert errors[-1] < 0.1 < errors[0] or errors[-1] < 0.05, errors


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_sprint_loss_gradient_is_the_error_signal(tmp_path):
    corpus = make_corpus(tmp_path / "c.npz", 6, 5)
    ref = np.load(corpus)
    opts = {"sprintExecPath": [sys.executable, FAKE_SPRINT], "sprintConfigStr": f"--*.corpus.file={corpus} --*.action=python-control",
            "numInstances": 2}
    idx = [0, 3, 5]
    lens = np.array([len(ref[f"align_{i}"]) for i in idx], dtype=np.int32)
    tags = tf.constant([str(ref["names"][i]) for i in idx])
    rng = np.random.RandomState(0)
    logits = tf.Variable(rng.randn(len(idx), lens.max(), NUM_CLASSES).astype(np.float32))
    mask = tf.sequence_mask(lens, lens.max(), dtype=tf.float32)
    loss = SprintLoss(sprint_opts=opts)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss_sum, err, frames = loss(logits=logits, output=tf.nn.softmax(logits), target=None, output_mask=mask,
                                         output_seq_lens=tf.constant(lens), seq_tags=tags, activation="softmax")
        return loss_sum, frames, tape.gradient(loss_sum, logits)

    try:
        loss_sum, frames, grad = step()
        log_post = _log_softmax(logits.numpy().astype(np.float64))
        exp_loss, exp_grad = 0.0, np.zeros_like(log_post)
        for b, i in enumerate(idx):
            n, align = lens[b], ref[f"align_{i}"]
            exp_loss -= log_post[b, np.arange(n), align].sum()
            exp_grad[b, :n] = np.exp(log_post[b, :n])
            exp_grad[b, np.arange(n), align] -= 1.0
        assert float(frames) == lens.sum()
        assert float(loss_sum) == pytest.approx(exp_loss, rel=1e-5)
        np.testing.assert_allclose(grad.numpy(), exp_grad, atol=1e-5)
        pids = [inst.pid for inst in loss.pool().instances]
        assert len(pids) == 2
    finally:
        SprintInstancePool.close_all()
    assert not _children_of(os.getpid()) & set(pids)


def test_training_with_sprint_loss(tmp_path):
    """A network trained only by Sprint's error signal (loss "sprint") learns the stand-in's alignments."""
    train = make_corpus(tmp_path / "train.npz", 40, 6)
    sprint_opts = {"sprintExecPath": [sys.executable, FAKE_SPRINT],
                   "sprintConfigStr": f"--*.corpus.file={train} --*.action=python-control", "numInstances": 2}
    cfg = tmp_path / "sprint-loss.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
task = "train"
train = {repr({"class": "ExternSprintDataset", "sprintTrainerExecPath": [sys.executable, FAKE_SPRINT],
               "sprintConfigStr": f"--*.corpus.file={train}"})}
batch_size = 400
max_seqs = 8
network = {{
    "hidden": {{"class": "linear", "activation": "tanh", "n_out": 16}},
    "output": {{"class": "softmax", "n_out": {NUM_CLASSES}, "loss": "sprint", "from": ["hidden"],
               "loss_opts": {{"sprint_opts": {sprint_opts!r}}}}},
}}
adam = True
learning_rate = 0.02
model = "{tmp_path}/model"
learning_rate_file = "{tmp_path}/lr.txt"
num_epochs = 4
log_verbosity = 2
""")
    _run_returnn(cfg, tmp_path)
    state = load_state(str(tmp_path / "lr.txt"))
    scores = [state[ep].error["train_score"] for ep in sorted(state)]
    assert len(scores) == 4 and scores[-1] < 0.5 * scores[0], scores


def test_fast_bw_loss_gradient_and_training(tmp_path):
    """fast_bw: automata exported by the stand-in, Baum-Welch here; gradient = softmax - soft alignment; it learns."""
    corpus = make_corpus(tmp_path / "c.npz", 40, 8)
    ref = np.load(corpus)
    sprint_opts = {"sprintExecPath": [sys.executable, FAKE_SPRINT],
                   "sprintConfigStr": f"--*.corpus.file={corpus} --*.action=python-control"}
    idx = [1, 2]
    lens = np.array([len(ref[f"align_{i}"]) for i in idx], dtype=np.int32)
    logits = tf.Variable(np.random.RandomState(1).randn(2, lens.max(), NUM_CLASSES).astype(np.float32))
    loss = FastBaumWelchLoss(sprint_opts=sprint_opts, am_scale=0.8)
    try:
        with tf.GradientTape() as tape:
            loss_sum, _, frames = loss(logits=logits, output_mask=tf.sequence_mask(lens, lens.max(), dtype=tf.float32),
                                       output_seq_lens=tf.constant(lens), seq_tags=tf.constant([str(ref["names"][i]) for i in idx]),
                                       activation="softmax")
        grad = tape.gradient(loss_sum, logits).numpy()
        automata = loss.pool().get_automata_for_batch([str(ref["names"][i]) for i in idx])
    finally:
        SprintInstancePool.close_all()
    log_post = _log_softmax(logits.numpy().astype(np.float64))
    exp_loss = 0.0
    for b in range(2):
        n = lens[b]
        bw_loss, soft = baum_welch(log_post[b, :n], automata[b], am_scale=0.8)
        exp_loss += bw_loss
        np.testing.assert_allclose(grad[b, :n], 0.8 * (np.exp(log_post[b, :n]) - soft), atol=1e-5)
        assert not grad[b, n:].any()
    assert float(loss_sum) == pytest.approx(exp_loss, rel=1e-5) and float(frames) == lens.sum()

    cfg = tmp_path / "fast-bw.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
task = "train"
train = {repr({"class": "ExternSprintDataset", "sprintTrainerExecPath": [sys.executable, FAKE_SPRINT],
               "sprintConfigStr": f"--*.corpus.file={corpus}"})}
batch_size = 400
max_seqs = 8
network = {{
    "hidden": {{"class": "linear", "activation": "tanh", "n_out": 16}},
    "output": {{"class": "softmax", "n_out": {NUM_CLASSES}, "loss": "fast_bw", "from": ["hidden"],
               "loss_opts": {{"sprint_opts": {sprint_opts!r}}}}},
}}
adam = True
learning_rate = 0.02
model = "{tmp_path}/model"
learning_rate_file = "{tmp_path}/lr.txt"
num_epochs = 3
log_verbosity = 2
""")
    _run_returnn(cfg, tmp_path)
    state = load_state(str(tmp_path / "lr.txt"))
    scores = [state[ep].error["train_score"] for ep in sorted(state)]
    assert len(scores) == 3 and scores[-1] < 0.7 * scores[0], scores
