"""Post-training quantization of a float TFLite-level graph.

``int8``: symmetric per-channel int8 weights, asymmetric int8 activations from calibration,
int32 biases with scale ``input_scale * weight_scale[c]``, fixed output parameters for
SOFTMAX/LOGISTIC/TANH, one set of parameters shared across ops that move bytes without
rescaling (pools, concatenation, reshape-like ops). Ops without an int8 kernel stay float
between DEQUANTIZE/QUANTIZE. ``dynamic``: int8 weights, float activations. ``fp16``: float16
weights dequantized at load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.converters.ir.graph import Graph, Node, QuantParams
from edgekit.converters.passes.xnnpack_forms import prelu_as_int8_arithmetic
from edgekit.converters.tflite.op_table import ALL_INPUTS, OPS, ScaleBound, Xnnpack, facts, int8_rule, ops_where
from edgekit.errors import UnsupportedModelError

_INT8_RULES = {name: f.int8 for name, f in OPS.items() if f.int8 is not None}

# views of the op table (edgekit.converters.tflite.op_table), under the names other modules read
# op -> (weight input index, per-channel axis of the weight, bias input index)
WEIGHTED = {
    name: (r.weights.weight, r.weights.axis, r.weights.bias) for name, r in _INT8_RULES.items() if r.weights is not None
}
# ops with int8 kernels in TFLite (others stay float between DEQUANTIZE and QUANTIZE)
INT8_OPS = frozenset(_INT8_RULES)
# int8 kernels XNNPACK lacks: on a CPU target these run in float inside the same XNNPACK
# partition (DEQUANTIZE/QUANTIZE around them) instead of splitting the graph
FLOAT_ON_CPU = ops_where(lambda f: f.int8 is not None and f.xnnpack is Xnnpack.FLOAT)
# ops XNNPACK takes in no type: one that reads only float model inputs stays float on a CPU target,
# so it runs before the model's first QUANTIZE instead of splitting the partition after it
NOT_DELEGATED = ops_where(lambda f: f.xnnpack is Xnnpack.NONE)
# output parameters fixed by the int8 kernels: op -> (scale, zero point)
FIXED_OUTPUT = {name: r.fixed for name, r in _INT8_RULES.items() if r.fixed is not None}
# ops whose int8 output must carry their (data) input's parameters; value: data input indices
# (None: every input)
SHARED = {name: None if r.shared == ALL_INPUTS else r.shared for name, r in _INT8_RULES.items() if r.shared is not None}
INT8 = np.dtype(np.int8)
INT16 = np.dtype(np.int16)
# int16x8: int16 activations (symmetric), int8 weights, int64 biases; ops with int16 kernels
INT16_OPS = frozenset(name for name, r in _INT8_RULES.items() if r.int16)
FIXED_OUTPUT_16 = {name: r.fixed16 for name, r in _INT8_RULES.items() if r.fixed16 is not None}


def symmetric16_params(lo: float, hi: float, min_scale: float = 0.0) -> QuantParams:
    """int16 activation parameters: symmetric, zero point 0."""
    scale = max(abs(float(lo)), abs(float(hi)), 1e-30) / 32767.0
    return QuantParams(np.float32(max(scale, min_scale)), 0)


def activation_params(lo: float, hi: float, min_scale: float = 0.0) -> QuantParams:
    """Asymmetric int8 parameters whose grid holds 0 exactly; the scale is at least
    ``min_scale`` (the range then widens around its centre)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-30:
        hi = lo + 1e-30
    scale = max((hi - lo) / 255.0, min_scale)
    if scale > (hi - lo) / 255.0:
        centre = (hi + lo) / 2
        lo, hi = min(centre - 127.5 * scale, 0.0), max(centre + 127.5 * scale, 0.0)
        scale = max((hi - lo) / 255.0, min_scale)
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return QuantParams(np.float32(scale), zero_point)


# per-channel weight ranges below this share of the op's widest channel are raised to it
MIN_CHANNEL_RANGE_RATIO = 2.0**-20


def symmetric8_params(lo: float, hi: float, min_scale: float = 0.0) -> QuantParams:
    """int8 activation parameters with zero point 0 (XNNPACK's int8 BATCH_MATMUL wants them on
    its second input)."""
    scale = max(abs(float(lo)), abs(float(hi)), 1e-30) / 127.0
    return QuantParams(np.float32(max(scale, min_scale)), 0)


def symmetric_weights(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, QuantParams]:
    """int8 weights in [-127, 127], zero point 0, per channel along ``axis`` (None: per tensor)."""
    w = w.astype(np.float64)
    if axis is None:
        amax = np.array([np.abs(w).max()])
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        q = np.clip(np.round(w / scale[0]), -127, 127)
        return q.astype(np.int8), QuantParams(scale.astype(np.float32), np.zeros(1, np.int64), 0)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    # a trained channel can hold weights near 1e-40: its scale would be a float32 denormal,
    # which XNNPACK refuses (the whole op leaves the delegate); on the floor they round to 0
    amax = np.where(amax > 0, np.maximum(amax, amax.max() * MIN_CHANNEL_RANGE_RATIO), 0.0)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127)
    return q.astype(np.int8), QuantParams(scale.astype(np.float32), np.zeros(scale.size, np.int64), axis)


def quantize_values(value: np.ndarray, q: QuantParams, dtype=np.int8) -> np.ndarray:
    """``value`` in ``dtype`` codes, saturating: a value beyond the float range of the codes (the
    pool mask's float32 minimum, meant to become the lowest code) overflows to -inf on purpose."""
    info = np.iinfo(dtype)
    with np.errstate(over="ignore"):
        return np.clip(np.round(value / q.scale[0]) + q.zero_point[0], info.min, info.max).astype(dtype)


