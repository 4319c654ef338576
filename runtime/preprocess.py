"""Image preprocessing with Pillow, driven by a spec (the model package's manifest keeps one).

Spec keys (all optional): ``resize`` [H, W]; ``mode`` "stretch" | "center_crop" |
"letterbox"; ``scale`` (pixel multiplier, default 1/255); ``mean`` and ``std`` per channel;
``layout`` "nhwc" | "nchw"; ``color`` "RGB" | "L"; ``fill`` (letterbox colour, default 114)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import InputError


@dataclass(frozen=True)
class PreprocessSpec:
    resize: tuple[int, int] | None = None
    mode: str = "stretch"
    scale: float = 1 / 255
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)
    layout: str = "nhwc"
    color: str = "RGB"
    fill: int = 114

    @classmethod
    def from_dict(cls, spec: dict) -> PreprocessSpec:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown preprocessing keys {sorted(unknown)}")
        values = dict(spec)
        for key in ("resize", "mean", "std"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        result = cls(**values)
        if result.mode not in ("stretch", "center_crop", "letterbox") or result.layout not in ("nhwc", "nchw"):
            raise InputError("preprocessing mode must be stretch/center_crop/letterbox and layout nhwc/nchw")
        return result


def fit_problems(spec: PreprocessSpec, shape: list[int] | tuple[int, ...]) -> list[str]:
    """Why ``spec`` cannot feed an input of ``shape`` (empty when it can): a layout that puts the
    channels elsewhere, a colour mode or mean/std of the wrong channel count, a resize of 0 or to
    another size. The package refuses such a spec, and so does the device's health check."""
    if len(shape) != 4:
        return [f"image preprocessing feeds 4-D inputs; this input is {list(shape)}"]
    h, w, c = (shape[1], shape[2], shape[3]) if spec.layout == "nhwc" else (shape[2], shape[3], shape[1])
    problems = []
    channels = 1 if spec.color == "L" else len(spec.color)
    if c != channels:
        problems.append(f"color {spec.color} makes {channels} channel(s), the input takes {c} ({spec.layout})")
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if values and len(values) not in (1, c):
            problems.append(f"{key} has {len(values)} values for {c} channel(s)")
    if spec.std and any(v == 0 for v in spec.std):
        problems.append("std holds a 0")
    if spec.resize is not None and tuple(spec.resize) != (h, w):
        problems.append(f"resize {list(spec.resize)} does not give the input's {h}x{w}")
    return problems


def _fit(image, spec: PreprocessSpec):
    from PIL import Image

    h, w = spec.resize
    if spec.mode == "stretch":
        return image.resize((w, h), Image.BILINEAR)
    if spec.mode == "center_crop":
        ratio = max(w / image.width, h / image.height)
        scaled = image.resize((max(w, round(image.width * ratio)), max(h, round(image.height * ratio))), Image.BILINEAR)
        left, top = (scaled.width - w) // 2, (scaled.height - h) // 2
        return scaled.crop((left, top, left + w, top + h))
    ratio = min(w / image.width, h / image.height)
    scaled = image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))), Image.BILINEAR)
    canvas = Image.new(spec.color, (w, h), (spec.fill,) * len(spec.color) if spec.color != "L" else spec.fill)
    canvas.paste(scaled, ((w - scaled.width) // 2, (h - scaled.height) // 2))
    return canvas


def preprocess(image, spec: PreprocessSpec | dict) -> np.ndarray:
    """An image file path or PIL image -> a float32 batch of one, ready for Session.run
    (which quantizes it for int8 models)."""
    from PIL import Image, UnidentifiedImageError

    spec = PreprocessSpec.from_dict(spec) if isinstance(spec, dict) else spec
    if isinstance(image, str | os.PathLike):
        try:
            with Image.open(image) as opened:
                image = opened.convert(spec.color)
        except (OSError, UnidentifiedImageError):
            raise InputError(f"{image} is not an image Pillow can read") from None
    else:
        image = image.convert(spec.color)
    if spec.resize:
        image = _fit(image, spec)
    x = np.asarray(image, np.float32) * spec.scale
    if x.ndim == 2:
        x = x[..., None]
    if spec.mean:
        x = x - np.asarray(spec.mean, np.float32)
    if spec.std:
        x = x / np.asarray(spec.std, np.float32)
    if spec.layout == "nchw":
        x = x.transpose(2, 0, 1)
    return x[None].astype(np.float32)
