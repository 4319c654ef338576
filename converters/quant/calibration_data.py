"""Calibration samples from a .npy/.npz file or a folder of images (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import CalibrationError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise CalibrationError(f"--{what} '{text}' is not a comma-separated list of numbers") from None


def load_calibration(
    path: Path,
    *,
    resize: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    scale: float = 1 / 255,
    layout: str = "nchw",
) -> np.ndarray | dict[str, np.ndarray]:
    """Samples in the model's input layout (N, C, H, W for images by default)."""
    if not path.exists():
        raise CalibrationError(f"calibration data {path} does not exist")
    if path.is_dir():
        return _images(path, resize, _floats(mean, "mean"), _floats(std, "std"), scale, layout)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        raise CalibrationError(f"calibration data {path} is not a .npy/.npz array file or a folder of images") from None
    if isinstance(loaded, np.ndarray):
        return check_array(loaded, str(path))
    return {k: loaded[k] for k in loaded.files}  # the arrays the model's inputs take are checked then


def check_array(array: np.ndarray, where: str) -> np.ndarray:
    if array.size == 0:
        raise CalibrationError(f"calibration data {where} is empty")
    if not np.issubdtype(array.dtype, np.floating):
        raise CalibrationError(
            f"calibration data {where} has dtype {array.dtype}; pass float samples already preprocessed "
            "the way the model expects"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise CalibrationError(f"calibration data {where} contains {bad} NaN/Inf values; clean the samples first")
    return array.astype(np.float32)


def _images(folder: Path, resize, mean, std, scale: float, layout: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CalibrationError(f"calibration folder {folder} is empty; put sample images in it")
    size = None
    if resize:
        try:
            h, w = (int(v) for v in resize.split(","))
            size = (w, h)
        except ValueError:
            raise CalibrationError(f"--resize '{resize}' is not H,W") from None
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if size:
                    im = im.resize(size, Image.BILINEAR)
                arrays.append(np.asarray(im, np.float32))
        except (UnidentifiedImageError, OSError):
            raise CalibrationError(
                f"{f} in the calibration folder is not an image Pillow can read; remove it"
            ) from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise CalibrationError(f"calibration images have different sizes {sorted(shapes)}; pass --resize H,W")
    x = np.stack(arrays) * scale
    if mean:
        x = x - np.asarray(mean, np.float32)
    if std:
        x = x / np.asarray(std, np.float32)
    return x.transpose(0, 3, 1, 2) if layout == "nchw" else x
