"""The ``returnn`` command line as an argparse parser: options, commands and environment variables."""

from __future__ import annotations

import argparse
import os
from typing import Any

#: environment variables a user may set, with what each does (shown by ``returnn --help``)
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("RETURNN_CACHE_DIR", "cache of compiled native ops and PyTensor modules (default: ~/.cache/returnn)"),
    ("RETURNN_DISABLE_PLUGINS", "plugins not to load, comma-separated (e.g. native,sprint)"),
    ("RETURNN_PLUGINS_STRICT", "set to 1: a plugin that fails to load stops the command instead of being skipped"),
    ("RETURNN_NATIVE_CXX", "C++ compiler for native ops (default: $CXX, else g++)"),
    ("RETURNN_NATIVE_NVCC", "CUDA compiler for native ops (default: nvcc)"),
    ("RETURNN_KEEP_MALLOC", "set to 1: leave glibc's malloc thresholds alone while reading datasets"),
    ("DISABLE_CUDA", "set to 1: the tf backend hides GPUs"),
    ("TF_CPP_MIN_LOG_LEVEL", "TensorFlow's own log level; unset, returnn silences TF below log_verbosity 5"),
)

DESCRIPTION = """Run the task of a RETURNN config (train, eval, forward, compute_priors); ++key value overrides a
config key. Plugins add commands: returnn COMMAND --help shows each one's options."""


def _epilog(commands: list[tuple[str, str]]) -> str:
    lines = []
    if commands:
        lines.append("commands:")
        lines += [f"  {name:<22}{description}" for name, description in commands]
        lines.append("")
    lines.append("environment variables:")
    lines += [f"  {name:<26}{what}" for name, what in ENVIRONMENT]
    return "\n".join(lines)


def build_parser(commands: list[tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    """The parser of ``returnn``'s own options; ``commands`` (name, description) are listed in the help."""
    commands = commands or []
    p = argparse.ArgumentParser(
        prog="returnn",
        usage="returnn CONFIG... [++key value ...]\n"
        "       returnn COMMAND [args ...]\n"
        "       returnn --list-plugins [-v] [--json]\n"
        "       returnn --version",
        description=DESCRIPTION,
        epilog=_epilog(commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_argument("target", nargs="*", metavar="CONFIG|COMMAND",
                            help="config file(s) with ++key value overrides, or a command and its arguments")
    p.add_argument("--version", action="store_true", help="print the version of returnn-core and exit")
    p.add_argument("--list-plugins", action="store_true",
                   help="list installed plugins, their status and what they provide (imports no backend)")
    p.add_argument("-v", "--verbose", action="store_true", help="with --list-plugins: every provided name")
    p.add_argument("--json", action="store_true", help="with --list-plugins: as JSON")
    target.completer = _target_completer([name for name, _ in commands])  # type: ignore[attr-defined]
    return p


def _target_completer(commands: list[str]) -> Any:
    """Shell completion of the first word: command names and files."""

    def complete(prefix: str, **_: Any) -> list[str]:
        directory = os.path.dirname(prefix)
        try:
            entries = os.listdir(directory or ".")
        except OSError:
            entries = []
        paths = [os.path.join(directory, e) + ("/" if os.path.isdir(os.path.join(directory, e)) else "")
                 for e in entries]
        return [c for c in [*commands, *paths] if c.startswith(prefix)]

    return complete


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (argcomplete, when installed) and exit; otherwise do nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)
