"""Graph passes. Each is a function ``Graph -> Graph`` (it may update the graph in place and
returns it), runnable and testable alone."""

from edgekit.converters.passes.activation_fusion import fuse_activations
from edgekit.converters.passes.batchnorm import fold_batchnorm
from edgekit.converters.passes.cleanup import (
    drop_zero_arithmetic,
    fold_constants,
    remove_identities,
    remove_noop_reshapes,
)
from edgekit.converters.passes.frames import frame_strided_convs
from edgekit.converters.passes.layout import optimize_layout, to_nhwc_io
from edgekit.converters.passes.patterns import fuse_gelu, fuse_hardswish
from edgekit.converters.passes.qdq import strip_activation_qdq
from edgekit.converters.passes.xnnpack_forms import split_wide_concatenations

ONNX_PASSES = (
    strip_activation_qdq,
    remove_identities,
    fold_batchnorm,
    fuse_gelu,
    fuse_hardswish,
    frame_strided_convs,
)
TFLITE_PASSES = (
    fold_constants,
    drop_zero_arithmetic,
    optimize_layout,
    fold_constants,
    remove_noop_reshapes,
    fuse_activations,
    split_wide_concatenations,
)

__all__ = [
    "ONNX_PASSES",
    "TFLITE_PASSES",
    "drop_zero_arithmetic",
    "fold_batchnorm",
    "fold_constants",
    "frame_strided_convs",
    "fuse_activations",
    "fuse_gelu",
    "fuse_hardswish",
    "optimize_layout",
    "remove_identities",
    "remove_noop_reshapes",
    "split_wide_concatenations",
    "to_nhwc_io",
]
