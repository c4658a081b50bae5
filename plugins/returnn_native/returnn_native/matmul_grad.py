"""The gradient of NativeMatMul ``c = op(a) op(b)`` as two more NativeMatMuls, for every binding."""

from __future__ import annotations

#: one product: (left operand, right operand, transpose left, transpose right); operands named "a", "b", "dc"
Product = tuple[str, str, bool, bool]

#: (da, db) per (transpose_a, transpose_b); the three variants TF registers are closed under it
_GRADIENTS: dict[tuple[bool, bool], tuple[Product, Product]] = {
    (False, False): (("dc", "b", False, True), ("a", "dc", True, False)),  # c = a b: da = dc b^T, db = a^T dc
    (True, False): (("b", "dc", False, True), ("a", "dc", False, False)),  # c = a^T b: da = b dc^T, db = a dc
    (False, True): (("dc", "b", False, False), ("dc", "a", True, False)),  # c = a b^T: da = dc b, db = dc^T a
    (True, True): (("b", "dc", True, True), ("dc", "a", True, True)),  # c = a^T b^T: da = b^T dc^T, db = dc^T a^T
}


def matmul_gradients(transpose_a: bool, transpose_b: bool) -> tuple[Product, Product]:
    """How to compute ``da`` and ``db`` of ``c = op(a) op(b)`` from ``a``, ``b`` and ``dc``, each as one product."""
    return _GRADIENTS[bool(transpose_a), bool(transpose_b)]
