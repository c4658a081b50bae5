"""Values given as text (``++key value``, line-based configs): Python literals and arithmetic on numbers.

RETURNN ``eval``s such text; we evaluate the same expressions without running any code.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_ALLOWED = "numbers, strings, True/False/None, lists, tuples, dicts, float('inf') and arithmetic on numbers"


def parse_literal(text: str) -> Any:
    """The value of ``text`` as a RETURNN literal; ``ValueError`` says in words what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text.strip()!r} is not valid Python ({exc.msg})") from None
    return _Evaluator(text).eval(tree.body)


class _Evaluator:
    def __init__(self, text: str) -> None:
        self.text = text.strip()

    def fail(self, node: ast.AST) -> ValueError:
        part = ast.get_source_segment(self.text, node) or self.text
        return ValueError(f"{part!r} is not a literal (allowed: {_ALLOWED})")

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.eval(e) for e in node.elts]
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise self.fail(node)
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.number(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.number(node.left), self.number(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise ValueError(f"{ast.get_source_segment(self.text, node)!r}: exponent too large")
            try:
                return _BINOPS[type(node.op)](left, right)
            except (ZeroDivisionError, OverflowError) as exc:
                raise ValueError(f"{ast.get_source_segment(self.text, node)!r}: {exc}") from None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
            and len(node.args) == 1
            and not node.keywords
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.strip().lower() in ("inf", "-inf", "+inf", "nan")
        ):
            return float(node.args[0].value)
        raise self.fail(node)

    def number(self, node: ast.AST) -> int | float:
        value = self.eval(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{ast.get_source_segment(self.text, node)!r}: arithmetic needs numbers")
        return value
