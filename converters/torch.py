"""Training-side recovery with PyTorch (the ``torch`` extra; the only converter module that
imports torch).

- ``MagnitudePruner``: gradual magnitude pruning with the polynomial-decay sparsity schedule
  of Zhu & Gupta (2017); masks re-applied after every optimizer step.
- ``channel_masks``: structured masks (whole output channels by L1) that edgekit's ONNX channel
  pruner then removes for real (zeroed channels rank lowest).
- ``train``: fine-tuning with fixed masks, optionally distilling from a dense teacher.
- ``prepare_qat`` / ``export_qdq``: quantization-aware training with straight-through fake
  quantization (per-channel int8 weights, per-tensor int8 activations with EMA ranges), exported
  as ONNX QuantizeLinear/DequantizeLinear, which ``edgekit convert --quantize int8`` imports with
  the trained scales instead of recalibrating.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, m.weight) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def polynomial_sparsity(step: int, begin: int, end: int, final: float, initial: float = 0.0, power: int = 3) -> float:
    """s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power, clamped to [t0, t1]."""
    if step <= begin:
        return initial
    if step >= end:
        return final
    progress = (step - begin) / (end - begin)
    return final + (initial - final) * (1 - progress) ** power


class MagnitudePruner:
    """Magnitude masks over every Conv2d/Linear weight, tightened on a schedule: one threshold
    for all of them (``scope="global"``) or the same sparsity in each layer (``"layer"``; a
    global threshold can empty a whole layer whose weights are small)."""

    def __init__(
        self,
        model: nn.Module,
        final_sparsity: float,
        begin: int = 0,
        end: int = 1000,
        frequency: int = 10,
        power: int = 3,
        scope: str = "global",
    ) -> None:
        if not 0 < final_sparsity < 1:
            raise ValueError("final_sparsity must lie strictly between 0 and 1")
        if scope not in ("global", "layer"):
            raise ValueError("scope must be global or layer")
        self.model, self.final, self.begin, self.end = model, final_sparsity, begin, end
        self.frequency, self.power, self.scope = frequency, power, scope
        self.masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in prunable_weights(model)}
        self.step_count = 0

    def sparsity(self) -> float:
        return polynomial_sparsity(self.step_count, self.begin, self.end, self.final, power=self.power)

    def set_sparsity(self, sparsity: float) -> None:
        weights = dict(prunable_weights(self.model))
        groups = [weights] if self.scope == "global" else [{n: w} for n, w in weights.items()]
        for group in groups:
            magnitudes = torch.cat([w.detach().abs().flatten() for w in group.values()])
            k = int(sparsity * magnitudes.numel())
            threshold = magnitudes.kthvalue(k).values if k > 0 else magnitudes.min() - 1
            for name, w in group.items():
                self.masks[name] = w.detach().abs() > threshold
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, w in prunable_weights(self.model):
            w.mul_(self.masks[name])

    def step(self) -> None:
        """Call after optimizer.step()."""
        self.step_count += 1
        if self.step_count % self.frequency == 0 and self.step_count <= self.end:
            self.set_sparsity(self.sparsity())
        else:
            self.apply()


def channel_masks(model: nn.Module, ratio: float) -> dict[str, torch.Tensor]:
    """Output-channel masks (lowest L1 first) for every Conv2d whose output feeds only its own
    BatchNorm/activation chain; the caller decides which layers to pass."""
    masks = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.groups == 1:
            scores = m.weight.detach().abs().flatten(1).sum(1)
            keep = max(1, int(round(m.out_channels * (1 - ratio))))
            mask = torch.zeros(m.out_channels, dtype=torch.bool)
            mask[scores.argsort(descending=True)[:keep]] = True
            masks[name] = mask
    return masks


def random_shift(max_pixels: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """Augmentation for small images: each image moved by up to ``max_pixels`` in x and y,
    the border filled with zeros."""

    def shift(images: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(images, [max_pixels] * 4)
        out = torch.empty_like(images)
        h, w = images.shape[-2:]
        offsets = torch.randint(0, 2 * max_pixels + 1, (len(images), 2))
        for i, (dy, dx) in enumerate(offsets.tolist()):
            out[i] = padded[i, :, dy : dy + h, dx : dx + w]
        return out

    return shift


@torch.no_grad()
def apply_channel_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    names = list(modules)
    for name, mask in masks.items():
        conv = modules[name]
        conv.weight[~mask] = 0
        if conv.bias is not None:
            conv.bias[~mask] = 0
        following = names[names.index(name) + 1] if names.index(name) + 1 < len(names) else None
        bn = modules.get(following)
        if isinstance(bn, nn.BatchNorm2d):  # zero channel stays zero after BN (bias 0, scale 0)
            bn.weight[~mask] = 0
            bn.bias[~mask] = 0


def distillation_loss(student_logits, teacher_logits, labels, alpha: float = 0.5, temperature: float = 2.0):
    soft = (
        nn.functional.kl_div(
            nn.functional.log_softmax(student_logits / temperature, 1),
            nn.functional.softmax(teacher_logits / temperature, 1),
            reduction="batchmean",
        )
        * temperature**2
    )
    return alpha * soft + (1 - alpha) * nn.functional.cross_entropy(student_logits, labels)


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float = 3e-3,
    seed: int = 0,
    pruner: MagnitudePruner | None = None,
    channel_mask: dict[str, torch.Tensor] | None = None,
    teacher: nn.Module | None = None,
    batch: int = 64,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    optimizer: torch.optim.Optimizer | None = None,
) -> nn.Module:
    """Adam fine-tuning. ``augment`` transforms each batch (the teacher sees the same images);
    ``alpha`` weighs the teacher's soft targets at ``temperature`` against the labels.
    ``optimizer``: one of the caller's (parameter groups of their own) instead of Adam at ``lr``."""
    torch.manual_seed(seed)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    if teacher is not None:
        teacher.eval()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = order[i : i + batch]
            images = xt[idx] if augment is None else augment(xt[idx])
            opt.zero_grad()
            logits = model(images)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(images)
                loss = distillation_loss(logits, target, yt[idx], alpha, temperature)
            else:
                loss = nn.functional.cross_entropy(logits, yt[idx])
            loss.backward()
            opt.step()
            if pruner is not None:
                pruner.step()
            if channel_mask is not None:
                apply_channel_masks(model, channel_mask)
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


