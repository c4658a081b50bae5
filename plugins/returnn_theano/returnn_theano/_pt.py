"""The one place that imports PyTensor, after RETURNN's flags are set."""

from returnn_theano.pytensor_setup import configure, quiet_pytensor

configure()

import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from pytensor.scan import scan  # noqa: E402
from pytensor.tensor.random.variable import shared_rng  # noqa: E402
from pytensor.tensor.sharedvar import TensorSharedVariable  # noqa: E402
from pytensor.tensor.variable import TensorConstant, TensorVariable  # noqa: E402

quiet_pytensor()

floatX = "float32"

__all__ = ["TensorConstant", "TensorSharedVariable", "TensorVariable", "floatX", "pt", "pytensor", "scan", "shared_rng"]