class _Groups:
    """Union-find over tensor names that must share quantization parameters."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


# XNNPACK refuses (and some versions crash on) requantization multipliers of 256 and more
MAX_MULTIPLIER = 255.0
MIN_ADD_INPUT_RATIO = 1 / 1000  # XNNPACK: input_scale / output_scale >= 2^-10 for ADD and SUB
MIN_MUL_PRODUCT_RATIO = 2.0**-15  # XNNPACK: input1_scale * input2_scale / output_scale >= 2^-16
# XNNPACK requantizes int8 -> int8 (QUANTIZE) for input_scale / output_scale in [2^-8, 2^7]
QUANTIZE_RATIO_RANGE = (1 / 256, 128.0)


def _minimum_scales(g: Graph, is_int8: dict[int, bool], params: dict[str, QuantParams]) -> dict[str, float]:
    """Tensor -> the smallest scale that keeps every requantization multiplier in XNNPACK's bounds."""
    needs: dict[str, float] = {}
    for n in g.nodes:
        if not is_int8[id(n)] or not n.outputs or n.outputs[0] not in params:
            continue
        out = n.outputs[0]

        def scale_of(name: str) -> float:
            if name in params:
                return float(params[name].scale[0])
            t = g.tensors[name]
            if t.is_const and t.data is not None:
                return max(float(np.abs(t.data).max()), 1e-30) / 127.0
            return 0.0

        rule = int8_rule(n.op)
        if rule.weights is not None:
            x = n.inputs[rule.weights.data]
            w = g.tensors[n.inputs[rule.weights.weight]].data
            w_scale = float(np.abs(w).max()) / 127.0 if w is not None else 0.0
            needs[out] = scale_of(x) * w_scale / MAX_MULTIPLIER
        elif rule.bound is ScaleBound.PRODUCT:
            needs[out] = scale_of(n.inputs[0]) * scale_of(n.inputs[1]) / MAX_MULTIPLIER
        elif rule.bound is ScaleBound.SUM and n.attrs.get("_role") != "pool_mask":
            needs[out] = max(scale_of(n.inputs[0]), scale_of(n.inputs[1])) / MAX_MULTIPLIER
            for i in n.inputs:  # and each input scale at least 2^-10 of the output's
                if i in params:
                    needs[i] = max(needs.get(i, 0.0), scale_of(out) * MIN_ADD_INPUT_RATIO)
        elif rule.bound is ScaleBound.WIDEST_INPUT:
            needs[out] = max(scale_of(i) for i in n.inputs if i and i in params) / MAX_MULTIPLIER
    return needs


def _data_inputs(graph: Graph, node: Node) -> list[str]:
    return [i for i in node.inputs if i and not graph.is_const(i)]


@dataclass(frozen=True)
class _Precision:
    """What int8 and int16x8 activations change: the dtype, the ops with a kernel, the fixed
    output parameters, how a range becomes parameters, and the bias integers."""

    sixteen: bool
    dtype: type
    supported: frozenset[str]
    fixed: dict
    make_params: object
    bias_dtype: type

    @classmethod
    def of(cls, activations: str) -> _Precision:
        if activations == "int16":
            return cls(True, INT16, INT16_OPS, FIXED_OUTPUT_16, symmetric16_params, np.int64)
        return cls(False, INT8, INT8_OPS, FIXED_OUTPUT, activation_params, np.int32)


def quantize_int8(
    graph: Graph,
    ranges: dict[str, tuple[float, float]],
    *,
    per_channel: bool = True,
    io_type: str = "float32",
    keep_float: set[str] | frozenset[str] = frozenset(),
    float_ops: frozenset[str] = FLOAT_ON_CPU,
    channel_means: dict[str, np.ndarray] | None = None,
    activations: str = "int8",
    input_moments: dict[str, np.ndarray] | None = None,
) -> Graph:
    """A full-integer copy of ``graph`` (activations int8 wherever a kernel exists).

    ``keep_float`` names source (ONNX) nodes to leave in float; ops in ``float_ops`` stay
    float too (the default: those XNNPACK has no int8 kernel for; pass an empty set for a
    fully integer model, as the Edge TPU needs). ``input_moments`` (weighted op's output name ->
    its inputs' moment, :mod:`~edgekit.converters.quant.reconstruct`) rounds those ops' weights
    by reconstruction instead of to nearest."""
    g = graph.copy()
    precision = _Precision.of(activations)
    if precision.sixteen and io_type != "float32":
        raise UnsupportedModelError("int16x8 models take float32 I/O; drop --io-type")
    is_int8 = _int8_ops(g, ranges, precision, io_type, keep_float, float_ops)
    _hard_swish_kept_float(g, is_int8)
    # tensors that become int8: touched by an int8 op (data inputs and outputs)
    quantized: set[str] = set()
    for n in g.nodes:
        if is_int8[id(n)]:
            quantized.update(_data_inputs(g, n))
            quantized.update(n.outputs)
    quantized = {t for t in quantized if g.tensors[t].dtype == np.float32}
    params = _activation_params(g, is_int8, quantized, dict(ranges), precision)
    for t in quantized:
        tensor = g.tensors[t]
        if not tensor.is_const:
            tensor.dtype, tensor.quant = precision.dtype, params[t]
    _quantize_constants(g, is_int8, precision, per_channel, channel_means or {}, input_moments or {})
    _unreachable_clamps_dropped(g)
    if float_ops and not precision.sixteen:
        _clamps_as_requantization(g, is_int8)
    _bridge_float_ops(g, is_int8)
    _set_io(g, io_type, _float_output_params(g, ranges, precision))
    _cpu_head_first(g)
    g.remove_unused()
    return g


def _unreachable_clamps_dropped(g: Graph) -> None:
    """A fused RELU6 or RELU_N1_TO_1 whose bound lies beyond what the quantized output can hold
    becomes RELU or NONE, which computes the same codes. TFLite's reference kernels turn the bound
    into an int32 at the output scale when they prepare the op, and refuse the whole model when it
    overflows (kernel_util.cc: a random-weight MobileNetV2's activations reach a scale of 2.6e-9);
    XNNPACK, which clamps the codes, does not check."""
    for n in g.nodes:
        activation = n.attrs.get("fused_activation_function", "NONE")
        if activation not in ("RELU6", "RELU_N1_TO_1") or not n.outputs:
            continue
        quant = g.tensors[n.outputs[0]].quant
        if quant is None or g.tensors[n.outputs[0]].dtype not in (INT8, INT16):
            continue
        scale, zero_point = float(quant.scale[0]), int(quant.zero_point[0])
        low, high = facts(activation).clamp
        if abs(high) / scale + abs(zero_point) >= 2.0**31 or abs(low) / scale + abs(zero_point) >= 2.0**31:
            n.attrs["fused_activation_function"] = "RELU" if low == 0.0 else "NONE"


