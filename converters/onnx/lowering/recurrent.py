"""Recurrent layers (LSTM, GRU, RNN), unrolled over their (static) sequence into ops XNNPACK runs:
each step is FULLY_CONNECTEDs (input and hidden state), slices for the gates, LOGISTIC/TANH and
element-wise MUL/ADD/SUB. Exact in float; sequences are short on the edge (a VAD chunk, an OCR line).

The three differ only in their step; reading and checking the node (``_recurrence``), the loop
over directions and time (``_unroll``) and assembling Y, Y_h and Y_c (``_write_outputs``) are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable

NONE = {"fused_activation_function": "NONE"}

State = tuple[str, ...]  # h first (it is the step's output), then LSTM's c


@dataclass(frozen=True)
class Recurrence:
    """One recurrent node, read and checked: W, R and B as ONNX gives them, [directions, ...]
    (B zeros when the node has none); ``x`` is the [seq, batch, features] input."""

    w: np.ndarray
    r: np.ndarray
    bias: np.ndarray
    x: str
    seq: int
    batch: int
    features: int
    hidden: int
    reverse: bool
    hint: str  # prefix of the names of the tensors made for it

    @property
    def directions(self) -> int:
        return self.w.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.batch, self.hidden)


Step = Callable[[Lowering, Recurrence, int, str, State, str], State]


def _slice(ctx: Lowering, x: str, begin: list[int], size: list[int], hint: str) -> str:
    return ctx.op_new(
        "SLICE",
        [x, ctx.constant(np.array(begin, np.int32), "begin"), ctx.constant(np.array(size, np.int32), "size")],
        tuple(size),
        hint,
    )


def _columns(ctx: Lowering, x: str, rows: int, start: int, width: int, hint: str) -> str:
    """Columns ``start:start + width`` of the 2-D ``x`` (one gate of a gate block)."""
    return _slice(ctx, x, [0, start], [rows, width], hint)


def _fc(ctx: Lowering, x: str, weights: np.ndarray, bias: np.ndarray | None, shape, hint: str) -> str:
    w = ctx.constant(weights.astype(np.float32), f"{hint}_w")
    b = ctx.constant(bias.astype(np.float32), f"{hint}_b") if bias is not None else ""
    return ctx.op_new("FULLY_CONNECTED", [x, w, b], shape, hint, **NONE)


def _binary(ctx: Lowering, op: str, a: str, b: str, shape, hint: str) -> str:
    return ctx.op_new(op, [a, b], shape, hint, **NONE)


def _optional(names, k: int) -> str:
    """Optional input or output ``k`` of a node (``names`` its inputs or outputs), "" when absent."""
    return names[k] if len(names) > k else ""


def _recurrence(ctx: Lowering, node, gates: int) -> Recurrence:
    """Read what every recurrent op has (X, W, R, B, sequence_lens); refuse what the unrolling
    does not do: batch-first layout, clip, non-constant weights, sequences shorter than X."""
    op = node.op
    if node.attrs.get("layout", 0) != 0:
        raise NotLowerable("unsupported_attribute", f"{op} with layout 1 (batch first); export it with layout 0")
    if node.attrs.get("clip") is not None:
        raise NotLowerable("unsupported_attribute", f"{op} with clip; export it without clip")
    w = ctx.require_const(node.inputs[1], f"{op} weights W")
    r = ctx.require_const(node.inputs[2], f"{op} recurrence R")
    hidden = int(node.attrs.get("hidden_size", r.shape[-1]))
    b_name = _optional(node.inputs, 3)
    bias = ctx.const(b_name) if b_name else np.zeros((w.shape[0], 2 * gates * hidden), np.float32)
    if bias is None:
        raise NotLowerable("requires_constant_input", f"{op} bias B must be a constant")
    seq, batch, features = ctx.shape(node.inputs[0])
    if _optional(node.inputs, 4):
        lens = ctx.require_const(node.inputs[4], f"{op} sequence_lens")
        if np.any(lens != seq):
            raise NotLowerable(
                "unsupported_attribute",
                f"{op} with sequence_lens {lens.tolist()} shorter than the input's {seq} steps; "
                "cut the input to the sequence instead",
            )
    hint = node.outputs[0] if node.outputs and node.outputs[0] else f"{node.name}_y"
    reverse = node.attrs.get("direction", "forward") == "reverse"
    return Recurrence(w, r, bias, node.inputs[0], seq, batch, features, hidden, reverse, hint)


def _activations(node, directions: int, allowed: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Each direction's activation functions (``allowed[0]`` when the node names none); refuses
    the ones the unrolling does not lower."""
    given = node.attrs.get("activations")
    if given is None:
        return [allowed[0]] * directions
    spelling = {name.lower(): name for option in allowed for name in option}
    names = tuple(spelling.get(name.lower(), name) for name in given)
    count = len(allowed[0])
    chosen = [names[d * count : (d + 1) * count] for d in range(directions)]
    if len(names) != count * directions or any(c not in allowed for c in chosen):
        options = " or ".join(f"({', '.join(option)})" for option in allowed)
        raise NotLowerable(
            "unsupported_attribute",
            f"{node.op} activations {list(given)}; only {options} per direction are lowered",
        )
    return chosen


