"""The ``returnn`` command: run configs, list plugins, dispatch plugin subcommands."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence

from returnn_core import __version__
from returnn_core.errors import ConfigError, ReturnnError

__all__ = ["main"]

USAGE = """usage: returnn CONFIG... [++key value ...]
       returnn --list-plugins [--json]
       returnn --version
       returnn COMMAND [args ...]

Runs the task of a RETURNN config (train, eval, forward, compute_priors); ++key value overrides a config key.
"""


def _usage(manager: object | None) -> str:
    text = USAGE
    tools = getattr(manager, "cli_tools", None)
    if tools is not None and len(tools):
        text += "\ncommands:\n" + "\n".join(
            f"  {e.name:<20} {e.description}" for e in sorted(tools, key=lambda e: e.name) if e.alias_of is None
        )
    return text + "\n"


def _looks_like_command(arg: str) -> bool:
    return not os.path.exists(arg) and "." not in arg and "/" not in arg and not arg.startswith("+")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``returnn`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["--version"]:
            print(f"returnn-core {__version__}")
            return 0
        from returnn_core.plugin import get_plugin_manager

        if args[:1] == ["--list-plugins"]:
            from returnn_core.cli.list_plugins import list_plugins

            extra = set(args[1:]) - {"--json"}
            if extra:
                raise ConfigError(f"--list-plugins takes only --json, got {' '.join(sorted(extra))}")
            return list_plugins(get_plugin_manager(), sys.stdout, as_json="--json" in args[1:])
        manager = get_plugin_manager()
        if not args or args[0] in ("-h", "--help"):
            sys.stdout.write(_usage(manager))
            return 0 if args else 2
        if args[0] in manager.cli_tools:
            tool = manager.cli_tools.get(args[0])
            return int(tool(args[1:]) or 0)
        if _looks_like_command(args[0]):
            known = manager.cli_tools.names()
            close = difflib.get_close_matches(args[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{args[0]!r} is neither a config file nor a command{hint} (commands: {', '.join(known) or 'none'})"
            )
        from returnn_core.cli.run import run_config

        return run_config(args)
    except ReturnnError as exc:
        print(f"returnn: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", None) or (2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        print("returnn: interrupted", file=sys.stderr)
        return 130
