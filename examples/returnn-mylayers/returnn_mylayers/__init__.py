"""Example third-party RETURNN plugin: the ``gated_linear`` layer."""