def _hard_swish_kept_float(g: Graph, is_int8: dict[int, bool]) -> None:
    """A HARD_SWISH that :func:`expand_for_int8` split into three ops for int8 kernels is one float
    op again where it stays float (``keep_float``, a float tail) or where it reads a float op's
    output or feeds only float ops: one float pass over the values, not three int8 ones, and its
    DEQUANTIZE or QUANTIZE moves to the int8 side, where it was needed anyway."""
    parts: dict[str, list[Node]] = {}
    for n in g.nodes:
        if "_hard_swish" in n.attrs:
            parts.setdefault(n.attrs["_hard_swish"], []).append(n)
    producers, consumers = g.producers(), g.consumers()
    for name, nodes in parts.items():
        x, out = nodes[0].inputs[0], nodes[-1].outputs[0]
        after_float = x in producers and not is_int8[id(producers[x])]
        before_float = bool(consumers.get(out)) and not any(is_int8[id(c)] for c in consumers[out])
        if any(is_int8[id(n)] for n in nodes) and not (after_float or before_float):
            continue
        joined = Node("HARD_SWISH", [x], [out], {}, name=name)
        joined.attrs["_source"] = nodes[0].attrs["_source"]
        g.nodes.insert(g.nodes.index(nodes[0]), joined)
        for n in nodes:
            g.nodes.remove(n)
        is_int8[id(joined)] = False


def _int8_ops(g: Graph, ranges, precision: _Precision, io_type: str, keep_float, float_ops) -> dict[int, bool]:
    """Node id -> whether it runs quantized."""
    is_int8 = {
        id(n): n.op in precision.supported and n.op not in float_ops and n.attrs.get("_source") not in keep_float
        for n in g.nodes
    }
    for n in g.nodes:  # int8 weights on a float constant: a hybrid kernel, whose output LiteRT wants float
        if n.op in WEIGHTED and not _data_inputs(g, n):
            is_int8[id(n)] = False
    if float_ops:  # a CPU target may keep byte-moving ops in float where one int8 grid cannot hold their inputs
        for n in _disparate_concatenations(g, ranges):
            is_int8[id(n)] = False
        if io_type == "float32":
            _float_tail(g, is_int8)
            for n in g.nodes:
                if n.op in NOT_DELEGATED and all(i in g.inputs for i in _data_inputs(g, n)):
                    is_int8[id(n)] = False
    return is_int8


def _activation_params(g: Graph, is_int8, quantized: set[str], ranges, precision: _Precision) -> dict:
    """Tensor -> its parameters: one set per shared group, from the union of its members' ranges
    (or the op's fixed parameters), output scales widened until every requantization multiplier
    is in XNNPACK's bounds."""
    groups = _share_groups(g, is_int8, quantized)
    if _requantize_fixed_outputs(g, is_int8, quantized, ranges, groups, precision.fixed):
        groups = _share_groups(g, is_int8, quantized)
    symmetric = _symmetric_groups(g, is_int8, groups)
    fixed: dict[str, tuple[float, int]] = {}
    for n in g.nodes:
        if is_int8[id(n)] and n.op in precision.fixed:
            root = groups.find(n.outputs[0])
            if root in fixed and fixed[root] != precision.fixed[n.op]:
                raise UnsupportedModelError(f"internal: conflicting fixed parameters at {n.name}")
            fixed[root] = precision.fixed[n.op]
    group_range = _group_ranges(g, quantized, ranges, groups)
    min_scale: dict[str, float] = {}
    for _ in range(8):  # widen output scales until every requantization multiplier is in bounds
        params = {}
        for t in quantized:
            root = groups.find(t)
            if root in fixed:
                params[t] = QuantParams(np.float32(fixed[root][0]), fixed[root][1])
            else:
                lo, hi = group_range.get(root, (0.0, 1.0))
                lo, hi = (lo if np.isfinite(lo) else 0.0), (hi if np.isfinite(hi) else 1.0)
                make = symmetric8_params if root in symmetric and not precision.sixteen else precision.make_params
                params[t] = make(lo, hi, min_scale.get(root, 0.0))
        changed = False
        for t, need in _minimum_scales(g, is_int8, params).items():
            root = groups.find(t)
            if root not in fixed and need > float(params[t].scale[0]) * (1 + 1e-6):
                min_scale[root] = max(min_scale.get(root, 0.0), need)
                changed = True
        if not changed:
            break
    return params


def _group_ranges(g: Graph, quantized: set[str], ranges, groups: _Groups) -> dict[str, list[float]]:
    """One range per group: the union of its members' observed ranges."""
    group_range: dict[str, list[float]] = {}
    masked = {n.outputs[0] for n in g.nodes if n.attrs.get("_role") == "pool_mask"}
    for t in quantized:
        if t not in ranges:
            raise UnsupportedModelError(f"internal: no calibration range for tensor '{t}'")
        r = group_range.setdefault(groups.find(t), [np.inf, -np.inf])
        if t in masked:
            continue  # the float minimum on the border says nothing about the values
        lo, hi = ranges[t]
        r[0], r[1] = min(r[0], lo), max(r[1], hi)
    return group_range


def _quantize_constants(
    g: Graph, is_int8, precision: _Precision, per_channel: bool, channel_means, input_moments
) -> None:
    """The constants int8 ops read: weights and biases of weighted ops, the others on their own grid."""
    for n in g.nodes:
        if not is_int8[id(n)]:
            continue
        if n.op in WEIGHTED:
            moment = input_moments.get(n.outputs[0])
            _quantize_weighted(g, n, per_channel, channel_means, precision.bias_dtype, moment)
            continue
        for k, name in enumerate(n.inputs):
            t = g.tensors.get(name) if name else None
            if t is None or not t.is_const or t.dtype != np.float32:
                continue
            new = g.add_tensor(f"{name}_q", t.shape, precision.dtype, unique=True)
            if n.attrs.get("_role") == "pool_mask":
                # 0 -> 127 keeps the interior; the float minimum saturates to -128, and so does
                # the sum on the border, which then never wins the max (int16: zero point 0)
                q = QuantParams(g.tensors[n.inputs[0]].quant.scale, 0 if precision.sixteen else 127)
            elif n.op in SHARED:
                q = g.tensors[n.outputs[0]].quant
            elif int8_rule(n.op).symmetric_input == k and not precision.sixteen:
                q = symmetric8_params(float(t.data.min()), float(t.data.max()))
            else:
                floor = 0.0 if precision.sixteen else _constant_min_scale(g, n, k)
                q = precision.make_params(float(t.data.min()), float(t.data.max()), floor)
            g.tensors[new].data = quantize_values(t.data, q, precision.dtype)
            g.tensors[new].quant = q
            n.inputs[k] = new


