"""Layers of the Theano backend, registered under ``layers`` with ``backend="theano"``."""
