"""Binary and ternary weights and learned activation clipping (PACT), trained with the
straight-through estimator (the ``torch`` extra, next to the int8 QAT of
:mod:`edgekit.converters.torch`).

- ``binary`` (BWN, Rastegari et al. 2016): ``w_q = a_c * sign(w)``, ``a_c = mean |w|`` of output
  channel c.
- ``ternary`` (TWN, Li & Liu 2016): threshold ``d_c = 0.7 * mean |w|``; ``w_q = a_c * sign(w)``
  where ``|w| > d_c``, else 0, with ``a_c`` the mean ``|w|`` above the threshold.
- ``ttq`` (TTQ, Zhu et al. 2017): threshold ``d_c = 0.05 * max |w|``; ``w_q`` in
  ``{-w1_c, 0, w2_c}`` with both scales trained, the latent weights' gradient scaled by
  ``w2_c`` / 1 / ``w1_c`` on the positive / zero / negative side.
- ``PACT`` (Choi et al. 2018): ``y = clip(x, 0, alpha)`` with ``alpha`` trained
  (``dy/dalpha = 1`` where ``x >= alpha``), optionally fake-quantized to ``bits`` on
  ``[0, alpha]``; ``PACT(6.0, bits, learn_alpha=False)`` is the fixed ReLU6 clip it is compared with.

``lowbit_weights`` and ``pact_activations`` put them on a copy of a model, on layers chosen by
name or type; the first and last weighted layers keep full-precision weights by default (the
papers leave them so; the converter makes them int8). ``export_lowbit`` writes ONNX that
``edgekit convert --quantize int8`` turns into int8 weights with 2 (binary) or 3 (ternary)
distinct values per output channel and PACT's ``alpha`` as the activation range. Given
calibration samples it writes the QDQ model of the int8 computation itself (BatchNorm folded,
weights and biases on their int8/int32 grids, every activation's int8 parameters): ``convert``
takes it without calibration, and onnxruntime running it is the int8 model's reference, code
for code. Those grids are ``CompactGrids`` by default: short float32 scales, coarser int32
biases and one scale per low-bit layer where the channels' own can move to the next layer,
which the package's xz stores in a fraction of the bytes (the weights' own bits are all that
is left of a low-bit model otherwise).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekit.converters.torch import export_onnx, train


def _conv_with(layer: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return layer._conv_forward(x, weight, layer.bias)


def _linear_with(layer: nn.Linear, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(x, weight, layer.bias)


# layer type -> how it runs on substituted weights; the layers low-bit weights can go on
FORWARD_WITH_WEIGHT: dict[type, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    nn.Conv2d: _conv_with,
    nn.Linear: _linear_with,
}
ACTIVATIONS = (nn.ReLU, nn.ReLU6)


def _forward_for(layer: nn.Module) -> Callable | None:
    for kind, forward in FORWARD_WITH_WEIGHT.items():
        if isinstance(layer, kind):
            return forward
    return None


def _per_channel(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A [C] tensor shaped to broadcast over weights whose dimension 0 is the output channel."""
    return values.reshape(-1, *([1] * (weight.dim() - 1)))


def _channel_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    flat = values.flatten(1)
    if mask is None:
        return flat.mean(1)
    keep = mask.flatten(1).to(values.dtype)
    return (flat * keep).sum(1) / keep.sum(1).clamp(min=1)


class BinaryWeights(nn.Module):
    """BWN: ``a_c * sign(w)`` per output channel, gradients straight through to ``w``."""

    levels = 2

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = _per_channel(_channel_mean(w.detach().abs()), w)
        # sign(0) would be a third value
        binary = torch.where(w.detach() >= 0, scale, -scale)
        return binary + (w - w.detach())  # the value exactly binary, the gradient straight through


