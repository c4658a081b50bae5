"""RETURNN TensorFlow backend."""
