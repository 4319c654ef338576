"""Element-wise activations and softmax."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable

# ONNX op -> TFLite op, for activations that map one to one
UNARY = {
    "Relu": "RELU",
    "Sigmoid": "LOGISTIC",
    "Tanh": "TANH",
    "HardSwish": "HARD_SWISH",
    "Exp": "EXP",
    "Log": "LOG",
    "Abs": "ABS",
    "Neg": "NEG",
    "Sqrt": "SQRT",
    "Floor": "FLOOR",
    "Ceil": "CEIL",
    "Sin": "SIN",
    "Cos": "COS",
    "Softplus": None,
}


@lowers("Relu", "Sigmoid", "Tanh", "HardSwish", "Exp", "Log", "Abs", "Neg", "Sqrt")
def unary(ctx: Lowering, node) -> None:
    ctx.op_to(UNARY[node.op], [ctx.use(node.inputs[0])], node.outputs[0])


# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2),
# t = 1 / (1 + p z) for z >= 0; absolute error under 1.5e-7
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


@lowers("Erf")
def erf(ctx: Lowering, node) -> None:
    """A lone Erf (GELU's fuse first): TFLite has no ERF, so the A&S polynomial in ops XNNPACK
    runs; the sign comes back as x / (|x| + tiny), exact where erf is not 0 to float precision."""
    x = ctx.use(node.inputs[0])
    shape = ctx.shape(node.outputs[0])

    def op(name: str, *inputs: str, **attrs) -> str:
        return ctx.op_new(name, list(inputs), shape, f"{node.outputs[0]}_erf", **attrs)

    def const(value: float) -> str:
        return ctx.constant(np.array(value, np.float32), "erf_c")

    none = {"fused_activation_function": "NONE"}
    z = op("ABS", x)
    t = op("DIV", const(1.0), op("ADD", op("MUL", z, const(ERF_P), **none), const(1.0), **none), **none)
    poly = const(ERF_A[-1])
    for a in reversed(ERF_A[:-1]):
        poly = op("ADD", op("MUL", poly, t, **none), const(a), **none)
    poly = op("MUL", poly, t, **none)
    gauss = op("EXP", op("NEG", op("MUL", z, z, **none)))
    magnitude = op("SUB", const(1.0), op("MUL", poly, gauss, **none), **none)
    sign = op("DIV", x, op("ADD", z, const(1e-30), **none), **none)
    ctx.op_to("MUL", [sign, magnitude], node.outputs[0], fused_activation_function="NONE")


@lowers("Reciprocal")
def reciprocal(ctx: Lowering, node) -> None:
    one = ctx.constant(np.array(1.0, np.float32), "one")
    ctx.op_to("DIV", [one, ctx.use(node.inputs[0])], node.outputs[0], fused_activation_function="NONE")


def clip_bounds(ctx: Lowering, node) -> tuple[float | None, float | None]:
    if "min" in node.attrs or "max" in node.attrs:
        return node.attrs.get("min"), node.attrs.get("max")
    bounds: list[float | None] = []
    for i in (1, 2):
        name = node.inputs[i] if len(node.inputs) > i else ""
        if not name:
            bounds.append(None)
            continue
        value = ctx.const(name)
        if value is None:
            raise NotLowerable("requires_constant_input", "Clip bounds must be constants")
        bounds.append(float(value))
    return bounds[0], bounds[1]


def clamp(ctx: Lowering, x: str, low: float | None, high: float | None, out: str) -> None:
    """Emit the cheapest TFLite form of clamp(x, low, high) into ``out``."""
    shape = ctx.shape(out)
    if (low, high) == (0.0, 6.0):
        ctx.op_to("RELU6", [x], out)
    elif low == 0.0 and high is None:
        ctx.op_to("RELU", [x], out)
    elif (low, high) == (-1.0, 1.0):
        ctx.op_to("RELU_N1_TO_1", [x], out)
    elif low is not None and high is not None:
        lo = ctx.constant(np.array(low, np.float32), "clip_min")
        y = ctx.op_new("MAXIMUM", [x, lo], shape, f"{out}_max")
        ctx.op_to("MINIMUM", [y, ctx.constant(np.array(high, np.float32), "clip_max")], out)
    elif low is not None:
        ctx.op_to("MAXIMUM", [x, ctx.constant(np.array(low, np.float32), "clip_min")], out)
    elif high is not None:
        ctx.op_to("MINIMUM", [x, ctx.constant(np.array(high, np.float32), "clip_max")], out)
    else:
        ctx.reshape(x, shape, out=out)


@lowers("Clip")
def clip(ctx: Lowering, node) -> None:
    bounds = [node.inputs[i] if len(node.inputs) > i else "" for i in (1, 2)]
    if any(name and ctx.const(name) is None for name in bounds):
        _clip_to_computed_bounds(ctx, node, *bounds)
        return
    low, high = clip_bounds(ctx, node)
    clamp(ctx, ctx.use(node.inputs[0]), low, high, node.outputs[0])


def _clip_to_computed_bounds(ctx: Lowering, node, low: str, high: str) -> None:
    """Clip whose bounds the graph computes (a log-mel spectrogram's floor, its maximum less 80 dB,
    as librosa's top_db): MAXIMUM with the lower bound, MINIMUM with the upper, broadcast."""
    from edgekit.converters.onnx.lowering.arithmetic import binary, operand

    x, out = operand(ctx, node.inputs[0]), node.outputs[0]
    if low and high:
        x = binary(ctx, "MAXIMUM", x, operand(ctx, low), None, ctx.shape(out))
        binary(ctx, "MINIMUM", x, operand(ctx, high), out)
    elif low:
        binary(ctx, "MAXIMUM", x, operand(ctx, low), out)
    else:
        binary(ctx, "MINIMUM", x, operand(ctx, high), out)


@lowers("LeakyRelu")
def leaky_relu(ctx: Lowering, node) -> None:
    ctx.op_to("LEAKY_RELU", [ctx.use(node.inputs[0])], node.outputs[0], alpha=float(node.attrs.get("alpha", 0.01)))


@lowers("PRelu")
def prelu(ctx: Lowering, node) -> None:
    slope = ctx.require_const(node.inputs[1], "the PRelu slope").astype(np.float32)
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    if np.all(slope == slope.flat[0]):  # one shared slope: one op XNNPACK also runs in int8
        if slope.flat[0] == 0.0:  # XNNPACK refuses a LEAKY_RELU with alpha 0
            ctx.op_to("RELU", [x], node.outputs[0])
        else:
            ctx.op_to("LEAKY_RELU", [x], node.outputs[0], alpha=float(slope.flat[0]))
        return
    # int8 rewrites it into int8 arithmetic (passes.xnnpack_forms.prelu_as_int8_arithmetic)
    slope = slope.reshape((1,) * (rank - slope.ndim) + slope.shape)
    ctx.op_to("PRELU", [x, ctx.constant(slope, "prelu_slope")], node.outputs[0])


@lowers("Elu")
def elu(ctx: Lowering, node) -> None:
    alpha = float(node.attrs.get("alpha", 1.0))
    x = ctx.use(node.inputs[0])
    if alpha == 1.0:
        ctx.op_to("ELU", [x], node.outputs[0])
        return
    # alpha * elu(x) on the negative side: relu(x) + alpha * min(elu(x), 0)
    shape = ctx.shape(x)
    e = ctx.op_new("ELU", [x], shape, f"{node.outputs[0]}_elu")
    zero = ctx.constant(np.array(0.0, np.float32), "zero")
    neg = ctx.op_new("MINIMUM", [e, zero], shape, f"{node.outputs[0]}_neg")
    scaled = ctx.op_new(
        "MUL",
        [neg, ctx.constant(np.array(alpha, np.float32), "alpha")],
        shape,
        f"{node.outputs[0]}_scaled",
        fused_activation_function="NONE",
    )
    pos = ctx.op_new("RELU", [x], shape, f"{node.outputs[0]}_pos")
    ctx.op_to("ADD", [pos, scaled], node.outputs[0], fused_activation_function="NONE")


@lowers("HardSigmoid")
def hard_sigmoid(ctx: Lowering, node) -> None:
    alpha = float(node.attrs.get("alpha", 0.2))
    beta = float(node.attrs.get("beta", 0.5))
    x = ctx.use(node.inputs[0])
    shape = ctx.shape(x)
    # clamp(alpha*x + beta, 0, 1) == relu6(6*alpha*x + 6*beta) / 6; with alpha = 1/6 the
    # first multiply disappears (PyTorch's hardsigmoid)
    if abs(6 * alpha - 1.0) > 1e-6:
        x = ctx.op_new(
            "MUL",
            [x, ctx.constant(np.array(6 * alpha, np.float32), "hs_scale")],
            shape,
            f"{node.outputs[0]}_scaled",
            fused_activation_function="NONE",
        )
    shifted = ctx.op_new(
        "ADD",
        [x, ctx.constant(np.array(6 * beta, np.float32), "hs_shift")],
        shape,
        f"{node.outputs[0]}_relu6",
        fused_activation_function="RELU6",
    )
    ctx.op_to(
        "MUL",
        [shifted, ctx.constant(np.array(1 / 6, np.float32), "one_sixth")],
        node.outputs[0],
        fused_activation_function="NONE",
    )


@lowers("Gelu")
def gelu(ctx: Lowering, node) -> None:
    approximate = node.attrs.get("approximate", "none") == "tanh"
    ctx.op_to("GELU", [ctx.use(node.inputs[0])], node.outputs[0], approximate=approximate)


def _softmax(ctx: Lowering, node, op: str) -> None:
    x, out = ctx.use(node.inputs[0]), node.outputs[0]
    shape = ctx.shape(x)
    rank = len(shape)
    extra = {"beta": 1.0} if op == "SOFTMAX" else {}
    opset = ctx.src.metadata.get("opset", 13)
    axis = int(node.attrs.get("axis", -1 if opset >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if opset < 13 and axis != rank - 1:
        # softmax over the flattened trailing dims
        inner = int(np.prod(shape[axis:]))
        flat = ctx.reshape(x, (int(np.prod(shape[:axis])), inner))
        y = ctx.op_new(op, [flat], (int(np.prod(shape[:axis])), inner), f"{out}_2d", **extra)
        ctx.reshape(y, shape, out=out)
        return
    if axis == rank - 1:
        ctx.op_to(op, [x], out, **extra)
        return
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    t = ctx.transpose(x, perm)
    y = ctx.op_new(op, [t], ctx.out.tensors[t].shape, f"{out}_last", **extra)
    ctx.declare(out)
    ctx.emit("TRANSPOSE", [y, ctx.constant(np.array(perm, np.int32), "perm")], [out])


@lowers("Softmax")
def softmax(ctx: Lowering, node) -> None:
    _softmax(ctx, node, "SOFTMAX")


@lowers("LogSoftmax")
def log_softmax(ctx: Lowering, node) -> None:
    _softmax(ctx, node, "LOG_SOFTMAX")
