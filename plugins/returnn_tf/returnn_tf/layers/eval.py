"""The ``eval`` layer: a TensorFlow expression from the config.

It is TF-only by nature: the expression is TF code (``tf.exp(source(0))``) evaluated on the sources' TF tensors,
so it cannot be written once on the core's ops like the other layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from returnn_core.errors import NetworkError
from returnn_core.frontend import Context, Layer, LayerOutput
from returnn_core.frontend._layer import FrameShape
from returnn_core.frontend.layers.basic import broadcast_sources, elementwise_shape


class EvalLayer(Layer):
    """A TF expression in ``eval`` using ``source(i)``, ``tf`` and ``np`` (e.g. ``"tf.exp(source(0)) * 2"``)."""

    options = frozenset({"eval", "eval_locals"})

    @classmethod
    def out_shape_from_opts(cls, opts: Mapping[str, Any], sources: Sequence[FrameShape | None],
                            layer_shape: Callable[[str], FrameShape | None]) -> FrameShape | None:
        """``n_out``/``out_type``, else the sources' broadcast shape (most expressions are element-wise)."""
        return super().out_shape_from_opts(opts, sources, layer_shape) or elementwise_shape(sources)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        expr = self.opts.get("eval")
        if not isinstance(expr, str) or not expr.strip():
            raise NetworkError(f"layer {self.name!r} (class 'eval') needs 'eval', a TF expression using source(i)")
        try:
            self._code = compile(expr, f"<eval layer {self.name}>", "eval")
        except SyntaxError as exc:
            raise NetworkError(f"layer {self.name!r}: 'eval' is not a valid expression: {exc.msg}") from None

    def call(self, sources: list[LayerOutput], ctx: Context) -> LayerOutput:
        """Evaluate the expression."""
        tensors = broadcast_sources(sources) if sources else []

        def source(i: int, auto_convert: bool = True, enforce_batch_major: bool = False) -> tf.Tensor:
            if not 0 <= i < len(tensors):
                raise NetworkError(f"layer {self.name!r}: eval uses source({i}) but has {len(tensors)} source(s)")
            return tensors[i]

        scope = {"source": source, "tf": tf, "np": np, **dict(self.opts.get("eval_locals") or {})}
        try:
            out = eval(self._code, scope)  # noqa: S307 - evaluating the user's config expression is the feature
        except NetworkError:
            raise
        except Exception as exc:  # noqa: BLE001 - report any failure of the user's expression with the layer name
            raise NetworkError(f"layer {self.name!r}: eval {self.opts['eval']!r} failed: "
                               f"{type(exc).__name__}: {exc}") from None
        out = tf.convert_to_tensor(out)
        ref = next((s for s in sources if s.has_time), sources[0] if sources else None)
        seq_lens = ref.seq_lens if ref is not None and out.shape.rank and out.shape.rank >= 2 else None
        return LayerOutput(out, seq_lens, int(out.shape[-1]) if out.shape.rank and out.shape[-1] else None)