def _state(ctx: Lowering, name: str, direction: int, batch: int, hidden: int, hint: str) -> str:
    """The initial h or c of one direction, [batch, hidden]; zeros when the model gives none."""
    if not name:
        return ctx.constant(np.zeros((batch, hidden), np.float32), hint)
    value = ctx.const(name)
    if value is not None:
        return ctx.constant(value[direction].astype(np.float32), hint)
    part = _slice(ctx, ctx.use(name), [direction, 0, 0], [1, batch, hidden], f"{hint}_slice")
    return ctx.reshape(part, (batch, hidden))


def _unroll(ctx: Lowering, rec: Recurrence, initial: list[str], step: Step) -> tuple[list[list[str]], list[State]]:
    """Run ``step`` over the sequence in each direction (the second one backwards) from the
    ``initial`` states (input names, "" for zeros): each direction's h at every time step, and
    its final state."""
    x = ctx.use(rec.x)
    inputs = [
        ctx.reshape(
            _slice(ctx, x, [t, 0, 0], [1, rec.batch, rec.features], f"{rec.hint}_x{t}"), (rec.batch, rec.features)
        )
        for t in range(rec.seq)
    ]
    hs, finals = [], []
    for d in range(rec.directions):
        state = tuple(
            _state(ctx, name, d, rec.batch, rec.hidden, f"{rec.hint}_s{k}_{d}") for k, name in enumerate(initial)
        )
        outputs = [""] * rec.seq
        for t in reversed(range(rec.seq)) if rec.reverse or d == 1 else range(rec.seq):
            state = step(ctx, rec, d, inputs[t], state, f"{rec.hint}_d{d}t{t}")
            outputs[t] = state[0]
        hs.append(outputs)
        finals.append(state)
    return hs, finals


def _join(ctx: Lowering, parts: list[str], name: str, axis: int) -> None:
    """``name`` is the concatenation of ``parts`` (or the one part reshaped)."""
    if len(parts) == 1:
        ctx.reshape(parts[0], ctx.shape(name), out=name)
    else:
        ctx.op_to("CONCATENATION", parts, name, axis=axis, **NONE)