def _cpu_head_first(g: Graph) -> None:
    """Run first the ops XNNPACK does not take that read only graph inputs and constants (the
    reflection padding in front of an audio model's STFT): after an input's QUANTIZE they split
    the delegated ops in two partitions, as LiteRT partitions in execution order."""
    head = [
        n
        for n in g.nodes
        if n.op in NOT_DELEGATED and all(not i or i in g.inputs or g.tensors[i].is_const for i in n.inputs)
    ]
    chosen = {id(n) for n in head}
    g.nodes = head + [n for n in g.nodes if id(n) not in chosen]


def _symmetric_groups(g: Graph, is_int8: dict[int, bool], groups: _Groups) -> set[str]:
    """The groups holding an int8 input that must have zero point 0 (XNNPACK's BATCH_MATMUL)."""
    return {
        groups.find(n.inputs[k])
        for n in g.nodes
        if is_int8[id(n)] and (k := int8_rule(n.op).symmetric_input) is not None
    }


def _constant_min_scale(g: Graph, n: Node, k: int) -> float:
    """The smallest scale XNNPACK accepts for constant input ``k`` of an int8 ADD, SUB or MUL: a
    constant far below the output's step (an epsilon, the zeros of a broadcast) would otherwise
    get a scale of its own range, 1e-7 or 1e-33, and the op would leave the delegate."""
    out = float(g.tensors[n.outputs[0]].quant.scale[0])
    bound = int8_rule(n.op).bound
    if bound is ScaleBound.SUM:
        return out * MIN_ADD_INPUT_RATIO
    other = g.tensors[n.inputs[1 - k]] if bound is ScaleBound.PRODUCT else None
    if other is not None and other.quant is not None:
        return out * MIN_MUL_PRODUCT_RATIO / float(other.quant.scale[0])
    return 0.0


# int8 clamps XNNPACK has no kernel for -> the interval they clamp to
CLAMPS = {name: f.clamp for name, f in OPS.items() if f.clamp is not None}


def _clamps_as_requantization(g: Graph, is_int8: dict[int, bool]) -> None:
    """An int8 RELU/RELU6/RELU_N1_TO_1 whose output grid lies inside its clamp interval is a
    requantization (QUANTIZE int8 -> int8): saturating to the grid is the clamp. XNNPACK runs
    QUANTIZE in int8 but those clamps only in float, so a lone RELU (one not fused into the op
    before it) would otherwise split the partition."""
    for n in g.nodes:
        if not is_int8[id(n)] or n.op not in CLAMPS:
            continue
        x, y = g.tensors[n.inputs[0]].quant, g.tensors[n.outputs[0]].quant
        scale, zero_point = float(y.scale[0]), int(y.zero_point[0])
        low, high = CLAMPS[n.op]
        # the int8 kernel clamps to the quantized bounds; where they reach past the grid, only saturation is left
        inside = zero_point + round(low / scale) <= -128 and (high == np.inf or zero_point + round(high / scale) >= 127)
        ratio = float(x.scale[0]) / scale
        if inside and QUANTIZE_RATIO_RANGE[0] <= ratio <= QUANTIZE_RATIO_RANGE[1]:
            n.op, n.attrs = "QUANTIZE", {"_source": n.attrs.get("_source", "")}


# a concatenation whose inputs' ranges differ more than this stays float on a CPU target: on
# one shared int8 grid the narrowest input would keep fewer than 255 / 16 ~ 16 levels
MAX_CONCAT_SPAN_RATIO = 16.0


def _disparate_concatenations(g: Graph, ranges: dict[str, tuple[float, float]]) -> list[Node]:
    """CONCATENATIONs joining values of very different ranges, e.g. a detector's boxes (0..640)
    and class scores (0..1): a float concatenation costs a copy, one int8 grid costs the scores."""
    found = []
    for n in g.nodes:
        if n.op != "CONCATENATION":
            continue
        spans = [
            max(ranges[i][1], 0.0) - min(ranges[i][0], 0.0) for i in n.inputs if i and not g.is_const(i) and i in ranges
        ]
        spans = [s for s in spans if np.isfinite(s)]
        if len(spans) > 1 and max(spans) > MAX_CONCAT_SPAN_RATIO * max(min(spans), 1e-30):
            found.append(n)
    return found


def _float_tail(g: Graph, is_int8: dict[int, bool]) -> None:
    """Leave in float the cheap ops after the last weighted op whose results are only read in
    float (float outputs, float ops): a detector's box decoding or a segmenter's final add would
    otherwise be requantized once more per op for nothing, each time losing a grid step."""
    consumers = g.consumers()
    producers = g.producers()
    outputs = set(g.outputs)

    def source(name: str) -> Node | None:  # the producer behind reshape-like ops
        p = producers.get(name)
        while p is not None and is_int8[id(p)] and p.op in SHARED and len(_data_inputs(g, p)) == 1:
            p = producers.get(_data_inputs(g, p)[0])
        return p

    def fed_in_float(n: Node) -> bool:  # int8 here would cost a QUANTIZE in as well as a DEQUANTIZE out
        feeders = [source(i) for i in _data_inputs(g, n)]
        return bool(feeders) and all(p is not None and not is_int8[id(p)] for p in feeders)

    def read_in_float(n: Node) -> bool:
        return all(
            (t in outputs or consumers.get(t)) and all(not is_int8[id(c)] for c in consumers.get(t, []))
            for t in n.outputs
        )

    changed = True
    while changed:
        changed = False
        for n in reversed(g.nodes):
            heavy = n.op in WEIGHTED or n.op == "BATCH_MATMUL"
            if is_int8[id(n)] and (not heavy or fed_in_float(n)) and read_in_float(n):
                is_int8[id(n)], changed = False, True


def _share_groups(g: Graph, is_int8: dict[int, bool], quantized: set[str]) -> _Groups:
    """Tensors that must carry one set of parameters: the inputs and outputs of int8 ops that
    move bytes without rescaling (SHARED), and a pool mask's sum with its input."""
    groups = _Groups()
    for n in g.nodes:
        if not is_int8[id(n)]:
            continue
        if n.op in SHARED:
            indices = SHARED[n.op]
            ins = [i for k, i in enumerate(n.inputs) if i and (indices is None or k in indices)]
            for name in ins:
                for out in n.outputs:
                    if name in quantized or g.is_const(name):
                        groups.union(name, out)
        if n.attrs.get("_role") == "pool_mask":
            groups.union(n.inputs[0], n.outputs[0])
    return groups


