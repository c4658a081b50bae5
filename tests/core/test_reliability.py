"""Real ``returnn`` processes on the toy backend: one run per model, a killed run's leftovers, SIGTERM, a full disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fake_dist import HERE, install_toy_plugin, make_distribution

from returnn_core.engine import completed_epochs

NETWORK = {"output": {"class": "softmax", "loss": "ce", "n_out": 2}}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    site = install_toy_plugin(tmp_path)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(site), os.environ.get("PYTHONPATH", "")])}


def write_config(path, folder, *, num_epochs: int = 3, sleep: float = 0.0) -> str:
    path.write_text(
        "#!python\n"
        f"backend = 'toy'\nmodel = {str(folder / 'model')!r}\nlearning_rate_file = {str(folder / 'lr')!r}\n"
        f"train = {{'class': 'ToyDataset', 'num_seqs': 20, 'sleep_per_seq': {sleep}}}\n"
        f"network = {NETWORK!r}\nnum_epochs = {num_epochs}\nbatch_size = 40\nmax_seqs = 2\nlearning_rate = 0.5\n"
    )
    return str(path)


def start(cfg: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "returnn_core", cfg], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run(cfg: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "returnn_core", cfg, *extra], env=env, capture_output=True, text=True,
                          timeout=120)


def test_second_run_on_a_model_refuses_and_a_dead_holders_lock_is_taken_over(tmp_path, env):
    folder = tmp_path / "out"
    cfg = write_config(tmp_path / "a.config", folder, num_epochs=50, sleep=0.02)
    first = start(cfg, env)
    lock = folder / "model.lock"
    wait_for(lambda: lock.exists() and lock.read_text().startswith("pid"))
    second = run(cfg, env)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"returnn: error: model {folder / 'model'} is being trained by pid {first.pid} on host {os.uname().nodename} "
        f"(lock {lock}); wait for that run to end, or give this one another 'model'"
    ]
    wait_for(lambda: completed_epochs(str(folder / "model"), ".npz"))
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = completed_epochs(str(folder / "model"), ".npz")[-1]
    third = run(cfg, env, "++num_epochs", str(done + 1))  # the killed run's lock is stale: taken over, training resumes
    assert third.returncode == 0, third.stderr
    assert f"resuming from {folder / 'model'}.{done:03d}" in third.stdout
    assert completed_epochs(str(folder / "model"), ".npz")[-1] == done + 1


def test_restart_removes_the_temp_files_of_a_killed_run(tmp_path, env):
    folder = tmp_path / "out"
    folder.mkdir()
    cfg = write_config(tmp_path / "a.config", folder, num_epochs=1)
    leftovers = [folder / "model.002.tmp-4242.npz", folder / "model.002.tmp-4242.data-00000-of-00001.tempstate77",
                 folder / "lr.x1y2z3.tmp"]
    for path in leftovers:
        path.write_text("half")
    keep = folder / "model.notes.txt"
    keep.write_text("mine")
    res = run(cfg, env)
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in leftovers) and keep.read_text() == "mine"
    assert "removed 3 temp file(s) a killed run left" in res.stdout


def test_sigterm_stops_at_a_step_boundary_keeping_the_last_checkpoint(tmp_path, env):
    folder = tmp_path / "out"
    cfg = write_config(tmp_path / "a.config", folder, num_epochs=50, sleep=0.01)
    proc = start(cfg, env)
    wait_for(lambda: completed_epochs(str(folder / "model"), ".npz"))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    done = completed_epochs(str(folder / "model"), ".npz")
    assert err.strip().splitlines() == [
        f"returnn: error: stopped by SIGTERM; the newest complete checkpoint {folder / 'model'}.{done[-1]:03d} is kept;"
        " run again to resume"
    ]
    assert not list(folder.glob("*.tmp*"))


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare with mount namespaces for a small tmpfs")
def test_full_disk_gives_one_line_and_keeps_the_previous_checkpoint(tmp_path, env):
    disk = tmp_path / "disk"
    disk.mkdir()
    out = tmp_path / "copy"
    cfg = write_config(tmp_path / "a.config", disk, num_epochs=30, sleep=0.005)
    # in a private mount namespace: a 256 KiB tmpfs holds the model; once epoch 1 is saved the disk is filled
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {disk} && "
        f"{sys.executable} -m returnn_core {cfg} >{tmp_path}/stdout 2>{tmp_path}/stderr & "
        f"while [ ! -e {disk}/model.001.npz ]; do sleep 0.02; done; "
        f"dd if=/dev/zero of={disk}/fill bs=4k 2>/dev/null; "
        f"wait $!; echo $? >{tmp_path}/rc; rm -f {disk}/fill; cp -a {disk} {out}"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, timeout=120, check=True)
    rc = int((tmp_path / "rc").read_text())
    err = (tmp_path / "stderr").read_text().strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"returnn: error: disk full while writing {disk}/") and "B free)" in err[0]
    assert "is kept" in err[0] and "Traceback" not in err[0]
    done = completed_epochs(str(out / "model"), ".npz")
    assert done and all(os.path.getsize(out / f"model.{e:03d}.npz") > 0 for e in done)
    import numpy as np

    with np.load(out / f"model.{done[-1]:03d}.npz") as f:  # the kept checkpoint is whole
        assert set(f.files) >= {"output/W", "output/b"}
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_a_log_file_on_a_full_disk_gives_one_line(tmp_path, env):
    folder = tmp_path / "out"
    cfg = write_config(tmp_path / "a.config", folder, num_epochs=1)
    with open(cfg, "a") as f:
        f.write("log = '/dev/full'\n")  # every write to /dev/full fails with ENOSPC
    res = run(cfg, env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "returnn: error: disk full while writing /dev/full or a plugin's file ("
        + res.stderr.split("(", 1)[1].split(")", 1)[0]
        + "); no checkpoint of this run was complete yet; free some space and run again"
    ]
    assert " free on the model's file system" in res.stderr


def test_config_errors_come_before_the_backend_is_imported(tmp_path, env):
    site = tmp_path / "heavy-site"
    site.mkdir()
    make_distribution(site, "returnn-heavy", "heavy_hooks", (
        "from returnn_core.plugin import hookimpl\n\n"
        "@hookimpl\ndef returnn_register_backends(registry):\n"
        "    registry.register('heavy', 'heavy_backend:Backend')\n"
    ), plugin_name="heavy")
    marker = tmp_path / "imported"
    (site / "heavy_backend.py").write_text(f"open({str(marker)!r}, 'w').close()\nBackend = None\n")
    cfg = tmp_path / "a.config"
    cfg.write_text(f"backend heavy\nmodel {tmp_path / 'out' / 'model'}\nnum_epochs 0\nnetwork {{}}\n")
    res = run(str(cfg), {**env, "PYTHONPATH": os.pathsep.join([str(site), env["PYTHONPATH"]])})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "returnn: error: config key 'num_epochs': '0' is not allowed; expected an int >= 1"
    ]
    assert not marker.exists()  # the backend's module was never imported
