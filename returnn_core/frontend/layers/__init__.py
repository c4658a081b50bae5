"""The layers of the core frontend, written once against :class:`~returnn_core.frontend.Ops` for every backend."""
