# PYTHON_ARGCOMPLETE_OK  (argcomplete looks for this marker: `eval "$(register-python-argcomplete returnn)"`)
"""The ``returnn`` command: run configs, list plugins, dispatch plugin subcommands."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence

from returnn_core import __version__
from returnn_core.errors import ConfigError, ReturnnError

__all__ = ["main"]

def _parser(manager: object | None) -> argparse.ArgumentParser:
    from returnn_core.cli.parser import build_parser

    tools = getattr(manager, "cli_tools", None) or []
    commands = [(e.name, e.description) for e in sorted(tools, key=lambda e: e.name) if e.alias_of is None]
    return build_parser(commands)


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

        if "_ARGCOMPLETE" in os.environ:
            from returnn_core.cli.parser import enable_completion

            enable_completion(_parser(get_plugin_manager()))
        if args[:1] == ["--list-plugins"]:
            from returnn_core.cli.list_plugins import list_plugins

            options = {"-v": "verbose", "--verbose": "verbose", "--json": "json"}
            extra = set(args[1:]) - set(options)
            if extra:
                raise ConfigError(f"--list-plugins takes only -v/--verbose and --json, got {' '.join(sorted(extra))}")
            chosen = {options[a] for a in args[1:]}
            return list_plugins(get_plugin_manager(), sys.stdout, as_json="json" in chosen, verbose="verbose" in chosen)
        manager = get_plugin_manager()
        if not args or args[0] in ("-h", "--help"):
            sys.stdout.write(_parser(manager).format_help())
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
