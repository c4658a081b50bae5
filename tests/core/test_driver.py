"""The training driver over a real (numpy) backend plugin: epochs, scores, checkpoints, resume, bad input."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from fake_dist import HERE, install_toy_plugin

from returnn_core.config import Config
from returnn_core.engine import Engine, completed_epochs
from returnn_core.errors import ConfigError, TrainingError
from returnn_core.learning_rate import load_state
from returnn_core.log import Log

NETWORK = {"output": {"class": "softmax", "loss": "ce", "n_out": 2}}


def make_config(tmp_path, **extra) -> Config:
    values = {
        "backend": "toy",
        "task": "train",
        "train": {"class": "ToyDataset", "num_seqs": 30, "seq_ordering": "random"},
        "dev": {"class": "ToyDataset", "num_seqs": 10, "fixed_random_seed": 1},
        "network": NETWORK,
        "num_epochs": 3,
        "batch_size": 40,
        "max_seqs": 4,
        "learning_rate": 1.0,
        "learning_rate_control": "newbob",
        "learning_rate_file": str(tmp_path / "lr.txt"),
        "model": str(tmp_path / "net" / "model"),
    }
    values.update(extra)
    return Config(values)


def run(config, manager) -> str:
    out = io.StringIO()
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    return out.getvalue()


EPOCH_LINE = re.compile(r"^epoch (\d+) score: ([\d.e-]+) elapsed: \d+:\d\d:\d\d dev: score ([\d.e-]+) error ([\d.e-]+)$", re.M)


def test_train_learns_writes_checkpoints_and_lr_file(tmp_path, manager):
    log = run(make_config(tmp_path), manager)
    lines = EPOCH_LINE.findall(log)
    assert [int(e) for e, *_ in lines] == [1, 2, 3]
    dev_errors = [float(err) for *_, err in lines]
    assert dev_errors[-1] < 0.15, log  # linearly separable task: it must learn
    assert completed_epochs(str(tmp_path / "net" / "model"), ".npz") == [1, 2, 3]
    state = load_state(str(tmp_path / "lr.txt"))
    assert sorted(state) == [1, 2, 3] and state[1].learning_rate == 1.0
    assert set(state[3].error) == {"train_score", "train_error", "dev_score", "dev_error"}
    assert float(lines[-1][2]) == pytest.approx(state[3].error["dev_score"], rel=1e-5)


def test_resume_continues_from_newest_complete_checkpoint(tmp_path, manager):
    run(make_config(tmp_path, num_epochs=2), manager)
    # an interrupted save of epoch 3: data without its marker must not count as a checkpoint
    (tmp_path / "net" / "model.003.tmp-123.npz").write_bytes(b"partial")
    log = run(make_config(tmp_path, num_epochs=4), manager)
    assert "resuming from" in log and "model.002" in log
    assert [int(e) for e, *_ in EPOCH_LINE.findall(log)] == [3, 4]
    with np.load(tmp_path / "net" / "model.004.npz") as f:
        with np.load(tmp_path / "net" / "model.002.npz") as g:
            assert int(f["steps"]) > int(g["steps"]) > 0  # optimizer state (step count) carried over
    log = run(make_config(tmp_path, num_epochs=4), manager)
    assert "nothing to do" in log


def test_save_interval_and_load_epoch(tmp_path, manager):
    run(make_config(tmp_path, num_epochs=3, save_interval=2), manager)
    assert completed_epochs(str(tmp_path / "net" / "model"), ".npz") == [2, 3]
    with pytest.raises(TrainingError, match="no complete checkpoint .*model.001"):
        run(make_config(tmp_path, num_epochs=4, load_epoch=1), manager)


def test_nan_loss_stops_epoch_and_keeps_last_good_checkpoint(tmp_path, manager):
    config = make_config(tmp_path, train={"class": "ToyDataset", "num_seqs": 30, "nan_in_epoch": 2})
    with pytest.raises(TrainingError, match=r"epoch 2 step \d+: non-finite loss \(output=nan\).*model.001 is kept"):
        run(config, manager)
    assert completed_epochs(str(tmp_path / "net" / "model"), ".npz") == [1]
    assert sorted(load_state(str(tmp_path / "lr.txt"))) == [1]  # the failed epoch left no record


def test_eval_forward_and_priors(tmp_path, manager):
    run(make_config(tmp_path, num_epochs=1), manager)
    log = run(make_config(tmp_path, task="eval"), manager)
    assert re.search(r"epoch 1 dev: score [\d.]+ error [\d.]+", log)
    out = tmp_path / "fwd.npz"
    run(make_config(tmp_path, task="forward", eval={"class": "ToyDataset", "num_seqs": 5}, output_file=str(out)), manager)
    with np.load(out) as f:
        assert sorted(f.files) == [f"seq-{i}" for i in range(5)]
        assert f["seq-1"].shape == (8, 2) and np.allclose(f["seq-1"].sum(-1), 1.0, atol=1e-5)
    priors = tmp_path / "priors.txt"
    run(make_config(tmp_path, task="compute_priors", output_file=str(priors)), manager)
    values = np.array([float(x) for x in priors.read_text().split()])
    assert values.shape == (2,) and np.isclose(np.exp(values).sum(), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("extra", "error", "pattern"),
    [
        ({"model": None}, ConfigError, "set 'model'"),
        ({"train": None}, ConfigError, "needs a 'train' dataset"),
        ({"task": "dance"}, ConfigError, "unknown task 'dance'"),
        ({"backend": "tf"}, Exception, "backend 'tf' needs plugin 'tf': pip install returnn-tf"),
        ({"network": {"output": {"class": "linear", "loss": "ce", "n_out": 2}}}, Exception, "knows only 'softmax'"),
        ({"train": {"class": "ToyDataset", "num_seqs": 0}}, TrainingError, "gave no batch"),
    ],
)
def test_bad_configs_give_clear_errors(tmp_path, manager, extra, error, pattern):
    with pytest.raises(error, match=pattern):
        run(make_config(tmp_path, **extra), manager)


def test_killed_run_resumes_from_newest_complete_checkpoint(tmp_path):
    """A real `returnn CONFIG` process is SIGKILLed mid-training; the rerun resumes and finishes."""
    site = install_toy_plugin(tmp_path)
    cfg = tmp_path / "train.config"
    cfg.write_text(
        "#!python\n"
        f"backend = 'toy'\nmodel = {str(tmp_path / 'm' / 'model')!r}\nlearning_rate_file = {str(tmp_path / 'lr')!r}\n"
        "train = {'class': 'ToyDataset', 'num_seqs': 20, 'sleep_per_seq': 0.01}\n"
        f"network = {NETWORK!r}\nnum_epochs = 6\nbatch_size = 40\nmax_seqs = 2\nlearning_rate = 0.5\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "returnn_core", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    model = str(tmp_path / "m" / "model")
    deadline = time.monotonic() + 60
    while not completed_epochs(model, ".npz") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = completed_epochs(model, ".npz")
    assert done and done[-1] < 6, "the kill should land mid-training"
    res = subprocess.run([sys.executable, "-m", "returnn_core", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    epochs = [int(e) for e, *_ in re.findall(r"^epoch (\d+) score", res.stdout, re.M)]
    assert epochs[0] == done[-1] + 1 and epochs[-1] == 6
    assert completed_epochs(model, ".npz") == sorted(set(done) | set(epochs))


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, to see the progress line."""

    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal(tmp_path, manager):
    out = FakeTerminal()
    config = make_config(tmp_path, num_epochs=1, train={"class": "ToyDataset", "num_seqs": 30, "sleep_per_seq": 0.01})
    Engine(config, manager=manager, log=Log(verbosity=3, stream=out)).run()
    text = out.getvalue()
    assert re.search(r"\rtrain epoch 1: +\d+%\|.*\| \d+/30 \[00:00<00:0\d, ", text)  # tqdm's bar with its ETA
    assert re.search(r"\r +\repoch 1 score:", text)  # the bar is cleared before the score line


