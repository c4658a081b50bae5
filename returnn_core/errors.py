"""Errors the core raises; each carries a message meant for the user, not a traceback."""

from __future__ import annotations


class ReturnnError(Exception):
    """Base of all errors the ``returnn`` command reports as one clean line."""


class ConfigError(ReturnnError):
    """A config file or command-line override is broken."""


class PluginError(ReturnnError):
    """A plugin could not be loaded or used."""


class PluginConflictError(PluginError):
    """Two plugins registered different targets under one name."""


class PluginUnavailableError(PluginError, LookupError):
    """Something was asked for that a failed, disabled or missing plugin would provide."""


class UnknownNameError(ReturnnError, LookupError):
    """A name (layer class, dataset class, ...) is not registered."""


class NetworkError(ReturnnError):
    """The ``network`` dict is inconsistent (unknown layer, cycle, bad option)."""


class DatasetError(ReturnnError):
    """A dataset could not be constructed or read."""


class TrainingError(ReturnnError):
    """Training cannot go on (NaN loss, missing checkpoint, ...)."""
