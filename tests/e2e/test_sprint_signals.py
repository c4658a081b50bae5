"""Sprint children never outlive or wedge a ``returnn`` run: SIGTERM, SIGINT and SIGKILL to ``returnn`` while a
stand-in Sprint child hangs, and a Sprint loss child that dies or hangs (``reading_timeout``), each end with one line
and no child left.

The six runs go concurrently to share their TensorFlow start-up. This test process is made a child subreaper
while they run, so a child that outlived ``returnn`` would be re-parented here and show up by its pid.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("tensorflow")

from sprint_corpus import FAKE_SPRINT, NUM_CLASSES, make_corpus  # noqa: E402

RETURNN = str(pathlib.Path(sys.executable).parent / "returnn")
PR_SET_CHILD_SUBREAPER = 36


def _config(tmp: pathlib.Path, *, dataset_faults: str = "", loss_faults: str = "", **sprint_opts: object) -> pathlib.Path:
    corpus = make_corpus(tmp / "train.npz", 10, 7)
    train = {"class": "ExternSprintDataset", "sprintTrainerExecPath": [sys.executable, FAKE_SPRINT],
             "sprintConfigStr": f"--*.corpus.file={corpus} {dataset_faults}"}
    output = {"class": "softmax", "n_out": NUM_CLASSES, "from": ["hidden"], "loss": "ce"}
    if loss_faults:
        sprint_opts.update(sprintExecPath=[sys.executable, FAKE_SPRINT],
                           sprintConfigStr=f"--*.corpus.file={corpus} --*.action=python-control {loss_faults}")
        output.update(loss="sprint", loss_opts={"sprint_opts": sprint_opts})
    cfg = tmp / "run.config"
    cfg.write_text(f"""#!returnn
backend = "tf"
task = "train"
train = {train!r}
batch_size = 400
max_seqs = 4
network = {{"hidden": {{"class": "linear", "activation": "tanh", "n_out": 8}}, "output": {output!r}}}
learning_rate = 0.01
model = "{tmp}/model"
num_epochs = 3
log_verbosity = 2
""")
    return cfg


def _wait_for(path: pathlib.Path, procs: dict, timeout: float = 900.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for name, (proc, _) in procs.items():
            assert proc.poll() is None, f"{name} ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.2)
    return int(path.read_text())


def _state(pid: int) -> str | None:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _reap_orphans(timeout: float = 10.0) -> dict[int, int]:
    """Wait for whatever outlived returnn and was re-parented here: pid -> wait status."""
    reaped: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            reaped[pid] = status
        else:
            time.sleep(0.2)
    return reaped


def test_signals_and_failing_children_end_the_run_cleanly(tmp_path):
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    hung: dict[str, int] = {}
    results: dict[str, tuple[int, float, str]] = {}
    hang_in_epoch_2 = "--*.fake.faults-in-epoch=2 --*.fake.hang-after=3 --*.fake.hang-marker={marker}"
    runs = {
        "SIGTERM": {"dataset_faults": hang_in_epoch_2},
        "SIGINT": {"dataset_faults": hang_in_epoch_2},
        "SIGKILL": {"dataset_faults": "--*.fake.hang-after=3 --*.fake.hang-marker={marker}"},
        "SIGTERM-in-step": {"loss_faults": "--*.fake.hang-on-segment=corpus/rec2/2 --*.fake.hang-marker={marker}"},
        "loss-child-dies": {"loss_faults": "--*.fake.die-on-segment=corpus/rec2/2"},
        "loss-child-hangs": {"loss_faults": "--*.fake.hang-on-segment=corpus/rec2/2", "reading_timeout": 20},
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs: dict[str, tuple[subprocess.Popen, pathlib.Path]] = {}
    try:
        for name, faults in runs.items():
            tmp = tmp_path / name
            tmp.mkdir()
            marker = tmp / "hanging.pid"
            cfg = _config(tmp, **{k: v.format(marker=marker) if isinstance(v, str) else v for k, v in faults.items()})
            with open(tmp / "stdout.txt", "w") as log:
                proc = subprocess.Popen([RETURNN, str(cfg)], cwd=tmp, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
            procs[name] = (proc, marker)
        failing = {name: procs[name][0] for name in ("loss-child-dies", "loss-child-hangs")}
        signalled = {name: run for name, run in procs.items() if name not in failing}
        hung.update({name: _wait_for(marker, signalled) for name, (_, marker) in signalled.items()})
        sent = {}
        for name, (proc, _) in signalled.items():
            proc.send_signal(getattr(signal, name.split("-")[0]))
            sent[name] = time.monotonic()
        for name, (proc, _) in signalled.items():
            _, err = proc.communicate(timeout=60)
            results[name] = (proc.returncode, time.monotonic() - sent[name], err)
        failed = {name: (proc.communicate(timeout=900)[1], proc.returncode) for name, proc in failing.items()}
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reaped = _reap_orphans()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in hung.values():
            if _state(pid) not in (None, "Z"):
                os.kill(pid, signal.SIGKILL)  # a failed run must not leave an hour-long sleeper behind

    for name, (_, elapsed, err) in results.items():
        assert elapsed < 30, f"{name}: returnn took {elapsed:.1f} s to stop"
        assert "Traceback" not in err, f"{name}: {err[-3000:]}"
    expected_kept = "the newest complete checkpoint {}/model.001 is kept; run again to resume"
    for name in ("SIGTERM", "SIGINT"):
        code, _, err = results[name]
        assert code == 128 + getattr(signal, name), (name, code, err[-2000:])
        assert err.strip().splitlines()[-1] == f"returnn: error: stopped by {name}; " + expected_kept.format(tmp_path / name)
        assert _state(hung[name]) is None and hung[name] not in reaped, f"{name}: Sprint child {hung[name]} left"
    code, _, err = results["SIGTERM-in-step"]
    assert code == 143 and err.strip().splitlines()[-1] == (
        "returnn: error: stopped by SIGTERM; no checkpoint of this run was complete yet"
    ), err[-2000:]
    assert _state(hung["SIGTERM-in-step"]) is None and hung["SIGTERM-in-step"] not in reaped
    # SIGKILL: returnn cannot clean up; the parent-death signal killed the child, which was re-parented to us
    assert results["SIGKILL"][0] == -signal.SIGKILL
    pid = hung["SIGKILL"]
    assert _state(pid) is None
    assert pid in reaped and os.WIFSIGNALED(reaped[pid]) and os.WTERMSIG(reaped[pid]) == signal.SIGKILL
    for name, what in (("loss-child-dies", "the child closed its pipe (died?) before the expected message; exit status 3"),
                       ("loss-child-hangs", "no message from the child within 20 s (reading_timeout; hung?); killed it; "
                                            "killed by signal SIGKILL")):
        err, code = failed[name]
        lines = [line for line in err.strip().splitlines() if line.startswith("returnn:")]
        assert code == 1 and lines == [err.strip().splitlines()[-1]] and "Traceback" not in err, err[-3000:]
        assert lines[0].startswith("returnn: error: Sprint loss of segment 'corpus/rec2/2': Sprint error-signal child (pid ")
        assert f"...): {what}; last output: " in lines[0], lines[0]
        last = "simulated crash" if name == "loss-child-dies" else "hanging"
        assert lines[0].endswith(f"fake sprint: {last} on corpus/rec2/2 (child fault 1 of this run; maxChildFaults 0)")
