"""Lowering: ONNX ops -> TFLite builtin ops.

One registry maps each ONNX op type to one function (``@lowers("Conv")``); adding an op is
one function in one module. Layout-sensitive ops work in NHWC and are wrapped in TRANSPOSE
ops; the layout pass pushes those through and cancels them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable

LOWERINGS: dict[str, Callable[[Lowering, object], None]] = {}


def lowers(*ops: str):
    def register(fn):
        for op in ops:
            if op in LOWERINGS:
                raise RuntimeError(f"two lowerings for {op}")
            LOWERINGS[op] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    _load_all()
    return sorted(LOWERINGS)


def _load_all() -> None:
    from edgekit.converters.onnx.lowering import (  # noqa: F401  (registration side effects)
        activations,
        arithmetic,
        conv,
        linear,
        logic,
        normalization,
        pooling,
        recurrent,
        tensor_ops,
    )


__all__ = ["LOWERINGS", "Lowering", "NotLowerable", "lowers", "supported_ops"]
