"""RETURNN Theano-API backend on PyTensor."""
