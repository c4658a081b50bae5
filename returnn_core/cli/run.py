"""``returnn CONFIG... [++key value]``: load the config and run its task."""

from __future__ import annotations

from collections.abc import Sequence

from returnn_core.config import Config


def run_config(args: Sequence[str]) -> int:
    """Run the task of the config given on the command line; exit status 0 on success."""
    from returnn_core.engine import Engine
    from returnn_core.log import Log

    config = Config.from_args(args)
    log = Log.from_config(config)
    try:
        Engine(config, log=log).run()
    finally:
        log.close()
    return 0
