"""The Backend interface and the training driver that runs any backend."""

from returnn_core.engine.backend import Backend, StepResult
from returnn_core.engine.backend_choice import select_backend
from returnn_core.engine.checkpoints import checkpoint_prefix, completed_epochs, is_complete, save_checkpoint
from returnn_core.engine.driver import TASKS, Engine, score_summary
from returnn_core.engine.optimizer_config import OptimizerSettings
from returnn_core.engine.output import OutputWriter

__all__ = [
    "TASKS",
    "Backend",
    "Engine",
    "OptimizerSettings",
    "OutputWriter",
    "StepResult",
    "checkpoint_prefix",
    "completed_epochs",
    "is_complete",
    "save_checkpoint",
    "score_summary",
    "select_backend",
]