# --- quantization-aware training ---------------------------------------------------------------


class FakeQuant(nn.Module):
    """Per-tensor asymmetric int8 fake quantization with an EMA range; gradients pass straight
    through (torch's fake_quantize has the STE built in)."""

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
            if not bool(self.seen):
                self.lo.copy_(lo)
                self.hi.copy_(hi)
                self.seen.fill_(True)
            else:
                self.lo.mul_(1 - self.momentum).add_(self.momentum * lo)
                self.hi.mul_(1 - self.momentum).add_(self.momentum * hi)
        scale = float(torch.clamp((self.hi - self.lo) / 255.0, min=1e-8))
        zero_point = int(round(float(-128 - self.lo / scale)))
        zero_point = max(-128, min(127, zero_point))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


class QATWrapper(nn.Module):
    """A Conv2d/Linear with per-channel symmetric int8 fake-quantized weights. The scales are
    buffers refreshed while training, constants at export."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("scale", self._scale())
        self.register_buffer("zero_point", torch.zeros(layer.weight.shape[0], dtype=torch.int32))

    def _scale(self) -> torch.Tensor:
        return (self.layer.weight.detach().abs().flatten(1).amax(1) / 127).clamp(min=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.scale.copy_(self._scale())
        # (-128, 127) is what ONNX QDQ allows; scale = max|w| / 127 keeps the values in [-127, 127]
        wq = torch.fake_quantize_per_channel_affine(self.layer.weight, self.scale, self.zero_point, 0, -128, 127)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, wq, self.layer.bias)
        return nn.functional.linear(x, wq, self.layer.bias)


def prepare_qat(model: nn.Module, activation_types: Iterable[type] = (nn.ReLU, nn.ReLU6)) -> nn.Module:
    """A copy of ``model`` whose weights and activations train under int8 fake quantization.
    BatchNorm should be folded (or frozen) first for the scales to match the deployed model."""
    qat = copy.deepcopy(model)
    activation_types = tuple(activation_types)

    def convert(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, PRUNABLE):
                setattr(module, name, nn.Sequential(QATWrapper(child), FakeQuant()))
            elif isinstance(child, activation_types):
                setattr(module, name, nn.Sequential(child, FakeQuant()))
            else:
                convert(child)

    convert(qat)
    return nn.Sequential(FakeQuant(), qat)


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: str, input_name: str = "input", output_name: str = "logits"
) -> None:
    """``model`` in eval mode to ONNX opset 17 (the TorchScript exporter), one input, one output."""
    model.eval()
    torch.onnx.export(
        model, example, str(path), opset_version=17, dynamo=False, input_names=[input_name], output_names=[output_name]
    )


def export_qdq(
    model: nn.Module, example: torch.Tensor, path: str, input_name: str = "image", output_name: str = "logits"
) -> None:
    """A QAT model (its FakeQuant modules export as QuantizeLinear/DequantizeLinear pairs)."""
    export_onnx(model, example, path, input_name, output_name)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Conv2d followed by BatchNorm2d inside nn.Sequential blocks -> one Conv2d (eval copy)."""
    model = copy.deepcopy(model).eval()

    def fold(module: nn.Module) -> None:
        for child in module.children():
            fold(child)
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i in range(len(items) - 1):
                conv, bn = items[i], items[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    fused = nn.Conv2d(
                        conv.in_channels,
                        conv.out_channels,
                        conv.kernel_size,
                        conv.stride,
                        conv.padding,
                        conv.dilation,
                        conv.groups,
                        bias=True,
                    )
                    with torch.no_grad():
                        fused.weight.copy_(conv.weight * scale[:, None, None, None])
                        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                    module[i] = fused
                    module[i + 1] = nn.Identity()

    fold(model)
    return model
