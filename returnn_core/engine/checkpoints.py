"""Checkpoint naming (``model.%03d``, ``model.pretrain.%03d``), atomic saving and finding complete checkpoints."""

from __future__ import annotations

import glob
import os
import re
import shutil

from returnn_core.atomic_write import disk_full, is_disk_full
from returnn_core.engine.backend import Backend
from returnn_core.errors import TrainingError

#: RETURNN's infix of the checkpoints of pretrain epochs (``model.pretrain.003``)
PRETRAIN_INFIX = ".pretrain"
_EPOCH_SUFFIX = r"(?:" + re.escape(PRETRAIN_INFIX) + r")?\.(\d{3,})"


def checkpoint_prefix(model: str, epoch: int, *, pretrain: bool = False) -> str:
    """``<model>.003`` for epoch 3; ``<model>.pretrain.003`` for a pretrain epoch (RETURNN's epoch_model_filename)."""
    return f"{model}{PRETRAIN_INFIX if pretrain else ''}.{epoch:03d}"


def epoch_checkpoint(model: str, epoch: int, marker: str) -> str | None:
    """The prefix of the complete checkpoint of ``epoch``, as a full or a pretrain epoch (RETURNN looks in that
    order), or None."""
    for pretrain in (False, True):
        prefix = checkpoint_prefix(model, epoch, pretrain=pretrain)
        if is_complete(prefix, marker):
            return prefix
    return None


def is_complete(prefix: str, marker: str) -> bool:
    """A checkpoint is complete once its marker file exists (renamed into place last)."""
    return os.path.exists(prefix + marker)


def completed_epochs(model: str, marker: str) -> list[int]:
    """Epochs with a complete checkpoint (pretrain epochs' included), ascending."""
    pattern = re.compile(re.escape(os.path.basename(model)) + _EPOCH_SUFFIX + re.escape(marker) + "$")
    epochs = []
    for path in glob.glob(glob.escape(model) + ".*" + glob.escape(marker)):
        m = pattern.match(os.path.basename(path))
        if m:
            epochs.append(int(m.group(1)))
    return sorted(set(epochs))


def save_checkpoint(backend: Backend, prefix: str) -> None:
    """Let the backend write under a temporary prefix, then rename its files into place, marker last."""
    marker = backend.checkpoint_marker
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    # a stale marker of an earlier, interrupted run must not make a half-renamed set look complete
    if os.path.exists(prefix + marker):
        os.unlink(prefix + marker)
    tmp = f"{prefix}.tmp-{os.getpid()}"
    try:
        files = backend.save(tmp)
    except BaseException as exc:
        for leftover in glob.glob(glob.escape(tmp) + "*"):
            _remove(leftover)
        if is_disk_full(exc):
            model = prefix.rsplit(".", 1)[0].removesuffix(PRETRAIN_INFIX)
            kept = [p for p in (epoch_checkpoint(model, e, marker) for e in completed_epochs(model, marker)) if p != prefix]
            what = f"the previous checkpoint {kept[-1]} is kept" if kept else "no checkpoint was complete yet"
            raise disk_full(tmp, what) from None
        raise
    bad = [f for f in files if not f.startswith(tmp)]
    if bad or not any(f == tmp + marker for f in files):
        raise TrainingError(
            f"backend {backend.name!r} wrote {files} for checkpoint {tmp!r}; expected files starting with the"
            f" prefix, including {tmp + marker!r}"
        )
    for f in sorted(files, key=lambda f: f == tmp + marker):
        os.replace(f, prefix + f[len(tmp) :])



def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def checkpoint_leftovers(model: str) -> list[str]:
    """Temp files of checkpoints (``<model>.NNN.tmp-PID*``, the backend's own temp files included) a killed run left."""
    pattern = re.compile(re.escape(os.path.basename(model)) + _EPOCH_SUFFIX + r"\.tmp-\d+")
    return [p for p in glob.glob(glob.escape(model) + ".*.tmp-*") if pattern.match(os.path.basename(p))]


def remove_leftovers(paths: list[str]) -> None:
    """Delete leftover temp files and folders (only while holding the model's run lock: no live run owns them)."""
    for path in paths:
        _remove(path)