def _write_outputs(ctx: Lowering, node, rec: Recurrence, hs: list[list[str]], finals: list[State]) -> None:
    """Y [seq, directions, batch, hidden] from every step's h; Y_h (and LSTM's Y_c)
    [directions, batch, hidden] from the final states. Outputs the node does not name are skipped."""
    directions, (batch, hidden) = rec.directions, rec.shape
    if node.outputs and node.outputs[0]:
        per_step = []
        for t in range(rec.seq):
            parts = [ctx.reshape(hs[d][t], (1, 1, batch, hidden)) for d in range(directions)]
            per_step.append(
                ctx.op_new("CONCATENATION", parts, (1, directions, batch, hidden), f"{rec.hint}_y{t}", axis=1, **NONE)
                if directions > 1
                else parts[0]
            )
        _join(ctx, per_step, node.outputs[0], 0)
    for k in range(len(finals[0])):
        name = _optional(node.outputs, k + 1)
        if name:
            _join(ctx, [ctx.reshape(state[k], (1, batch, hidden)) for state in finals], name, 0)


def _lstm_step(ctx: Lowering, rec: Recurrence, d: int, x: str, state: State, hint: str) -> State:
    """One LSTM time step of direction ``d``: the state (h, c) after input ``x`` [batch, features]."""
    h, c = state
    batch, hidden = shape = rec.shape
    wb, rb = np.split(rec.bias[d], 2)
    gates = _binary(
        ctx,
        "ADD",
        _fc(ctx, x, rec.w[d], wb + rb, (batch, 4 * hidden), f"{hint}_wx"),
        _fc(ctx, h, rec.r[d], None, (batch, 4 * hidden), f"{hint}_rh"),
        (batch, 4 * hidden),
        f"{hint}_gates",
    )
    i, o, f, g = (_columns(ctx, gates, batch, k * hidden, hidden, f"{hint}_g{k}") for k in range(4))
    i, o, f = (ctx.op_new("LOGISTIC", [v], shape, f"{hint}_s") for v in (i, o, f))
    g = ctx.op_new("TANH", [g], shape, f"{hint}_tanh")
    fc = _binary(ctx, "MUL", f, c, shape, f"{hint}_fc")
    c = _binary(ctx, "ADD", fc, _binary(ctx, "MUL", i, g, shape, f"{hint}_ig"), shape, f"{hint}_c")
    h = _binary(ctx, "MUL", o, ctx.op_new("TANH", [c], shape, f"{hint}_tc"), shape, f"{hint}_h")
    return h, c


def _gru_step(
    ctx: Lowering, rec: Recurrence, d: int, x: str, state: State, hint: str, *, linear_before_reset: bool
) -> State:
    """One GRU time step of direction ``d``: gates z, r, candidate n, then h = (1 - z) n + z h."""
    (h,) = state
    batch, hidden = shape = rec.shape
    wb, rb = np.split(rec.bias[d], 2)
    w, r = rec.w[d], rec.r[d]
    # Rb_h is added inside r's product when linear_before_reset, outside it (to the input's) when not.
    candidate_rb = rb[2 * hidden :] if linear_before_reset else np.zeros(hidden, np.float32)
    x_bias = wb + np.concatenate([rb[: 2 * hidden], rb[2 * hidden :] - candidate_rb])
    wx = _fc(ctx, x, w, x_bias, (batch, 3 * hidden), f"{hint}_wx")
    if linear_before_reset:
        rh_bias = np.concatenate([np.zeros(2 * hidden, np.float32), candidate_rb])
        rh = _fc(ctx, h, r, rh_bias, (batch, 3 * hidden), f"{hint}_rh")
        rh_zr = _columns(ctx, rh, batch, 0, 2 * hidden, f"{hint}_rh_zr")
    else:
        rh_zr = _fc(ctx, h, r[: 2 * hidden], None, (batch, 2 * hidden), f"{hint}_rh_zr")
    wx_zr = _columns(ctx, wx, batch, 0, 2 * hidden, f"{hint}_wx_zr")
    zr = _binary(ctx, "ADD", wx_zr, rh_zr, (batch, 2 * hidden), f"{hint}_zr_in")
    zr = ctx.op_new("LOGISTIC", [zr], (batch, 2 * hidden), f"{hint}_zr")
    z, reset = (_columns(ctx, zr, batch, k * hidden, hidden, f"{hint}_g{k}") for k in range(2))
    if linear_before_reset:
        rh_n = _columns(ctx, rh, batch, 2 * hidden, hidden, f"{hint}_rh_n")
        recurrent = _binary(ctx, "MUL", reset, rh_n, shape, f"{hint}_r_rh")
    else:
        reset_h = _binary(ctx, "MUL", reset, h, shape, f"{hint}_rh")
        recurrent = _fc(ctx, reset_h, r[2 * hidden :], None, shape, f"{hint}_r_rh")
    wx_n = _columns(ctx, wx, batch, 2 * hidden, hidden, f"{hint}_wx_n")
    n = ctx.op_new("TANH", [_binary(ctx, "ADD", wx_n, recurrent, shape, f"{hint}_n_in")], shape, f"{hint}_n")
    # as ONNX writes it rather than n + z (h - n): every product stays within [-1, 1], which
    # int8 keeps ~8 dB closer to float
    keep = _binary(ctx, "SUB", ctx.constant(np.ones(1, np.float32), "one"), z, shape, f"{hint}_1z")
    kept = _binary(ctx, "MUL", keep, n, shape, f"{hint}_zn")
    return (_binary(ctx, "ADD", kept, _binary(ctx, "MUL", z, h, shape, f"{hint}_zh"), shape, f"{hint}_h"),)