def _group_sources(g: Graph, is_int8: dict[int, bool], quantized: set[str], groups: _Groups) -> dict[str, set]:
    """Group root -> where its values come from: the fixed-parameter op names whose outputs it
    holds, and ``None`` for any other producer (an op that sets its own range, a graph input,
    a float op's QUANTIZE). Tensors that a shared op copies from the group are not sources."""
    producers = g.producers()
    sources: dict[str, set] = {}
    for t in quantized:
        node = producers.get(t)
        copied = (
            node is not None and is_int8[id(node)] and (node.op in SHARED or node.attrs.get("_role") == "pool_mask")
        )
        if copied:
            continue
        fixed_op = node.op if node is not None and is_int8[id(node)] else None
        sources.setdefault(groups.find(t), set()).add(fixed_op)
    return sources


def _requantize_fixed_outputs(
    g: Graph,
    is_int8: dict[int, bool],
    quantized: set[str],
    ranges: dict[str, tuple[float, float]],
    groups: _Groups,
    fixed_table: dict[str, tuple[float, int]],
) -> bool:
    """Give a fixed-parameter op (LOGISTIC, SOFTMAX, ...) its own output tensor followed by a
    requantizing QUANTIZE wherever a shared-parameter op joins that output with values from
    elsewhere: otherwise the whole group takes the fixed range, e.g. a YOLO head's
    Concat(boxes in 0..320, sigmoid scores) clipped every box to [0, 1]."""
    sources = _group_sources(g, is_int8, quantized, groups)
    mixed = {
        root
        for root, kinds in sources.items()
        if any(k in fixed_table for k in kinds) and len({fixed_table.get(k) for k in kinds}) > 1
    }
    if not mixed:
        return False
    for n in list(g.nodes):
        if not (is_int8[id(n)] and n.op in fixed_table and groups.find(n.outputs[0]) in mixed):
            continue
        out = n.outputs[0]
        own = g.add_tensor(f"{out}_{n.op.lower()}", g.shape(out), np.float32, unique=True)
        n.outputs[0] = own
        requantize = Node(
            "QUANTIZE", [own], [out], {"_source": n.attrs.get("_source", "")}, name=f"{n.name}/requantize"
        )
        g.nodes.insert(g.nodes.index(n) + 1, requantize)
        is_int8[id(requantize)] = True
        quantized.add(own)
        ranges[own] = ranges[out]
    return True


