"""One table of what edgekit knows about each TFLite builtin op it emits.

Every pass that treats ops differently reads its facts here: the writer (options table, kernel
version), the NHWC layout pass (layout class), the quantizer and the int8 self-check (int8
rule), the CPU-target decisions (XNNPACK support), the Edge TPU check (highest version its
compiler maps) and activation fusion. Teaching edgekit a new op is its lowering plus one entry
below; the modules keep their old table names as views of this one (``quantizer.SHARED``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np

from edgekit.converters.tflite import op_versions as v
from edgekit.converters.tflite.op_versions import VersionRule


class Layout(Enum):
    """How the NHWC pass (:mod:`edgekit.converters.passes.layout`) moves a TRANSPOSE that feeds
    the op to after it; each class has one rule there."""

    ELEMENTWISE = "elementwise"  # every data input permuted alike; constants permuted to match
    ELEMENTWISE_FULL_RANK = "elementwise_full_rank"  # and input 1 already has the data's rank (PRELU's alpha)
    CONCATENATION = "concatenation"  # the axis attribute follows the permutation
    LAST_AXIS = "last_axis"  # works along the innermost axis: only a permutation keeping it there
    PADDING = "padding"  # the per-axis rows of input 1 (paddings) follow the permutation
    SLICE = "slice"  # the per-axis rows of inputs 1 and 2 (begin, size) follow it
    SPLIT = "split"  # axis in input 0, data in input 1
    SPLIT_V = "split_v"  # data in input 0, axis in input 2
    REDUCER = "reducer"  # the axes in input 1 follow the permutation


class Xnnpack(Enum):
    """What LiteRT's XNNPACK delegate does with the op, as the quantizer's CPU target relies on it."""

    FLOAT = "float only"  # no int8 kernel: an int8 model keeps the op in float inside the partition
    NONE = "not delegated"  # in no type: an op reading only float model inputs stays float


class ScaleBound(Enum):
    """The XNNPACK requantization bound that limits an int8 op's output scale from below."""

    PRODUCT = "input1 * input2 / output"  # MUL
    SUM = "each input / output"  # ADD, SUB
    WIDEST_INPUT = "widest input / output"


ALL_INPUTS: Literal["all"] = "all"


@dataclass(frozen=True)
class Weights:
    """Where a weighted op keeps its constant weights, their per-channel axis and its bias."""

    weight: int
    axis: int
    bias: int
    data: int = 0  # the activation input


@dataclass(frozen=True)
class Int8Rule:
    """How the quantizer treats an op TFLite has an int8 kernel for."""

    weights: Weights | None = None  # symmetric per-channel int8 weights, int32 bias
    shared: tuple[int, ...] | Literal["all"] | None = None  # data inputs whose parameters the output must carry
    fixed: tuple[float, int] | None = None  # output (scale, zero point) the int8 kernel requires
    int16: bool = False  # an int16x8 kernel too
    fixed16: tuple[float, int] | None = None  # the int16 kernel's fixed output parameters
    bound: ScaleBound | None = None
    symmetric_input: int | None = None  # an input that must have zero point 0 (XNNPACK's BATCH_MATMUL)
    dynamic: bool = False  # a hybrid kernel (int8 weights, float activations) for dynamic quantization


@dataclass(frozen=True)
class OpFacts:
    name: str  # the BuiltinOperator member the writer emits
    options: str | None = None  # its BuiltinOptions table; None: takes none
    version: VersionRule | None = None  # minimum kernel version; None: always 1
    layout: Layout | None = None  # None: the NHWC pass stops transposes here
    int8: Int8Rule | None = None  # None: no int8 kernel, stays float between DEQUANTIZE/QUANTIZE
    xnnpack: Xnnpack | None = None  # None: nothing recorded, XNNPACK assumed to take it as typed
    edgetpu: int | None = None  # highest version the Edge TPU compiler maps; None: left to the CPU
    fused_activation: bool = False  # its output may carry a fused activation
    clamp: tuple[float, float] | None = None  # an activation fusable into the op before it: the interval


def _table(*entries: OpFacts) -> dict[str, OpFacts]:
    table: dict[str, OpFacts] = {}
    for facts in entries:
        if facts.name in table:
            raise RuntimeError(f"two entries for {facts.name}")
        table[facts.name] = facts
    return table


