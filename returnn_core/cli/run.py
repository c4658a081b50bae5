"""``returnn CONFIG... [++key value]``: load the config and run its task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from returnn_core.config import Config
from returnn_core.errors import ReturnnError


def _kept(engine: Any) -> str:
    from returnn_core.engine.checkpoints import epoch_checkpoint

    last = engine.last_epoch() if engine is not None else None
    return (
        f"the newest complete checkpoint {epoch_checkpoint(engine.model, last, engine.backend_cls.checkpoint_marker)} "
        "is kept; run again to resume"
        if last is not None
        else "no checkpoint of this run was complete yet"
    )


def _stopped_message(engine: Any, signum: int) -> str:
    from returnn_core.engine.signals import signal_name

    return f"stopped by {signal_name(signum)}; {_kept(engine)}"


def run_config(args: Sequence[str]) -> int:
    """Run the task of the config given on the command line; exit status 0 on success."""
    from returnn_core.atomic_write import is_disk_full
    from returnn_core.cli.process_exit import skip_final_collection
    from returnn_core.config.schema import validate_config
    from returnn_core.engine import Engine, relayed_errors
    from returnn_core.engine.run_lock import training_guard
    from returnn_core.engine.signals import RunStopped, stop_on_signals, stop_signal
    from returnn_core.log import Log
    from returnn_core.plugin import get_plugin_manager

    skip_final_collection()
    config = Config.from_args(args)
    get_plugin_manager().prefer(config.list("prefer_plugins"))
    validate_config(config, get_plugin_manager())  # every mistake found now, before a backend is imported
    log = Log.from_config(config)
    engine = None
    relayed_errors.take()  # one left from an earlier run in this process is not this run's cause
    try:
        with stop_on_signals():
            try:
                with training_guard(config, log):
                    engine = Engine(config, log=log)
                    engine.run()
            except BaseException as exc:
                signum = stop_signal()
                if signum is not None:  # whatever the stop broke on its way out, the stop is the cause
                    raise RunStopped(_stopped_message(engine, signum), signum) from None
                relayed = relayed_errors.take()
                if relayed is not None and not isinstance(exc, ReturnnError):
                    raise relayed from None
                if is_disk_full(exc) and not isinstance(exc, ReturnnError):  # a log file, a plugin's own output
                    raise _disk_full(exc, engine, config) from None
                raise
    except BaseException:
        try:
            log.close()
        except OSError:
            pass  # a log that cannot be flushed must not hide the error on its way out
        raise
    try:
        log.close()
    except OSError as exc:
        if is_disk_full(exc):
            raise _disk_full(exc, engine, config) from None
        raise
    return 0


def _disk_full(exc: BaseException, engine: Any, config: Config) -> ReturnnError:
    from returnn_core.atomic_write import DiskFullError, disk_full, free_space

    filename = getattr(exc, "filename", None)
    if filename:
        return disk_full(str(filename), _kept(engine))
    logs = ", ".join(config.list("log", [])) or "the output"
    return DiskFullError(
        f"disk full while writing {logs} or a plugin's file ({free_space(config.value('model', None) or '.')} on the "
        f"model's file system); {_kept(engine)}; free some space and run again"
    )
