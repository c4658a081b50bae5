"""Compatibility: :class:`LayerOutput` now lives in the core (``returnn_core.frontend``); old TF plugins import it here."""

from returnn_core.frontend import LayerOutput

__all__ = ["LayerOutput"]