RNN_ACTIVATIONS = {"Tanh": "TANH", "Relu": "RELU"}


def _rnn_step(
    ctx: Lowering, rec: Recurrence, d: int, x: str, state: State, hint: str, *, activations: list[tuple[str, ...]]
) -> State:
    """One RNN time step of direction ``d``: h = f(x W^T + h R^T + Wb + Rb)."""
    (h,), shape = state, rec.shape
    wb, rb = np.split(rec.bias[d], 2)
    pre = _binary(
        ctx,
        "ADD",
        _fc(ctx, x, rec.w[d], wb + rb, shape, f"{hint}_wx"),
        _fc(ctx, h, rec.r[d], None, shape, f"{hint}_rh"),
        shape,
        f"{hint}_in",
    )
    return (ctx.op_new(RNN_ACTIVATIONS[activations[d][0]], [pre], shape, f"{hint}_h"),)


@lowers("LSTM")
def lstm(ctx: Lowering, node) -> None:
    """ONNX LSTM (gates i, o, f, c; default activations; no peepholes) unrolled step by step."""
    if _optional(node.inputs, 7) or node.attrs.get("input_forget", 0):
        raise NotLowerable("unsupported_attribute", "LSTM with peepholes or input_forget; export it without them")
    rec = _recurrence(ctx, node, gates=4)
    _activations(node, rec.directions, [("Sigmoid", "Tanh", "Tanh")])
    hs, finals = _unroll(ctx, rec, [_optional(node.inputs, 5), _optional(node.inputs, 6)], _lstm_step)
    _write_outputs(ctx, node, rec, hs, finals)


@lowers("GRU")
def gru(ctx: Lowering, node) -> None:
    """ONNX GRU (gates z, r, h; default activations; either linear_before_reset) unrolled."""
    rec = _recurrence(ctx, node, gates=3)
    _activations(node, rec.directions, [("Sigmoid", "Tanh")])
    step = partial(_gru_step, linear_before_reset=bool(node.attrs.get("linear_before_reset", 0)))
    hs, finals = _unroll(ctx, rec, [_optional(node.inputs, 5)], step)
    _write_outputs(ctx, node, rec, hs, finals)


@lowers("RNN")
def rnn(ctx: Lowering, node) -> None:
    """ONNX RNN (Tanh or Relu in each direction) unrolled."""
    rec = _recurrence(ctx, node, gates=1)
    activations = _activations(node, rec.directions, [(name,) for name in RNN_ACTIVATIONS])
    step = partial(_rnn_step, activations=activations)
    hs, finals = _unroll(ctx, rec, [_optional(node.inputs, 5)], step)
    _write_outputs(ctx, node, rec, hs, finals)
