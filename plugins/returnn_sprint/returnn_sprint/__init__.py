"""RETURNN RASR (Sprint) integration."""
