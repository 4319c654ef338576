"""Sample arrays for a model: calibration, validation, verification and pruning data, from a
.npy/.npz file (read by :func:`load_array_file`, the one reader of array files) or a folder of
images (Pillow)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgekit.errors import CalibrationError, InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
NPY_MAGIC = b"\x93NUMPY"
NPZ_MAGIC = b"PK"  # a .npz is a zip archive of .npy files
ARRAY_FILE_HINT = "give a .npy or .npz file written by numpy.save or numpy.savez"
# what numpy raises reading a damaged .npy/.npz besides ValueError: a truncated zip, a corrupt
# deflate stream, a short read
_DAMAGED = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


def load_array_file(
    path: str | Path, what: str, error: type[InputError] = InputError
) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a .npy file, or the named arrays of a .npz file, read whole. Every way this
    can fail (no such file, a folder, another format, a damaged or truncated file, pickled Python
    objects, which are never loaded: they can run code) is one ``error`` naming ``what`` and the file."""
    path = Path(path)
    said = f"{what} {path}"
    if not path.exists():
        raise error(f"{said} does not exist; {ARRAY_FILE_HINT}")
    if path.is_dir():
        raise error(f"{said} is a folder; {ARRAY_FILE_HINT}")
    try:
        with path.open("rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as exc:
        raise error(f"{said} cannot be read ({exc.strerror})") from None
    if not magic.startswith((NPY_MAGIC, NPZ_MAGIC)):
        raise error(f"{said} is not a .npy/.npz array file; {ARRAY_FILE_HINT}")
    damaged = f"{said} is a damaged or truncated {'.npy' if magic == NPY_MAGIC else '.npz'} file; {ARRAY_FILE_HINT}"
    try:
        return _read_arrays(path, said, error)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy's word for an object array, said without its unsafe advice
            raise error(
                f"{said} holds Python objects, which edgekit does not load (unpickling can run code); "
                "save plain numeric arrays with numpy.save or numpy.savez"
            ) from None
        raise error(damaged) from None
    except _DAMAGED:
        raise error(damaged) from None


def _read_arrays(path: Path, said: str, error: type[InputError]) -> np.ndarray | dict[str, np.ndarray]:
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:  # every member is read now: a damaged one fails here, not in a later step
        arrays = {name: loaded[name] for name in loaded.files}
    others = sorted(name for name, value in arrays.items() if not isinstance(value, np.ndarray))
    if others:  # numpy hands back the bytes of a member that is not a .npy
        raise error(f"{said} is a zip archive holding {others}, not only .npy arrays; {ARRAY_FILE_HINT}")
    return arrays


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
    if path.is_dir():
        return _images(path, resize, _floats(mean, "mean"), _floats(std, "std"), scale, layout)
    # checked against the input each array is for (float or integer) when the model is read
    return load_array_file(path, "calibration data", CalibrationError)


def check_array(
    array: np.ndarray,
    where: str,
    *,
    what: str = "calibration data",
    error: type[InputError] = CalibrationError,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """``array`` as samples of an input of ``dtype``: refused when empty; for a float input, when
    not floating-point (raw pixels, most likely) or not finite; for an integer input (token ids,
    bytes), when not whole numbers."""
    if array.size == 0:
        raise error(f"{what} {where} is empty")
    if np.issubdtype(np.dtype(dtype), np.floating):
        if not np.issubdtype(array.dtype, np.floating):
            raise error(f"{what} {where} has dtype {array.dtype}; pass float samples preprocessed as the model expects")
        refuse_non_finite(array, f"{what} {where}", error)
        return array.astype(np.float32)
    whole_floats = array.dtype.kind == "f" and np.isfinite(array).all() and np.array_equal(array, np.trunc(array))
    if array.dtype.kind not in "iub" and not whole_floats:
        raise error(f"{what} {where} has dtype {array.dtype}; the input takes {np.dtype(dtype)}: pass whole numbers")
    return array.astype(dtype)


def refuse_non_finite(array: np.ndarray, what: str, error: type[InputError] = InputError) -> None:
    """NaN or Inf in samples makes every range, mean or comparison made from them meaningless."""
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise error(f"{what} contains {bad} NaN/Inf values; clean the samples first")


def split_samples(
    array: np.ndarray, want: tuple[int, ...], what: str, error: type[InputError] = CalibrationError
) -> list[np.ndarray]:
    """``array`` as the model's invokes, each of shape ``want``: [N, *want[1:]] with a batch of 1
    is N invokes, ``want`` itself one, [N, *want] N; any other shape is refused, naming ``want``."""
    if want and want[0] == 1 and array.shape[1:] == want[1:]:
        return [array[i : i + 1] for i in range(len(array))]
    if array.shape == want:
        return [array]
    if array.shape[1:] == want:
        return list(array)
    raise error(
        f"{what} have shape {list(array.shape)}; the model takes {list(want)} "
        f"(pass an array of shape [N, {', '.join(map(str, want[1:]))}])"
    )


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