def test_datasets_are_closed_after_the_task_even_on_failure(tmp_path, manager):
    from toy_plugin import ToyDataset

    ToyDataset.instances.clear()
    run(make_config(tmp_path, num_epochs=1), manager)
    assert len(ToyDataset.instances) == 2 and all(d.closed for d in ToyDataset.instances)
    ToyDataset.instances.clear()
    with pytest.raises(TrainingError):
        run(make_config(tmp_path / "x", train={"class": "ToyDataset", "num_seqs": 30, "nan_in_epoch": 1}), manager)
    assert ToyDataset.instances and all(d.closed for d in ToyDataset.instances)


def test_batching_key_orders_the_train_set(tmp_path, manager):
    from toy_plugin import ToyDataset

    ToyDataset.instances.clear()
    run(make_config(tmp_path, num_epochs=1, batching="sorted", train={"class": "ToyDataset", "num_seqs": 9}), manager)
    train = ToyDataset.instances[0]
    assert train.seq_ordering == "sorted" and ToyDataset.instances[1].seq_ordering == "default"


def test_non_chief_worker_writes_no_files(tmp_path, manager):
    from toy_plugin import NumpyBackend

    class Worker(NumpyBackend):
        @property
        def is_chief(self) -> bool:
            return False

    manager.backends.register("toyworker", Worker)
    log = run(make_config(tmp_path, backend="toyworker", num_epochs=2), manager)
    assert "epoch 2 score:" in log
    assert not (tmp_path / "net").exists() and not (tmp_path / "lr.txt").exists()


