"""Recurrent layers, unrolled over their (static) sequence into ops XNNPACK runs: each step is
two FULLY_CONNECTEDs (input and hidden state), slices for the gates, LOGISTIC/TANH and
element-wise MUL/ADD. Exact in float; sequences are short on the edge (a VAD chunk, an OCR line)."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable

NONE = {"fused_activation_function": "NONE"}


def _slice(ctx: Lowering, x: str, begin: list[int], size: list[int], hint: str) -> str:
    return ctx.op_new(
        "SLICE",
        [x, ctx.constant(np.array(begin, np.int32), "begin"), ctx.constant(np.array(size, np.int32), "size")],
        tuple(size),
        hint,
    )


def _fc(ctx: Lowering, x: str, weights: np.ndarray, bias: np.ndarray | None, shape, hint: str) -> str:
    w = ctx.constant(weights.astype(np.float32), f"{hint}_w")
    b = ctx.constant(bias.astype(np.float32), f"{hint}_b") if bias is not None else ""
    return ctx.op_new("FULLY_CONNECTED", [x, w, b], shape, hint, **NONE)


def _state(ctx: Lowering, name: str, direction: int, batch: int, hidden: int, hint: str) -> str:
    """The initial h or c of one direction, [batch, hidden]; zeros when the model gives none."""
    if not name:
        return ctx.constant(np.zeros((batch, hidden), np.float32), hint)
    value = ctx.const(name)
    if value is not None:
        return ctx.constant(value[direction].astype(np.float32), hint)
    part = _slice(ctx, ctx.use(name), [direction, 0, 0], [1, batch, hidden], f"{hint}_slice")
    return ctx.reshape(part, (batch, hidden))


def _check_lstm(node) -> None:
    """Refuse what the unrolling does not do: peepholes, clip, coupled input and forget gates,
    batch-first layout, other activations."""
    peephole = node.inputs[7] if len(node.inputs) > 7 else ""
    if peephole or node.attrs.get("clip") is not None or node.attrs.get("input_forget", 0):
        raise NotLowerable("unsupported_attribute", "LSTM with peepholes, clip or input_forget")
    if node.attrs.get("layout", 0) != 0 or node.attrs.get("activations") not in (
        None,
        ["Sigmoid", "Tanh", "Tanh"] * 2,
        ["Sigmoid", "Tanh", "Tanh"],
    ):
        raise NotLowerable("unsupported_attribute", "LSTM with layout 1 or other activations")


def _lstm_step(
    ctx: Lowering,
    x: str,
    state: tuple[str, str],
    weights: tuple[np.ndarray, np.ndarray, np.ndarray],
    shape: tuple[int, int],
    hint: str,
) -> tuple[str, str]:
    """One time step of one direction: the state (h, c), each [batch, hidden], after input ``x``
    [batch, features]; ``weights`` are this direction's W, R and B."""
    (h, c), (w, r, bias), (batch, hidden) = state, weights, shape
    gates = ctx.op_new(
        "ADD",
        [
            _fc(ctx, x, w, bias[: 4 * hidden] + bias[4 * hidden :], (batch, 4 * hidden), f"{hint}_wx"),
            _fc(ctx, h, r, None, (batch, 4 * hidden), f"{hint}_rh"),
        ],
        (batch, 4 * hidden),
        f"{hint}_gates",
        **NONE,
    )
    i, o, f, g = (_slice(ctx, gates, [0, k * hidden], [batch, hidden], f"{hint}_g{k}") for k in range(4))
    i, o, f = (ctx.op_new("LOGISTIC", [v], shape, f"{hint}_s") for v in (i, o, f))
    g = ctx.op_new("TANH", [g], shape, f"{hint}_tanh")
    c = ctx.op_new(
        "ADD",
        [
            ctx.op_new("MUL", [f, c], shape, f"{hint}_fc", **NONE),
            ctx.op_new("MUL", [i, g], shape, f"{hint}_ig", **NONE),
        ],
        shape,
        f"{hint}_c",
        **NONE,
    )
    h = ctx.op_new("MUL", [o, ctx.op_new("TANH", [c], shape, f"{hint}_tc")], shape, f"{hint}_h", **NONE)
    return h, c


def _join(ctx: Lowering, parts: list[str], name: str, axis: int) -> None:
    """``name`` is the concatenation of ``parts`` (or the one part reshaped)."""
    if len(parts) == 1:
        ctx.reshape(parts[0], ctx.shape(name), out=name)
    else:
        ctx.op_to("CONCATENATION", parts, name, axis=axis, **NONE)


@lowers("LSTM")
def lstm(ctx: Lowering, node) -> None:
    """ONNX LSTM (gates i, o, f, c; default activations; layout 0) unrolled step by step."""
    _check_lstm(node)
    inputs = list(node.inputs) + [""] * (8 - len(node.inputs))
    x_name, w_name, r_name, b_name, lens_name, h0_name, c0_name = inputs[:7]
    w, r = ctx.require_const(w_name, "LSTM weights W"), ctx.require_const(r_name, "LSTM recurrence R")
    hidden = int(node.attrs["hidden_size"])
    directions = w.shape[0]
    bias = ctx.const(b_name) if b_name else np.zeros((directions, 8 * hidden), np.float32)
    if bias is None:
        raise NotLowerable("requires_constant_input", "LSTM bias B must be a constant")
    seq, batch, features = ctx.shape(x_name)
    if lens_name:
        lens = ctx.require_const(lens_name, "LSTM sequence_lens")
        if np.any(lens != seq):
            raise NotLowerable("unsupported_attribute", "LSTM with sequences shorter than the input")
    reverse = node.attrs.get("direction", "forward") == "reverse"
    x = ctx.use(x_name)
    out = node.outputs[0] if node.outputs and node.outputs[0] else f"{node.name}_y"
    steps = [
        ctx.reshape(_slice(ctx, x, [t, 0, 0], [1, batch, features], f"{out}_x{t}"), (batch, features))
        for t in range(seq)
    ]
    ys, finals_h, finals_c = [], [], []
    for d in range(directions):
        h = _state(ctx, h0_name, d, batch, hidden, f"{out}_h0_{d}")
        c = _state(ctx, c0_name, d, batch, hidden, f"{out}_c0_{d}")
        outputs: list[str] = [""] * seq
        for t in reversed(range(seq)) if reverse or d == 1 else range(seq):
            h, c = _lstm_step(ctx, steps[t], (h, c), (w[d], r[d], bias[d]), (batch, hidden), f"{out}_d{d}t{t}")
            outputs[t] = h
        ys.append([ctx.reshape(v, (1, 1, batch, hidden)) for v in outputs])
        finals_h.append(ctx.reshape(h, (1, batch, hidden)))
        finals_c.append(ctx.reshape(c, (1, batch, hidden)))
    if node.outputs and node.outputs[0]:
        per_step = [
            ctx.op_new(
                "CONCATENATION",
                [ys[d][t] for d in range(directions)],
                (1, directions, batch, hidden),
                f"{out}_y{t}",
                axis=1,
                **NONE,
            )
            if directions > 1
            else ys[0][t]
            for t in range(seq)
        ]
        _join(ctx, per_step, node.outputs[0], 0)
    for k, finals in ((1, finals_h), (2, finals_c)):
        if len(node.outputs) > k and node.outputs[k]:
            _join(ctx, finals, node.outputs[k], 0)