def _bias_correction(op: str, error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Expected output shift per channel caused by the weight rounding ``error``, for inputs
    whose channels average ``mean``."""
    if op == "FULLY_CONNECTED":
        return error @ mean
    if op == "DEPTHWISE_CONV_2D":
        multiplier = error.shape[3] // mean.size
        return error.sum(axis=(0, 1, 2)) * np.repeat(mean, multiplier)
    if op == "CONV_2D":
        groups = mean.size // error.shape[3]
        per_group = error.shape[0] // groups
        m = mean.reshape(groups, -1)
        return np.concatenate(
            [np.einsum("ohwi,i->o", error[k * per_group : (k + 1) * per_group], m[k]) for k in range(groups)]
        )
    return np.zeros(error.shape[0])


def _quantize_weighted(
    g: Graph, n: Node, per_channel: bool, channel_means: dict[str, np.ndarray], bias_dtype=np.int32, moment=None
) -> None:
    weights = int8_rule(n.op).weights
    w_index, axis, b_index = weights.weight, weights.axis, weights.bias
    x = n.inputs[weights.data]
    w = g.tensors[n.inputs[w_index]]
    if w.data is None:
        raise UnsupportedModelError(f"{n.op} '{n.name}' has non-constant weights; int8 needs constant weights")
    channel_axis = axis if per_channel else None
    in_scale = float(g.tensors[x].quant.scale[0])
    has_bias = len(n.inputs) > b_index and bool(n.inputs[b_index])
    bias_values = g.tensors[n.inputs[b_index]].data if has_bias else None
    out_quant = g.tensors[n.outputs[0]].quant
    q, wq = _weights_for(w.data, channel_axis, bias_values, in_scale, out_quant, np.iinfo(bias_dtype).max)
    if moment is not None:
        from edgekit.converters.quant.reconstruct import reconstructed_weights

        q = reconstructed_weights(n.op, w.data, wq.scale, moment)
    name = g.add_tensor(f"{w.name}_int8", w.shape, INT8, q, wq, unique=True)
    n.inputs[w_index] = name
    if has_bias:
        b = g.tensors[n.inputs[b_index]]
        bias_scale = (in_scale * wq.scale.astype(np.float64)).astype(np.float32)
        bias = b.data.astype(np.float64)
        mean = channel_means.get(n.attrs.get("_float_input", x))
        if mean is not None and n.op != "TRANSPOSE_CONV":
            shape = [1] * w.data.ndim
            if wq.per_channel:
                shape[wq.axis] = -1
            error = q.astype(np.float64) * wq.scale.astype(np.float64).reshape(shape) - w.data.astype(np.float64)
            bias = bias - _bias_correction(n.op, error, mean.astype(np.float64))
        values = np.round(bias / bias_scale.astype(np.float64))
        limit = np.iinfo(bias_dtype)
        if np.any((values < limit.min) | (values > limit.max)):  # only a bias correction can get here
            raise UnsupportedModelError(
                f"{n.op} '{n.name}': its corrected bias does not fit {np.dtype(bias_dtype).name}; "
                "convert without bias correction"
            )
        values = values.astype(bias_dtype)
        bq = QuantParams(bias_scale, np.zeros(bias_scale.size, np.int64), 0)
        n.inputs[b_index] = g.add_tensor(f"{b.name}_q", b.shape, bias_dtype, values, bq, unique=True)


def _weights_for(w: np.ndarray, axis: int | None, bias, in_scale: float, out_quant, bias_limit: int):
    """int8 weights whose scales also serve the bias and the kernel. A channel's scale is raised
    until its bias fits the bias integers (input scale x weight scale): with a tiny input scale
    the int32 bias would clip silently, and the layer would answer about 0 instead of its bias
    (what onnxruntime's quantizer does too). A channel of zero weights takes the scale that makes
    its requantization exactly 1: the scale 1.0 it had put the multiplier outside XNNPACK's
    bounds, where LiteRT aborted the process."""
    q, wq = symmetric_weights(w, axis)
    scale = wq.scale.astype(np.float64).copy()
    if axis is None:
        amax = np.array([np.abs(w).max()])
        need = np.abs(bias).max(initial=0.0) if bias is not None else 0.0
        floor = np.array([need / (in_scale * bias_limit)])
    else:
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        floor = np.abs(bias.astype(np.float64)) / (in_scale * bias_limit) if bias is not None else np.zeros_like(scale)
    if out_quant is not None:
        scale = np.where(amax == 0, float(out_quant.scale[0]) / in_scale, scale)
    raised = np.maximum(scale, floor * (1 + 1e-6))
    if np.array_equal(raised, wq.scale.astype(np.float64)):
        return q, wq
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.round(w.astype(np.float64) / raised.reshape(shape)), -127, 127).astype(np.int8)
    return q, QuantParams(raised.astype(np.float32), wq.zero_point, wq.axis)


def _bridge_float_ops(g: Graph, is_int8: dict[int, bool]) -> None:
    """DEQUANTIZE int8 inputs of float ops (once per tensor) and QUANTIZE their outputs back where
    int8 is read."""
    dequantized: dict[str, str] = {}
    for n in list(g.nodes):
        if is_int8.get(id(n), True):
            continue
        for k, name in enumerate(n.inputs):
            t = g.tensors.get(name) if name else None
            if t is None or t.dtype not in (INT8, INT16) or t.quant is None or t.is_const:
                continue
            if name not in dequantized:
                dequantized[name] = g.add_tensor(f"{name}_float", t.shape, np.float32, unique=True)
                dequantize = Node("DEQUANTIZE", [name], [dequantized[name]], {}, name=f"{n.name}/dequantize")
                g.nodes.insert(g.nodes.index(n), dequantize)
            n.inputs[k] = dequantized[name]
        for k, name in enumerate(n.outputs):
            t = g.tensors[name]
            if t.dtype in (INT8, INT16) and t.quant is not None:
                f = g.add_tensor(f"{name}_float", t.shape, np.float32, unique=True)
                n.outputs[k] = f
                g.nodes.insert(g.nodes.index(n) + 1, Node("QUANTIZE", [f], [name], {}, name=f"{n.name}/quantize"))


def _float_output_params(g: Graph, ranges, precision: _Precision) -> dict[str, QuantParams]:
    """int8 parameters for the outputs an op kept in float makes (a softmax on the CPU target),
    so that integer I/O covers them too: the op's fixed parameters, else its calibrated range."""
    producers, params = g.producers(), {}
    for name in g.outputs:
        if g.tensors[name].dtype != np.float32 or name not in producers:
            continue
        op = producers[name].op
        if op in precision.fixed:
            params[name] = QuantParams(np.float32(precision.fixed[op][0]), precision.fixed[op][1])
        elif name in ranges and all(np.isfinite(ranges[name])):
            params[name] = activation_params(*ranges[name])
    return params


def _set_io(g: Graph, io_type: str, float_output_params: dict[str, QuantParams]) -> None:
    """The I/O ``io_type`` asks for; an output left float by its op gets a QUANTIZE after it."""
    if io_type not in ("float32", "int8", "uint8"):
        raise UnsupportedModelError(f"--io-type {io_type}: choose float32, int8 or uint8")
    for k, name in enumerate(list(g.inputs)):
        t = g.tensors[name]
        if t.dtype not in (INT8, INT16) or io_type == "int8":
            continue
        outer_dtype = np.float32 if io_type == "float32" else np.uint8
        outer_quant = None if io_type == "float32" else _as_uint8(t.quant)
        outer = g.add_tensor(f"{name}_input", t.shape, outer_dtype, quant=outer_quant, unique=True)
        g.nodes.insert(0, Node("QUANTIZE", [outer], [name], {}, name=f"{name}/quantize"))
        g.inputs[k] = outer
    for k, name in enumerate(list(g.outputs)):
        t = g.tensors[name]
        if io_type == "float32":
            if t.dtype in (INT8, INT16):
                outer = g.add_tensor(f"{name}_output", t.shape, np.float32, unique=True)
                g.nodes.append(Node("DEQUANTIZE", [name], [outer], {}, name=f"{name}/dequantize"))
                g.outputs[k] = outer
            continue
        # integer I/O: a float output is quantized, an int8 one requantized to uint8 when asked
        q = float_output_params.get(name) if t.dtype == np.float32 else t.quant if io_type == "uint8" else None
        if q is None or t.dtype not in (np.float32, INT8, INT16):
            continue
        dtype, q = (np.int8, q) if io_type == "int8" else (np.uint8, _as_uint8(q))
        outer = g.add_tensor(f"{name}_output", t.shape, dtype, quant=q, unique=True)
        g.nodes.append(Node("QUANTIZE", [name], [outer], {}, name=f"{name}/to_{io_type}"))
        g.outputs[k] = outer


def _as_uint8(q: QuantParams) -> QuantParams:
    """The same grid as uint8: values 0..255 for int8's -128..127."""
    return QuantParams(q.scale, q.zero_point + 128)


def quantize_dynamic(graph: Graph, per_channel: bool = True) -> Graph:
    """int8 weights for conv / fully-connected, float activations (hybrid kernels)."""
    g = graph.copy()
    for n in g.nodes:
        if not int8_rule(n.op).dynamic:
            continue
        w = g.tensors[n.inputs[1]]
        if w.data is None:
            continue
        axis = 0 if per_channel else None
        q, wq = symmetric_weights(w.data, axis)
        n.inputs[1] = g.add_tensor(f"{w.name}_int8", w.shape, INT8, q, wq, unique=True)
        if n.op == "FULLY_CONNECTED":
            n.attrs["asymmetric_quantize_inputs"] = True
    g.remove_unused()
    return g


def quantize_fp16(graph: Graph) -> Graph:
    """float16 constants, each dequantized once at load (XNNPACK folds the DEQUANTIZE)."""
    g = graph.copy()
    done: dict[str, str] = {}
    for n in list(g.nodes):
        for k, name in enumerate(n.inputs):
            t = g.tensors.get(name) if name else None
            if t is None or not t.is_const or t.dtype != np.float32 or t.data.size < 16:
                continue
            if name not in done:
                half = g.add_tensor(f"{name}_fp16", t.shape, np.float16, t.data.astype(np.float16), unique=True)
                full = g.add_tensor(f"{name}_fp32", t.shape, np.float32, unique=True)
                g.nodes.insert(0, Node("DEQUANTIZE", [half], [full], {}, name=f"{name}/dequantize"))
                done[name] = full
            n.inputs[k] = done[name]
    g.remove_unused()
    return g


def _average_pool_as_depthwise(g: Graph, n: Node) -> None:
    """AVERAGE_POOL_2D -> MEAN (a window covering the input) or a DEPTHWISE_CONV_2D with
    constant 1/(kh*kw) weights, which int8 represents exactly."""
    x, out = n.inputs[0], n.outputs[0]
    _, h, w, c = g.shape(x)
    kh, kw = n.attrs["filter_height"], n.attrs["filter_width"]
    act = n.attrs.get("fused_activation_function", "NONE")
    if n.attrs.get("padding") == "VALID" and (kh, kw) == (h, w) and act == "NONE":
        n.op = "MEAN"
        n.inputs = [x, g.add_const(np.array([1, 2], np.int32), "axes")]
        n.attrs = {"keep_dims": True, "_source": n.attrs.get("_source", "")}
        return
    sh, sw = n.attrs["stride_h"], n.attrs["stride_w"]
    if n.attrs.get("padding") == "SAME":
        # SAME windows exclude the padding: pad with zeros, sum, and rescale each border
        # window by (kh*kw / its real element count) with a constant MUL
        _, oh, ow, _ = g.shape(out)
        pads = []
        for size, k, stride, o in ((h, kh, sh, oh), (w, kw, sw, ow)):
            total = max((o - 1) * stride + k - size, 0)
            pads.append((total // 2, total - total // 2))
        padded = g.add_tensor(f"{out}_padded", (1, h + sum(pads[0]), w + sum(pads[1]), c), np.float32, unique=True)
        paddings = g.add_const(np.array([[0, 0], pads[0], pads[1], [0, 0]], np.int32), "paddings")
        g.nodes.insert(g.nodes.index(n), Node("PAD", [x, paddings], [padded], {}, name=f"{n.name}/pad"))
        ones = np.pad(np.ones((h, w)), pads)
        counts = np.array(
            [[ones[i * sh : i * sh + kh, j * sw : j * sw + kw].sum() for j in range(ow)] for i in range(oh)]
        )
        summed = g.add_tensor(f"{out}_window_mean", g.shape(out), np.float32, unique=True)
        correction = g.add_const((kh * kw / counts).reshape(1, oh, ow, 1).astype(np.float32), f"{out}_count")
        g.nodes.insert(
            g.nodes.index(n) + 1,
            Node("MUL", [summed, correction], [out], {"fused_activation_function": act}, name=f"{n.name}/count"),
        )
        n.outputs = [summed]
        x, act = padded, "NONE"
    weights = np.full((1, kh, kw, c), 1.0 / (kh * kw), np.float32)
    n.op = "DEPTHWISE_CONV_2D"
    n.inputs = [x, g.add_const(weights, f"{out}_avg_weights"), g.add_const(np.zeros(c, np.float32), f"{out}_avg_bias")]
    n.attrs = {
        "padding": "VALID",
        "stride_w": n.attrs["stride_w"],
        "stride_h": n.attrs["stride_h"],
        "depth_multiplier": 1,
        "dilation_w_factor": 1,
        "dilation_h_factor": 1,
        "fused_activation_function": act,
        "_source": n.attrs.get("_source", ""),
    }


def expand_for_int8(graph: Graph) -> Graph:
    """Rewrite ops whose int8 kernels XNNPACK lacks into ones it has, before calibration:
    HARD_SWISH(x) = x * (relu6(x + 3) * 1/6); AVERAGE_POOL_2D as MEAN or DEPTHWISE_CONV_2D; PRELU
    as int8 arithmetic (:func:`~edgekit.converters.passes.xnnpack_forms.prelu_as_int8_arithmetic`)."""
    g = graph.copy()
    for n in [n for n in g.nodes if n.op == "AVERAGE_POOL_2D"]:
        _average_pool_as_depthwise(g, n)
    for n in [n for n in g.nodes if n.op == "HARD_SWISH"]:
        x, out = n.inputs[0], n.outputs[0]
        shape = g.shape(x)
        at = g.nodes.index(n)
        g.nodes.remove(n)
        h6 = g.add_tensor(f"{out}_relu6", shape, np.float32, unique=True)
        h = g.add_tensor(f"{out}_hardsigmoid", shape, np.float32, unique=True)
        three = g.add_const(np.array(3.0, np.float32), "three")
        sixth = g.add_const(np.array(1 / 6, np.float32), "one_sixth")
        for k, new in enumerate(
            [
                Node("ADD", [x, three], [h6], {"fused_activation_function": "RELU6"}, name=f"{n.name}/add3"),
                Node("MUL", [h6, sixth], [h], {"fused_activation_function": "NONE"}, name=f"{n.name}/div6"),
                Node("MUL", [x, h], [out], {"fused_activation_function": "NONE"}, name=f"{n.name}/mul"),
            ]
        ):
            new.attrs["_source"] = n.attrs.get("_source", "")
            new.attrs["_hard_swish"] = n.name  # quantize_int8 joins the three again if they stay float
            g.nodes.insert(at + k, new)
    return prelu_as_int8_arithmetic(g)


CALIBRATED_MODES = ("int8", "int16x8")  # the modes whose activations are quantized from measured ranges


@dataclass(frozen=True)
class Calibrated:
    """What int8 quantization measures of a float graph, whatever stays in float: the graph
    rewritten for int8 kernels (:func:`expand_for_int8`), every activation's range, and (for bias
    correction) the mean of each channel read by a weighted op. One per conversion: every choice
    of ``keep_float`` quantizes from the same one."""

    graph: Graph
    ranges: dict[str, tuple[float, float]]
    channel_means: dict[str, np.ndarray] | None
    input_moments: dict[str, np.ndarray] | None = None  # for weights rounded by reconstruction


def calibrate_graph(tfl: Graph, onnx_graph: Graph, *, method: str = "minmax", **options) -> Calibrated:
    """Run the float TFLite-level graph ``tfl`` (converted from ``onnx_graph``) over
    ``calibration``, or take the ranges a QDQ model brings when there is no calibration; the
    ``options`` (``calibration``, ``bias_correction``, ``weight_rounding``) are those of
    :func:`calibrate_graph_each`."""
    return calibrate_graph_each(tfl, onnx_graph, methods=(method,), **options)[method]


def calibrate_graph_each(
    tfl: Graph,
    onnx_graph: Graph,
    *,
    calibration=None,
    methods: tuple[str, ...],
    bias_correction: bool = True,
    weight_rounding: str = "nearest",
) -> dict[str, Calibrated]:
    """:func:`calibrate_graph` by each of ``methods``, from one run of the float model: method ->
    its calibration. A QDQ model without ``calibration`` has one, its own: under every name.
    ``weight_rounding="reconstruct"`` also measures each weighted op's input moment."""
    from edgekit.converters.quant.calibration import calibrate_each, prepare_samples
    from edgekit.converters.quant.reconstruct import InputMoments
    from edgekit.converters.tflite.writer import serialize

    tfl = expand_for_int8(tfl)
    trained = qdq_tensor_ranges(tfl, onnx_graph.metadata.get("qdq", {}))
    if calibration is None and trained:
        own = Calibrated(tfl, complete_ranges(tfl, trained), None)  # a QDQ model: its own scales
        return dict.fromkeys(methods, own)
    samples = prepare_samples(calibration, onnx_graph)
    float_model = tfl.copy()
    float_model.metadata = {"_signature": tfl.metadata["_signature"]}
    means = None
    if bias_correction:
        means = {
            n.inputs[0]: np.zeros(tfl.shape(n.inputs[0])[-1])
            for n in tfl.nodes
            if n.op in WEIGHTED and n.op != "TRANSPOSE_CONV"
        }
    layout = tfl.metadata.get("io_layout", {})
    moments = InputMoments(tfl) if weight_rounding == "reconstruct" else None
    taps = moments.taps() if moments is not None else None
    by_method = calibrate_each(serialize(float_model), samples, layout, methods, means, taps)
    shared = shared_copies(tfl, trained)
    found = moments.moments if moments is not None else None
    return {method: Calibrated(tfl, ranges | shared, means, found) for method, ranges in by_method.items()}


def quantize_graph(
    tfl: Graph,
    onnx_graph: Graph,
    *,
    mode: str,
    calibration=None,
    method: str = "minmax",
    per_channel: bool = True,
    io_type: str = "float32",
    keep_float: list[str] | None = None,
    fully_integer: bool = False,
    bias_correction: bool = True,
    weight_rounding: str = "nearest",
    calibrated: Calibrated | None = None,
) -> Graph:
    """Quantize the float TFLite-level graph ``tfl`` converted from ``onnx_graph``; int8 and
    int16x8 from ``calibrated`` when given (:func:`calibrate_graph` of the same ``tfl``, which
    ``calibration``, ``method`` and ``bias_correction`` then no longer concern)."""
    if mode == "fp16":
        return quantize_fp16(tfl)
    if mode == "dynamic":
        return quantize_dynamic(tfl, per_channel)
    if mode not in CALIBRATED_MODES:
        raise UnsupportedModelError(f"--quantize {mode}: choose int8, int16x8, dynamic or fp16")
    if calibrated is None:
        calibrated = calibrate_graph(
            tfl,
            onnx_graph,
            calibration=calibration,
            method=method,
            bias_correction=bias_correction,
            weight_rounding=weight_rounding,
        )
    return quantize_int8(
        calibrated.graph,
        calibrated.ranges,
        per_channel=per_channel,
        io_type=io_type,
        keep_float=set(keep_float or []),
        float_ops=frozenset() if fully_integer or mode == "int16x8" else FLOAT_ON_CPU,
        channel_means=calibrated.channel_means,
        activations="int16" if mode == "int16x8" else "int8",
        input_moments=calibrated.input_moments,
    )


def qdq_tensor_ranges(tfl: Graph, record: dict[str, list]) -> dict[str, tuple[float, float]]:
    """The QDQ ranges of the source model, keyed by the TFLite tensors that stand for them."""
    if not record:
        return {}
    from edgekit.converters.passes.layout import resolve_layout
    from edgekit.converters.passes.qdq import qdq_ranges

    source = qdq_ranges(record)
    layouts = tfl.metadata.get("layouts", {})
    result = {}
    for name in tfl.tensors:
        src, _ = resolve_layout(name, layouts)
        if src in source:
            result[name] = source[src]
    return result


def shared_copies(tfl: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """``ranges`` and the tensors single-input shared-parameter ops copy them to (a PAD after a
    QDQ'd activation). Their calibrated ranges come from the float model, which lacks the QDQ's
    saturation (PACT's clip at alpha), and the union per group would let them widen the trained
    range (measured: 3.4 for an alpha of 1.72)."""
    spread = dict(ranges)
    for n in tfl.nodes:  # graph order: a chain of copies is followed in one pass
        if SHARED.get(n.op) == (0,) and n.inputs and n.inputs[0] in spread:
            for out in n.outputs:
                spread.setdefault(out, spread[n.inputs[0]])
    return spread


def complete_ranges(tfl: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Spread known ranges across ops that do not change values' range (shared-parameter ops
    and fused/plain ReLUs' inputs); refuse when a tensor is still unknown."""
    ranges = dict(ranges)
    for _ in range(len(tfl.nodes) + 1):
        changed = False
        for n in tfl.nodes:
            same = n.op in SHARED or n.op in ("QUANTIZE", "DEQUANTIZE")
            within = n.op in ("MEAN", "AVERAGE_POOL_2D")  # an average stays inside its input's range
            if not (same or within):
                continue
            for i in [i for i in n.inputs[:1] if i and not tfl.is_const(i)]:
                for o in n.outputs:
                    if same and o in ranges and i not in ranges:
                        ranges[i], changed = ranges[o], True
                    elif i in ranges and o not in ranges:
                        ranges[o], changed = ranges[i], True
        if not changed:
            break
    missing = [
        t.name
        for t in tfl.tensors.values()
        if not t.is_const
        and t.dtype == np.float32
        and t.name not in ranges
        and any(t.name in (*n.inputs, *n.outputs) for n in tfl.nodes)
    ]
    for name in missing:  # fall back to a neighbour-free guess only for what no op reads as int8
        ranges[name] = (-1.0, 1.0)
    if missing:
        import sys

        print(
            f"note: {len(missing)} tensor(s) have no QDQ range ({', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}); pass --calibration to measure them",
            file=sys.stderr,
        )
    return ranges