class TernaryWeights(nn.Module):
    """TWN: ``{-a_c, 0, a_c}`` with the paper's threshold ``0.7 * mean |w|`` per output channel."""

    levels = 3

    def __init__(self, weight: torch.Tensor, threshold_ratio: float = 0.7) -> None:
        super().__init__()
        self.threshold_ratio = threshold_ratio

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        magnitude = w.detach().abs()
        above = magnitude > _per_channel(self.threshold_ratio * _channel_mean(magnitude), w)
        scale = _per_channel(_channel_mean(magnitude, above), w)
        ternary = torch.sign(w.detach()) * above * scale
        return ternary + (w - w.detach())


class TrainedTernaryWeights(nn.Module):
    """TTQ: ``{-w1_c, 0, w2_c}`` with threshold ``0.05 * max |w|`` per output channel; ``w1`` and
    ``w2`` are parameters, started at the mean magnitude of the weights they stand for.
    ``per_channel_scales=False`` trains one ``w1`` and one ``w2`` for the layer, as the paper does:
    with the BatchNorm that follows folded in, every channel's levels then land on the same int8
    codes ``{-k, 0, 127}`` (or their negation), which the package's compression takes better
    than a ``k`` of each channel's own."""

    levels = 3

    def __init__(self, weight: torch.Tensor, threshold_ratio: float = 0.05, per_channel_scales: bool = True) -> None:
        super().__init__()
        self.threshold_ratio = threshold_ratio
        positive, negative = self._sides(weight.detach())
        magnitude = weight.detach().abs()
        if not per_channel_scales:  # the whole layer as one channel
            magnitude, positive, negative = (t.reshape(1, -1) for t in (magnitude, positive, negative))
        self.w_positive = nn.Parameter(_channel_mean(magnitude, positive).clamp(min=1e-6))
        self.w_negative = nn.Parameter(_channel_mean(magnitude, negative).clamp(min=1e-6))

    def _sides(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        threshold = _per_channel(self.threshold_ratio * w.abs().flatten(1).amax(1), w)
        return w > threshold, w < -threshold

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        positive, negative = self._sides(w.detach())
        w_pos, w_neg = _per_channel(self.w_positive, w), _per_channel(self.w_negative, w)
        ternary = w_pos * positive - w_neg * negative
        # the paper's latent-weight gradient: scaled by the level each weight was assigned
        gradient_scale = (w_pos * positive + w_neg * negative + ~(positive | negative)).detach()
        return ternary + gradient_scale * (w - w.detach())


WEIGHT_QUANTIZERS: dict[str, type[nn.Module]] = {
    "binary": BinaryWeights,
    "ternary": TernaryWeights,
    "ttq": TrainedTernaryWeights,
}


class LowBitLayer(nn.Module):
    """A Conv2d/Linear computing with its weights passed through ``quantizer``; the layer keeps
    the latent full-precision weights the optimizer updates."""

    def __init__(self, layer: nn.Module, quantizer: nn.Module) -> None:
        super().__init__()
        self.layer, self.quantizer = layer, quantizer
        self.forward_with = _forward_for(layer)

    @property
    def levels(self) -> int:
        return self.quantizer.levels

    def quantized_weight(self) -> torch.Tensor:
        return self.quantizer(self.layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with(self.layer, x, self.quantized_weight())


class _ClipToAlpha(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, alpha)
        return torch.minimum(x.clamp(min=0), alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, alpha = ctx.saved_tensors
        grad_x = grad * ((x > 0) & (x < alpha))
        grad_alpha = (grad * (x >= alpha)).sum().reshape(alpha.shape)
        return grad_x, grad_alpha


class PACT(nn.Module):
    """ReLU clipped at a trained ``alpha``; with ``bits``, fake-quantized on ``2**bits`` levels of
    ``[0, alpha]`` (rounding passes gradients straight through, as in the paper)."""

    def __init__(self, alpha: float = 6.0, bits: int | None = None, learn_alpha: bool = True) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)), requires_grad=learn_alpha)
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _ClipToAlpha.apply(x, self.alpha)
        if self.bits is None:
            return y
        step = self.alpha.detach().clamp(min=1e-8) / (2**self.bits - 1)
        return torch.round(y.detach() / step) * step + (y - y.detach())


