"""Data-parallel training with two real TF worker processes on localhost (``returnn tf-distributed``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from returnn_core.config import Config
from returnn_core.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# 31 seqs in batches of at most 3: the last batch has one seq, so one worker's share is empty there
CONFIG = f"""#!returnn
import sys
import time
sys.path.insert(0, {HERE!r})
from tf_helpers import ToyDataset

backend = "tf"
device = "cpu"
train = {{"class": ToyDataset, "num_seqs": 31, "lag": 1, "seq_ordering": "random"}}
dev = {{"class": ToyDataset, "num_seqs": 7, "seed": 1, "lag": 1}}
network = {{
    "lstm": {{"class": "rec", "unit": "lstmblockfused", "n_out": 8, "from": "data"}},
    "hidden": {{"class": "linear", "activation": "tanh", "n_out": 6, "from": "lstm", "L2": 0.01}},
    "output": {{"class": "softmax", "loss": "ce", "from": "hidden"}},
}}
batch_size = 1000
max_seqs = 3
adam = True
learning_rate = 0.02
gradient_clip_global_norm = 1.0
learning_rate_control = "newbob"
num_epochs = 2
log_verbosity = 3
tf_intra_op_threads = 1
tf_inter_op_threads = 1
"""


def returnn(*args: str) -> str:
    """Run the ``returnn`` command; its output (the test fails on a non-zero exit)."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "returnn_core", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def epoch_scores(log: str) -> dict[int, tuple[float, float]]:
    """Train score and dev score per epoch from the epoch lines."""
    return {int(m.group(1)): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"epoch (\d+) score: (\S+) elapsed: \S+ dev: score (\S+)", log)}


def checkpoint(prefix: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """The same config trained in one process, and on two workers with a restart after epoch 1."""
    tmp = tmp_path_factory.mktemp("dist")
    cfg = tmp / "toy.config"
    cfg.write_text(CONFIG)
    single = returnn(str(cfg), "++model", str(tmp / "single" / "model"),
                     "++learning_rate_file", str(tmp / "single" / "lr.txt"))
    multi_args = ["tf-distributed", "--workers", "2", str(cfg), "++model", str(tmp / "multi" / "model"),
                  "++learning_rate_file", str(tmp / "multi" / "lr.txt")]
    first = returnn(*multi_args, "++num_epochs", "1")
    resumed = returnn(*multi_args)
    return {"dir": str(tmp), "single": single, "first": first, "resumed": resumed}


def test_two_workers_follow_the_single_process_trajectory(runs) -> None:
    single = epoch_scores(runs["single"])
    multi = {**epoch_scores(runs["first"]), **epoch_scores(runs["resumed"])}
    assert sorted(single) == [1, 2], runs["single"]
    assert sorted(epoch_scores(runs["first"])) == [1], runs["first"]
    assert sorted(epoch_scores(runs["resumed"])) == [2], runs["resumed"]
    assert "worker 0 of 2" in runs["first"]
    # the restart resumes both workers from the chief's checkpoint (the other one gets it broadcast)
    assert "resuming from " + os.path.join(runs["dir"], "multi", "model.001") in runs["resumed"]
    for epoch in (1, 2):
        np.testing.assert_allclose(multi[epoch], single[epoch], rtol=2e-4)
    assert single[2][0] < single[1][0]  # it learns, so equal trajectories are not a trivial match
    a = checkpoint(os.path.join(runs["dir"], "single", "model.002"))
    b = checkpoint(os.path.join(runs["dir"], "multi", "model.002"))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-5, err_msg=name)
    assert open(os.path.join(runs["dir"], "multi", "lr.txt")).read().count("EpochData") == 2


def test_only_the_chief_writes(runs) -> None:
    files = sorted(os.listdir(os.path.join(runs["dir"], "multi")))
    assert files == sorted(["lr.txt", "model.lock", "model.001.data-00000-of-00001", "model.001.index",
                            "model.002.data-00000-of-00001", "model.002.index", "tensorboard"]), files
    # the other worker's output is not echoed: each epoch line appears once
    assert len(re.findall(r"^epoch 2 score:", runs["resumed"], re.M)) == 1


def test_cluster_from_env() -> None:
    from returnn_tf.distributed import cluster_from_env
    from returnn_tf.launcher import tf_config

    assert cluster_from_env({}) is None
    assert cluster_from_env({"TF_CONFIG": tf_config([1234], 0)}) is None
    assert cluster_from_env({"TF_CONFIG": tf_config([1234, 1235, 1236], 2)}) == (2, 3)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        cluster_from_env({"TF_CONFIG": "{not json"})
    bad = json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "ps", "index": 0}})
    with pytest.raises(ConfigError, match="'worker' tasks only"):
        cluster_from_env({"TF_CONFIG": bad})


def test_launcher_options() -> None:
    from returnn_tf.launcher import num_workers, parse_args

    assert parse_args(["--workers", "3", "a.config", "++x", "1"]) == (3, ["a.config", "++x", "1"])
    assert parse_args(["a.config"]) == (None, ["a.config"])
    assert num_workers(None, Config({"distributed": {"workers": 4}})) == 4
    assert num_workers(None, Config({})) == 1
    with pytest.raises(ConfigError, match="at least 1"):
        num_workers(0, Config({}))
    with pytest.raises(ConfigError, match="usage"):
        parse_args(["--workers", "2"])


def test_sharding_covers_the_batch_once() -> None:
    from returnn_tf.distributed import Workers

    from returnn_core.datasets import BatchData

    lens = np.array([4, 2, 3], np.int32)
    batch = BatchData({"data": np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)}, {"data": lens},
                      ["a", "b", "c"], [0, 1, 2])
    shares = []
    for rank in range(4):
        w = Workers.__new__(Workers)  # the sharding needs no cluster
        w.rank, w.num_workers = rank, 4
        shares.append(w.shard(batch))
    assert [s.tags for s, _ in shares] == [["a"], ["b"], ["c"], ["a"]]
    assert [weight for _, weight in shares] == [1.0, 1.0, 1.0, 0.0]
    assert shares[1][0].data["data"].shape == (1, 2, 2)  # padding trimmed to the share's longest seq
    np.testing.assert_array_equal(shares[2][0].data["data"][0], batch.data["data"][2, :3])


def test_a_failing_worker_stops_the_run(tmp_path) -> None:
    cfg = tmp_path / "fail.config"
    cfg.write_text(CONFIG + """
import json, os
if json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index") == 1:
    raise RuntimeError("boom in worker 1")
""")
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "returnn_core", "tf-distributed", "--workers", "2", str(cfg),
                           "++model", str(tmp_path / "model")], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env=env)
    assert proc.returncode != 0
    assert "worker 1 exited with status 2" in proc.stderr, proc.stderr[-3000:]
    assert "boom in worker 1" in proc.stderr
    assert time.monotonic() - t0 < 60  # the chief, waiting for its peer, was stopped
    assert not os.path.exists(tmp_path / "model.001.index")
