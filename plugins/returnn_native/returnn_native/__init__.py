"""RETURNN native CPU/CUDA ops (NativeLSTM)."""