class _ClipOnInt8Grid(nn.Module):
    """PACT as exported: ReLU, then QuantizeLinear/DequantizeLinear on 256 levels of [0, alpha].
    onnxruntime's saturation at the top of the grid is the clip. Clip(0, alpha) would lower to
    int8 MAXIMUM/MINIMUM, which XNNPACK does not run (a second partition) and which share their
    range with the layer's unclipped output; a ReLU fuses into its layer, and an int8 output
    on [0, alpha] saturates there, so the converted model clips exactly where onnxruntime does."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.scale = alpha / 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(torch.relu(x), self.scale, -128, -128, 127)


def _selected(name: str, module: nn.Module, layers: Iterable[str | type]) -> bool:
    return any(name == sel if isinstance(sel, str) else isinstance(module, sel) for sel in layers)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def weighted_layers(model: nn.Module) -> list[str]:
    """Names of the layers low-bit weights can go on, in the order ``named_modules`` visits them."""
    return [name for name, m in model.named_modules() if _forward_for(m) is not None]


def lowbit_weights(
    model: nn.Module,
    method: str = "ternary",
    layers: Iterable[str | type] | None = None,
    keep_first_last: bool = True,
    **options,
) -> nn.Module:
    """A copy of ``model`` whose selected Conv2d/Linear layers train with ``method``'s weights
    (``binary``, ``ternary``, ``ttq``). ``layers``: module names and/or types (default: every
    Conv2d/Linear); ``keep_first_last`` leaves the first and last of them at full precision.
    ``options`` go to the quantizer (``threshold_ratio``)."""
    if method not in WEIGHT_QUANTIZERS:
        raise ValueError(f"unknown weight quantizer {method!r}; choose {', '.join(WEIGHT_QUANTIZERS)}")
    model = copy.deepcopy(model)
    candidates = weighted_layers(model)
    if keep_first_last:
        candidates = candidates[1:-1]
    modules = dict(model.named_modules())
    chosen = [n for n in candidates if layers is None or _selected(n, modules[n], layers)]
    if not chosen:
        raise ValueError("no layer selected for low-bit weights")
    for name in chosen:
        layer = modules[name]
        _replace(model, name, LowBitLayer(layer, WEIGHT_QUANTIZERS[method](layer.weight, **options)))
    return model


def pact_activations(
    model: nn.Module,
    layers: Iterable[str | type] = ACTIVATIONS,
    alpha: float = 6.0,
    bits: int | None = None,
    learn_alpha: bool = True,
) -> nn.Module:
    """A copy of ``model`` with the selected activation modules (names and/or types; default
    every ReLU and ReLU6) replaced by ``PACT(alpha, bits, learn_alpha)``."""
    model = copy.deepcopy(model)
    chosen = [name for name, m in model.named_modules() if name and _selected(name, m, layers)]
    if not chosen:
        raise ValueError("no activation selected for PACT")
    for name in chosen:
        _replace(model, name, PACT(alpha, bits, learn_alpha))
    return model


def pact_alphas(model: nn.Module) -> dict[str, float]:
    return {name: float(m.alpha.detach()) for name, m in model.named_modules() if isinstance(m, PACT)}


def lowbit_levels(model: nn.Module) -> dict[str, int]:
    """Low-bit layer name -> the most distinct weight values one of its output channels may hold."""
    return {name: m.levels for name, m in model.named_modules() if isinstance(m, LowBitLayer)}


@torch.no_grad()
def deployable(model: nn.Module) -> nn.Module:
    """An eval copy computing what will be deployed: low-bit layers as plain layers holding their
    quantized float weights (per-channel symmetric int8 maps ``a_c`` to 127 and 0 to 0, so the
    levels survive conversion), PACT as ReLU on an int8 grid of ``[0, alpha]``."""
    model = copy.deepcopy(model).eval()
    for name, m in list(model.named_modules()):
        if isinstance(m, LowBitLayer):
            m.layer.weight.copy_(m.quantized_weight())
            _replace(model, name, m.layer)
        elif isinstance(m, PACT):
            _replace(model, name, _ClipOnInt8Grid(float(m.alpha.detach())))
    return model


def export_lowbit(
    model: nn.Module,
    example: torch.Tensor,
    path: str,
    input_name: str = "image",
    output_name: str = "logits",
    calibration: np.ndarray | None = None,
    compact: bool = True,
) -> dict[str, int]:
    """Write ``deployable(model)`` to ONNX; returns ``lowbit_levels(model)``. With
    ``calibration`` (input samples) the file is a QDQ model of the int8 computation instead
    (see ``int8_reference``): ``convert`` then needs no calibration; ``compact`` puts its
    constants on the short grids of ``CompactGrids`` (``False``: the converter's own)."""
    if calibration is None:
        export_onnx(deployable(model), example, path, input_name, output_name)
    else:
        grids = CompactGrids() if compact else None
        with tempfile.TemporaryDirectory() as work:
            plain = Path(work) / "plain.onnx"
            export_onnx(on_int8_grids(model, grids), example, str(plain), input_name, output_name)
            int8_reference(str(plain), path, calibration, grids)
    return lowbit_levels(model)


@dataclass(frozen=True)
class CompactGrids:
    """Int8 parameters chosen so that the package's xz stores little of them; the QDQ export
    carries them, so the int8 model and onnxruntime still compute the same. The float32 scales
    the .tflite holds per output channel (the weights' and the int32 biases', input scale x
    weight scale) otherwise fill their 23 mantissa bits: low-bit weights leave little else.

    - ``weight_scale_bits``: significant bits of each channel's weight scale (8: bfloat16's;
      the weights move by at most 2**-9 of their channel's largest).
    - ``activation_scale_bits``: of each observed activation scale, rounded up so the range
      still fits (1: a power of two, and then a bias scale has the weight scale's bits).
    - ``bias_margin_bits``: a bias is rounded to a power-of-two multiple of its int32 step,
      at most ``2**-bias_margin_bits`` of its layer's output step (an error of at most half
      that, in output steps).
    - ``uniform_lowbit_scales``: one scale for all the channels of a low-bit layer where its
      channels' own can move into the layer that reads them (see ``_move_channel_scales``)."""

    weight_scale_bits: int = 8
    activation_scale_bits: int = 1
    bias_margin_bits: int = 4
    uniform_lowbit_scales: bool = True


def short_scale(value, bits: int, up: bool = False) -> np.ndarray:
    """``value`` (positive) rounded to ``bits`` significant bits, to nearest or up: a float32
    whose low mantissa bits are zero."""
    mantissa, exponent = np.frexp(np.asarray(value, np.float64))
    rounded = (np.ceil if up else np.round)(np.ldexp(mantissa, bits))
    return np.ldexp(rounded, exponent - bits).astype(np.float32)


# ops whose output holds values of their input (TFLite gives it the input's int8 parameters)
_SAME_VALUES = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Pad"})
# ops an activation fuses into (their own output is never an int8 tensor)
_FUSABLE = frozenset({"Conv", "Gemm", "MatMul", "Add"})
_ACTIVATION_OPS = frozenset({"Relu", "Clip"})


@torch.no_grad()
def on_int8_grids(model: nn.Module, grids: CompactGrids | None = None) -> nn.Module:
    """``deployable(model)`` with BatchNorm folded into its layers and every Conv2d/Linear weight
    on its per-channel symmetric int8 grid (``max |w_c| / 127``, the converter's): the float
    model onnxruntime runs then holds the weights the int8 model holds (binary and ternary
    levels are on the grid already; TTQ's smaller level moves to the nearest int8 code). With
    ``grids``, each channel's scale is first rounded to its short mantissa: ``127 * scale`` is
    exact in float32, so the converter's ``max |w_c| / 127`` gives that scale back."""
    from edgekit.converters.quant.quantizer import symmetric_weights
    from edgekit.converters.torch import fold_batchnorm

    folded = fold_batchnorm(deployable(model))
    if grids is not None and grids.uniform_lowbit_scales:
        _move_channel_scales(folded)
    for m in folded.modules():
        if _forward_for(m) is not None:
            q, params = symmetric_weights(m.weight.detach().numpy(), 0)
            scale = params.scale if grids is None else short_scale(params.scale, grids.weight_scale_bits)
            scale = scale.reshape(-1, *([1] * (q.ndim - 1)))
            m.weight.copy_(torch.from_numpy((q.astype(np.float32) * scale).astype(np.float32)))
    return folded


# what a positive per-channel factor passes through unchanged: f(r * x) = r * f(x) for r > 0
_HOMOGENEOUS_MODULES = (nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)
_HOMOGENEOUS_FUNCTIONS = frozenset(
    {torch.relu, torch.flatten, nn.functional.relu, nn.functional.adaptive_avg_pool2d, nn.functional.avg_pool2d}
)


def _channel_levels(layer: nn.Module) -> int:
    return max(len(torch.unique(c)) for c in layer.weight.detach().flatten(1))


def _is_depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups == layer.in_channels == layer.out_channels


def _takes_channel_factors(reader: nn.Module, channels: int) -> bool:
    """Whether ``reader`` can scale each of its ``channels`` input channels and stay what it
    is: a depthwise layer, or a plain int8 one (a low-bit one would lose its levels)."""
    if _is_depthwise(reader):
        return reader.in_channels == channels
    if _channel_levels(reader) <= 3 or (isinstance(reader, nn.Conv2d) and reader.groups != 1):
        return False
    return reader.weight.shape[1] % channels == 0


def _next_layer(node, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The Conv2d/Linear that alone reads ``node``'s output through homogeneous ops, if any."""
    while len(node.users) == 1:
        (node,) = node.users
        target = modules.get(node.target) if node.op == "call_module" else None
        if target is not None and _forward_for(target) is not None:
            return target
        homogeneous = isinstance(target, _HOMOGENEOUS_MODULES) or (
            node.op in ("call_function", "call_method") and node.target in _HOMOGENEOUS_FUNCTIONS | {"flatten"}
        )
        if not homogeneous:
            return None
    return None


@torch.no_grad()
def _move_channel_scales(folded: nn.Module) -> None:
    """Give every channel of a low-bit layer the same levels, the layer's power of two nearest
    their geometric mean, by moving each channel's factor into the layer that reads it through
    ReLU, pooling or flattening (which a positive factor passes through) where that layer takes
    a factor per input channel and stays what it was: a plain int8 layer or a depthwise one.
    The folded BatchNorm scales are what made the channels' levels (and their float32 scales in
    the .tflite) all different; the model computes the same. No-op for what torch.fx cannot
    trace."""
    try:
        traced = torch.fx.symbolic_trace(folded)
    except Exception:  # noqa: BLE001 - data-dependent control flow: leave the scales where they are
        return
    modules = dict(folded.named_modules())
    for node in traced.graph.nodes:
        layer = modules.get(node.target) if node.op == "call_module" else None
        if layer is None or _forward_for(layer) is None or _channel_levels(layer) > 3:
            continue
        reader = _next_layer(node, modules)
        if reader is None or not _takes_channel_factors(reader, layer.weight.shape[0]):
            continue
        levels = layer.weight.abs().flatten(1).amax(1)
        if not bool((levels > 0).all()):
            continue
        factor = levels / 2.0 ** torch.round(torch.log2(levels).mean())
        layer.weight.div_(_per_channel(factor, layer.weight))
        if layer.bias is not None:
            layer.bias.div_(factor)
        if _is_depthwise(reader):
            reader.weight.mul_(_per_channel(factor, reader.weight))
        else:  # input channel c: column c of a Conv2d, its flattened positions in a Linear
            spread = factor.repeat_interleave(reader.weight.shape[1] // len(factor))
            reader.weight.mul_(spread.reshape(1, -1, *([1] * (reader.weight.dim() - 2))))


def _int8_tensors(graph) -> list[str]:
    """The activations the int8 TFLite model holds as int8 tensors of their own: the inputs and
    every node output except constants, existing QDQ, value-preserving ops (which share their
    input's parameters) and layer outputs an activation fuses into."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for node in graph.node:
        if node.op_type in ("Constant", "QuantizeLinear", "DequantizeLinear") or node.op_type in _SAME_VALUES:
            continue
        users = consumers.get(node.output[0], [])
        if users and all(u.op_type == "QuantizeLinear" for u in users):
            continue  # PACT's grid already
        if node.op_type in _FUSABLE and users and all(u.op_type in _ACTIVATION_OPS for u in users):
            continue
        found.append(node.output[0])
    return found


def _observed_ranges(model, names: list[str], samples: np.ndarray) -> dict[str, tuple[float, float]]:
    from edgekit.converters.harness import OnnxRunner, exposing

    runner = OnnxRunner(exposing(model, names), optimization="none")
    feed = runner.input_names[0]
    lo = {n: 0.0 for n in names}
    hi = {n: 0.0 for n in names}
    for sample in samples:
        values = runner({feed: sample[None]})
        for n in names:
            lo[n], hi[n] = min(lo[n], float(values[n].min())), max(hi[n], float(values[n].max()))
    return {n: (lo[n], hi[n]) for n in names}


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _add_qdq(graph, name: str, scale: float, zero_point: int) -> str:
    """QuantizeLinear/DequantizeLinear on ``name``; every reader then reads the dequantized
    values. Returns the dequantized tensor's name."""
    import onnx

    helper = onnx.helper
    graph.initializer.extend(
        [
            helper.make_tensor(f"{name}_scale", onnx.TensorProto.FLOAT, [], [scale]),
            helper.make_tensor(f"{name}_zero_point", onnx.TensorProto.INT8, [], [zero_point]),
        ]
    )
    is_output = name in {o.name for o in graph.output}
    source, dequantized = (f"{name}_float", name) if is_output else (name, f"{name}_dequantized")
    for node in graph.node:
        node.output[:] = [source if o == name else o for o in node.output]
        if not is_output:
            node.input[:] = [dequantized if i == name else i for i in node.input]
    qdq = [
        helper.make_node("QuantizeLinear", [source, f"{name}_scale", f"{name}_zero_point"], [f"{name}_int8"]),
        helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"], [dequantized]),
    ]
    producers = [k for k, node in enumerate(graph.node) if source in node.output]
    at = producers[0] + 1 if producers else 0
    for k, node in enumerate(qdq):
        graph.node.insert(at + k, node)
    return dequantized


def _grid_scales(graph) -> dict[str, float]:
    """Tensor -> the scale of the int8 grid its values are on (dequantized tensors and what
    value-preserving ops make of them), in graph order."""
    constants, scales = _constants(graph), {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            scales[node.output[0]] = float(constants[node.input[1]])
        elif node.op_type in _SAME_VALUES and node.input[0] in scales:
            scales[node.output[0]] = scales[node.input[0]]
    return scales


def _output_grid_scale(graph, node) -> float | None:
    """The scale of the int8 grid a layer's output lands on (through a fused activation)."""
    name = node.output[0]
    while True:
        users = [n for n in graph.node if name in n.input]
        quantized = [u for u in users if u.op_type == "QuantizeLinear"]
        if quantized:
            return float(_constants(graph)[quantized[0].input[1]])
        activations = [u for u in users if u.op_type in _ACTIVATION_OPS]
        if len(users) != 1 or not activations:
            return None
        name = activations[0].output[0]


def _biases_on_int8_grids(graph, grids: CompactGrids | None = None) -> None:
    """Each Conv/Gemm bias on the int32 grid ``input scale * weight scale`` of its channel: the
    value the int8 model adds is then the value onnxruntime adds. With ``grids``, on every
    ``2**k``-th point of it (see ``CompactGrids.bias_margin_bits``)."""
    from onnx import numpy_helper

    from edgekit.converters.quant.quantizer import symmetric_weights

    scales = _grid_scales(graph)
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        transposed = node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute)
        _, w_params = symmetric_weights(weight, 1 if transposed else 0)
        bias_scale = (scales[node.input[0]] * w_params.scale.astype(np.float64)).astype(np.float32).astype(np.float64)
        output_scale = _output_grid_scale(graph, node) if grids is not None else None
        if output_scale is not None:
            steps = np.floor(np.log2(output_scale / bias_scale)) - grids.bias_margin_bits
            bias_scale = bias_scale * 2.0 ** np.maximum(steps, 0)
        bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float64)
        snapped = (np.round(bias / bias_scale) * bias_scale).astype(np.float32)
        initializers[node.input[2]].CopyFrom(numpy_helper.from_array(snapped, node.input[2]))


def _activation_grid(lo: float, hi: float, grids: CompactGrids | None) -> tuple[float, int]:
    """The converter's int8 parameters for ``[lo, hi]``; with ``grids``, the scale rounded up to
    its short mantissa and the zero point that keeps ``lo`` on the grid."""
    from edgekit.converters.quant.quantizer import activation_params

    params = activation_params(lo, hi)
    scale, zero_point = float(params.scale[0]), int(params.zero_point[0])
    if grids is None:
        return scale, zero_point
    short = float(short_scale(scale, grids.activation_scale_bits, up=True))
    return short, int(np.clip(round(-128 - min(lo, 0.0) / short), -128, 127))


def int8_reference(source: str, path: str, calibration: np.ndarray, grids: CompactGrids | None = None) -> None:
    """Write ``source`` (an ONNX model on int8 grids, see ``on_int8_grids``) as the QDQ model of
    its int8 computation: QuantizeLinear/DequantizeLinear on the input and on every activation
    the int8 model holds, with the converter's parameters for the range observed on
    ``calibration`` (PACT's ``[0, alpha]`` grids kept), and biases on their int32 grids (both
    made short by ``grids``). ``convert`` takes these parameters as they are; onnxruntime runs
    the same arithmetic in float, so the two differ only where float rounding tips a value
    across a rounding boundary."""
    import onnx

    model = onnx.load(source)
    names = _int8_tensors(model.graph)
    for name, (lo, hi) in _observed_ranges(model, names, np.asarray(calibration, np.float32)).items():
        _add_qdq(model.graph, name, *_activation_grid(lo, hi, grids))
    _biases_on_int8_grids(model.graph, grids)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def train_lowbit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float = 3e-3,
    seed: int = 0,
    batch: int = 64,
    alpha_decay: float = 0.0,
    alpha_lr: float | None = None,
) -> nn.Module:
    """Adam training; ``alpha_decay`` is PACT's L2 regularization of ``alpha`` (the paper's
    lambda_alpha), which pulls the clip down where no gradient pushes it up. Adam moves a
    parameter by about ``lr`` per step, so ``alpha`` (in activation units, not weight units)
    gets ``alpha_lr`` (default ``lr``) to travel in a short fine-tuning."""
    torch.manual_seed(seed)
    alphas = [m.alpha for m in model.modules() if isinstance(m, PACT) and m.alpha.requires_grad]
    others = [p for p in model.parameters() if all(p is not a for a in alphas)]
    groups = [{"params": others}] + (
        [{"params": alphas, "weight_decay": alpha_decay, "lr": alpha_lr or lr}] if alphas else []
    )
    return train(model, x, y, epochs, seed=seed, batch=batch, optimizer=torch.optim.Adam(groups, lr=lr))


__all__ = [
    "ACTIVATIONS",
    "CompactGrids",
    "FORWARD_WITH_WEIGHT",
    "PACT",
    "WEIGHT_QUANTIZERS",
    "BinaryWeights",
    "LowBitLayer",
    "TernaryWeights",
    "TrainedTernaryWeights",
    "deployable",
    "export_lowbit",
    "lowbit_levels",
    "lowbit_weights",
    "pact_activations",
    "pact_alphas",
    "short_scale",
    "train_lowbit",
    "weighted_layers",
]