OPS: dict[str, OpFacts] = _table(
    OpFacts("ABS", layout=Layout.ELEMENTWISE),
    OpFacts(
        "ARG_MAX",
        options="ArgMaxOptions",
        version=v.int8_is(2),
        layout=Layout.REDUCER,
        int8=Int8Rule(),
        xnnpack=Xnnpack.NONE,
    ),
    OpFacts(
        "ARG_MIN",
        options="ArgMinOptions",
        version=v.int8_is(2),
        layout=Layout.REDUCER,
        int8=Int8Rule(),
        xnnpack=Xnnpack.NONE,
    ),
    OpFacts(
        "ADD",
        options="AddOptions",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True, bound=ScaleBound.SUM),
        edgetpu=2,
        fused_activation=True,
    ),
    OpFacts(
        "AVERAGE_POOL_2D",
        options="Pool2DOptions",
        version=v.int8_is(2, 3),
        int8=Int8Rule(shared=(0,), int16=True),
        edgetpu=2,
        fused_activation=True,
    ),
    OpFacts(
        "BATCH_MATMUL",
        options="BatchMatMulOptions",
        version=v.batch_matmul,
        int8=Int8Rule(bound=ScaleBound.WIDEST_INPUT, symmetric_input=1),
    ),
    OpFacts("CAST", options="CastOptions", layout=Layout.ELEMENTWISE),
    OpFacts(
        "CONCATENATION",
        options="ConcatenationOptions",
        version=v.int8_is(2, 3),
        layout=Layout.CONCATENATION,
        int8=Int8Rule(shared=ALL_INPUTS, int16=True),
        edgetpu=2,
    ),
    OpFacts(
        "CONV_2D",
        options="Conv2DOptions",
        version=v.conv2d,
        int8=Int8Rule(weights=Weights(1, 0, 2), int16=True, dynamic=True),
        edgetpu=3,
        fused_activation=True,
    ),
    OpFacts(
        "DEPTHWISE_CONV_2D",
        options="DepthwiseConv2DOptions",
        version=v.depthwise,
        int8=Int8Rule(weights=Weights(1, 3, 2), int16=True),
        edgetpu=3,
        fused_activation=True,
    ),
    OpFacts("DEPTH_TO_SPACE", options="DepthToSpaceOptions", version=v.int8_is(2), int8=Int8Rule(shared=(0,))),
    OpFacts("DEQUANTIZE", options="DequantizeOptions", version=v.dequantize, layout=Layout.ELEMENTWISE, edgetpu=2),
    OpFacts("DIV", options="DivOptions", version=v.int8_is(1), layout=Layout.ELEMENTWISE, fused_activation=True),
    OpFacts("ELU", version=v.int8_is(1), layout=Layout.ELEMENTWISE, int8=Int8Rule(bound=ScaleBound.WIDEST_INPUT)),
    OpFacts("EQUAL", options="EqualOptions", version=v.int8_is(2, 4), layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts("EXP", options="ExpOptions", layout=Layout.ELEMENTWISE),
    OpFacts("EXPAND_DIMS", edgetpu=1),
    OpFacts("FLOOR", layout=Layout.ELEMENTWISE),
    OpFacts(
        "FLOOR_MOD", options="FloorModOptions", version=v.int8_is(2, 2), layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE
    ),
    OpFacts(
        "FULLY_CONNECTED",
        options="FullyConnectedOptions",
        version=v.fully_connected,
        int8=Int8Rule(weights=Weights(1, 0, 2), int16=True, dynamic=True),
        edgetpu=4,
        fused_activation=True,
    ),
    OpFacts("GATHER", options="GatherOptions", version=v.int8_is(2), int8=Int8Rule(shared=(0,)), xnnpack=Xnnpack.FLOAT),
    OpFacts(
        "GELU",
        options="GeluOptions",
        version=v.int8_is(1),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(),
        xnnpack=Xnnpack.FLOAT,
    ),
    OpFacts("GREATER", options="GreaterOptions", version=v.int8_is(2), layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts(
        "GREATER_EQUAL",
        options="GreaterEqualOptions",
        version=v.int8_is(2),
        layout=Layout.ELEMENTWISE,
        xnnpack=Xnnpack.NONE,
    ),
    OpFacts(
        "HARD_SWISH",
        options="HardSwishOptions",
        version=v.int8_is(1),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(bound=ScaleBound.WIDEST_INPUT),
        edgetpu=1,
    ),
    OpFacts(
        "L2_NORMALIZATION",
        options="L2NormOptions",
        version=v.int8_is(2),
        layout=Layout.LAST_AXIS,
        int8=Int8Rule(fixed=(1 / 128, 0)),
        xnnpack=Xnnpack.NONE,
        edgetpu=2,
    ),
    OpFacts(
        "LEAKY_RELU",
        options="LeakyReluOptions",
        version=v.int8_is(1, 2),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True, bound=ScaleBound.WIDEST_INPUT),
    ),
    OpFacts("LESS", options="LessOptions", version=v.int8_is(2), layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts(
        "LESS_EQUAL", options="LessEqualOptions", version=v.int8_is(2), layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE
    ),
    OpFacts("LOCAL_RESPONSE_NORMALIZATION", options="LocalResponseNormalizationOptions"),
    OpFacts("LOG", layout=Layout.ELEMENTWISE),
    OpFacts("LOGICAL_AND", options="LogicalAndOptions", layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts("LOGICAL_NOT", options="LogicalNotOptions", layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts("LOGICAL_OR", options="LogicalOrOptions", layout=Layout.ELEMENTWISE, xnnpack=Xnnpack.NONE),
    OpFacts(
        "LOGISTIC",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(fixed=(1 / 256, -128), int16=True, fixed16=(1 / 32768, 0)),
        edgetpu=2,
    ),
    OpFacts("LOG_SOFTMAX", options="LogSoftmaxOptions", int8=Int8Rule(fixed=(16 / 256, 127)), xnnpack=Xnnpack.FLOAT),
    OpFacts(
        "MAXIMUM",
        options="MaximumMinimumOptions",
        version=v.int8_is(2),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(shared=(0, 1), int16=True),
        xnnpack=Xnnpack.FLOAT,  # VisitBinaryNode: float only; an int8 one splits the partition
        edgetpu=2,
    ),
    OpFacts(
        "MAX_POOL_2D",
        options="Pool2DOptions",
        version=v.int8_is(2, 3),
        int8=Int8Rule(shared=(0,), int16=True),
        edgetpu=2,
        fused_activation=True,
    ),
    OpFacts(
        "MEAN",
        options="ReducerOptions",
        version=v.int8_is(2, 3),
        layout=Layout.REDUCER,
        int8=Int8Rule(int16=True, bound=ScaleBound.WIDEST_INPUT),
        edgetpu=2,
    ),
    OpFacts(
        "MINIMUM",
        options="MaximumMinimumOptions",
        version=v.int8_is(2),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(shared=(0, 1), int16=True),
        xnnpack=Xnnpack.FLOAT,  # VisitBinaryNode: float only; an int8 one splits the partition
        edgetpu=2,
    ),
    OpFacts(
        "MIRROR_PAD",
        options="MirrorPadOptions",
        layout=Layout.PADDING,
        int8=Int8Rule(shared=(0,)),
        xnnpack=Xnnpack.NONE,
    ),
    OpFacts(
        "MUL",
        options="MulOptions",
        version=v.mul,
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True, bound=ScaleBound.PRODUCT),
        edgetpu=3,
        fused_activation=True,
    ),
    OpFacts("NEG", layout=Layout.ELEMENTWISE),
    OpFacts("PACK", options="PackOptions", edgetpu=2),
    OpFacts(
        "PAD",
        options="PadOptions",
        version=v.pad,
        layout=Layout.PADDING,
        int8=Int8Rule(shared=(0,), int16=True),
        edgetpu=2,
    ),
    OpFacts("PADV2", options="PadV2Options", version=v.pad, layout=Layout.PADDING),
    OpFacts("POW", options="PowOptions", layout=Layout.ELEMENTWISE),
    OpFacts(
        "PRELU",
        version=v.int8_is(1),
        layout=Layout.ELEMENTWISE_FULL_RANK,
        int8=Int8Rule(bound=ScaleBound.WIDEST_INPUT),
        # the int8 quantizer rewrites it first (passes.xnnpack_forms.prelu_as_int8_arithmetic)
        xnnpack=Xnnpack.FLOAT,
        edgetpu=1,
    ),
    OpFacts("QUANTIZE", options="QuantizeOptions", version=v.int8_is(1), layout=Layout.ELEMENTWISE, edgetpu=2),
    OpFacts(
        "REDUCE_MAX",
        options="ReducerOptions",
        version=v.int8_is(2, 3),
        layout=Layout.REDUCER,
        int8=Int8Rule(shared=(0,)),
        edgetpu=2,
    ),
    OpFacts("REDUCE_MIN", options="ReducerOptions", layout=Layout.REDUCER, int8=Int8Rule(shared=(0,)), edgetpu=2),
    OpFacts("REDUCE_PROD", options="ReducerOptions"),
    OpFacts(
        "RELU",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True),
        edgetpu=2,
        clamp=(0.0, np.inf),
    ),
    OpFacts(
        "RELU6",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True),
        edgetpu=2,
        clamp=(0.0, 6.0),
    ),
    OpFacts("RELU_N1_TO_1", layout=Layout.ELEMENTWISE, int8=Int8Rule(), edgetpu=1, clamp=(-1.0, 1.0)),
    OpFacts(
        "RESHAPE", options="ReshapeOptions", version=v.int8_is(1), int8=Int8Rule(shared=(0,), int16=True), edgetpu=1
    ),
    OpFacts(
        "RESIZE_BILINEAR", options="ResizeBilinearOptions", version=v.resize, int8=Int8Rule(shared=(0,)), edgetpu=3
    ),
    OpFacts(
        "RESIZE_NEAREST_NEIGHBOR",
        options="ResizeNearestNeighborOptions",
        version=v.resize,
        int8=Int8Rule(shared=(0,)),
        xnnpack=Xnnpack.FLOAT,
        edgetpu=3,
    ),
    OpFacts("RSQRT", layout=Layout.ELEMENTWISE, int8=Int8Rule(), xnnpack=Xnnpack.FLOAT, edgetpu=2),
    # the int8 kernel copies bytes from either data input: both carry the output's parameters
    OpFacts(
        "SELECT_V2",
        options="SelectV2Options",
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(shared=(1, 2)),
        xnnpack=Xnnpack.NONE,
    ),
    OpFacts(
        "SLICE",
        options="SliceOptions",
        version=v.int8_is(2, 3),
        layout=Layout.SLICE,
        int8=Int8Rule(shared=(0,), int16=True),
        edgetpu=2,
    ),
    OpFacts(
        "SOFTMAX",
        options="SoftmaxOptions",
        version=v.int8_is(2, 3),
        layout=Layout.LAST_AXIS,
        int8=Int8Rule(fixed=(1 / 256, -128), int16=True, fixed16=(1 / 32768, 0)),
        xnnpack=Xnnpack.FLOAT,
        edgetpu=2,
    ),
    OpFacts(
        "SPACE_TO_DEPTH", options="SpaceToDepthOptions", version=v.int8_is(2), int8=Int8Rule(shared=(0,)), edgetpu=2
    ),
    OpFacts(
        "SPLIT",
        options="SplitOptions",
        version=v.int8_is(2, 3),
        layout=Layout.SPLIT,
        int8=Int8Rule(shared=(1,), int16=True),
        edgetpu=2,
    ),
    OpFacts(
        "SPLIT_V",
        options="SplitVOptions",
        version=v.int8_is(2),
        layout=Layout.SPLIT_V,
        int8=Int8Rule(shared=(0,), int16=True),
    ),
    OpFacts("SQRT", layout=Layout.ELEMENTWISE),
    OpFacts("SQUARE", options="SquareOptions", layout=Layout.ELEMENTWISE),
    OpFacts(
        "SQUARED_DIFFERENCE", options="SquaredDifferenceOptions", layout=Layout.ELEMENTWISE, int8=Int8Rule(), edgetpu=2
    ),
    OpFacts(
        "SQUEEZE", options="SqueezeOptions", version=v.int8_is(1), int8=Int8Rule(shared=(0,), int16=True), edgetpu=1
    ),
    OpFacts(
        "STRIDED_SLICE",
        options="StridedSliceOptions",
        version=v.strided_slice,
        int8=Int8Rule(shared=(0,), int16=True),
        edgetpu=2,
    ),
    OpFacts(
        "SUB",
        options="SubOptions",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(int16=True, bound=ScaleBound.SUM),
        edgetpu=2,
        fused_activation=True,
    ),
    OpFacts(
        "SUM",
        options="ReducerOptions",
        version=v.int8_is(2),
        layout=Layout.REDUCER,
        int8=Int8Rule(bound=ScaleBound.WIDEST_INPUT),
        edgetpu=2,
    ),
    OpFacts(
        "TANH",
        version=v.int8_is(2, 3),
        layout=Layout.ELEMENTWISE,
        int8=Int8Rule(fixed=(1 / 128, 0), int16=True, fixed16=(1 / 32768, 0)),
        edgetpu=2,
    ),
    OpFacts(
        "TRANSPOSE", options="TransposeOptions", version=v.transpose, int8=Int8Rule(shared=(0,), int16=True), edgetpu=2
    ),
    OpFacts(
        "TRANSPOSE_CONV",
        options="TransposeConvOptions",
        version=v.transpose_conv,
        int8=Int8Rule(weights=Weights(1, 0, 3, data=2), int16=True),
        edgetpu=3,
        fused_activation=True,
    ),
    OpFacts("UNPACK", options="UnpackOptions"),
)
NO_FACTS = OpFacts("")


def facts(op: str) -> OpFacts:
    """The op's entry; an op missing from the table has no special treatment anywhere."""
    return OPS.get(op, NO_FACTS)


NO_INT8_RULE = Int8Rule()


def int8_rule(op: str) -> Int8Rule:
    """The op's int8 rule; one without special treatment for an op with no int8 kernel (an
    op the quantizer inserts, a QUANTIZE)."""
    return facts(op).int8 or NO_INT8_RULE


def ops_where(predicate) -> frozenset[str]:
    return frozenset(name for name, f in OPS.items() if predicate(f))
