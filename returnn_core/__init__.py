"""RETURNN core: plugin host, config, dataset API, learning-rate control and the training driver."""

__version__ = "1.0.0"

__all__ = ["__version__"]
