"""RETURNN dataset implementations."""
