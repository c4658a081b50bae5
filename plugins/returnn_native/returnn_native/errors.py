"""Errors of the native-op plugin, as core error types so the CLI prints them as one line."""

from __future__ import annotations

from returnn_core.errors import PluginError


class NativeOpError(PluginError):
    """A native op cannot be built or used (no compiler, no BLAS, bad shapes)."""


class NativeCompileError(NativeOpError):
    """The compiler failed; the message holds the command and the compiler's log."""