def test_line_based_config_gives_the_network_as_json_text(tmp_path, manager):
    """RETURNN's line-based configs hold ``network`` as JSON text, here spread over several lines."""
    path = tmp_path / "setup.config"
    path.write_text(
        "backend toy\ntask train\nnum_epochs 1\nbatch_size 40\nmax_seqs 4\nlearning_rate 1.0\n"
        f"model {tmp_path / 'net' / 'model'}\nlearning_rate_file {tmp_path / 'lr.txt'}\n"
        "network {\n"
        '  "output": {"class": "softmax", "loss": "ce", "n_out": 2}\n'
        "}\n"
    )
    config = Config()
    config.load_file(str(path))
    config.set("train", {"class": "ToyDataset", "num_seqs": 12})
    assert isinstance(config.value("network"), str)
    assert "epoch 1" in run(config, manager)
    assert completed_epochs(str(tmp_path / "net" / "model"), ".npz") == [1]


def test_network_text_that_is_no_dict_names_the_key(tmp_path, manager):
    config = make_config(tmp_path, network='{"output": {"class": "softmax",')
    with pytest.raises(ConfigError, match=r"^network: the text is neither JSON \(.*\) nor a RETURNN dict literal"):
        run(config, manager)


def test_use_last_best_model_goes_back_to_the_better_checkpoint(tmp_path, manager):
    from returnn_core.learning_rate import save_state

    run(make_config(tmp_path, num_epochs=2), manager)
    lr_file = str(tmp_path / "lr.txt")
    state = load_state(lr_file)
    state[1].error["dev_score"], state[2].error["dev_score"] = 0.1, 0.9  # epoch 1 clearly better than the last
    save_state(lr_file, state)
    model = tmp_path / "net" / "model"
    log = run(make_config(tmp_path, num_epochs=3, use_last_best_model={"min_score_dist": 0.5}), manager)
    assert "Last epoch 2 (score: 0.9) is not the optimal model but epoch 1 has better score 0.1" in log
    with np.load(f"{model}.001.npz") as e1, np.load(f"{model}.002.npz") as e2, np.load(f"{model}.003.npz") as e3:
        per_epoch = int(e1["steps"])
        assert int(e2["steps"]) == 2 * per_epoch and int(e3["steps"]) == 2 * per_epoch  # epoch 3 started from 1

    state[2].error["dev_score"] = 0.5  # not better by min_score_dist: no going back
    save_state(lr_file, state)
    (tmp_path / "net" / "model.003.npz").unlink()
    log = run(make_config(tmp_path, num_epochs=3, use_last_best_model={"min_score_dist": 0.5}), manager)
    assert "is not the optimal model" not in log


def test_use_last_best_model_rejects_unknown_options(tmp_path, manager):
    with pytest.raises(ConfigError, match=r"use_last_best_model: unknown option\(s\) min_score_diff"):
        run(make_config(tmp_path, use_last_best_model={"min_score_diff": 0.1}), manager)


def test_task_nop_loads_the_config_and_runs_nothing(tmp_path, manager):
    log = run(make_config(tmp_path, task="nop"), manager)
    assert "Task: No-operation" in log and not (tmp_path / "net").exists() and not (tmp_path / "lr.txt").exists()
