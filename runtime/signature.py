"""A model's inputs and outputs, described once: names, shapes, dtypes, layouts, quantization.

``edgekit convert`` records each 4-D input's and output's layout in the .tflite file's metadata;
:meth:`Signature.from_model` reads it with the tensors, the package manifest stores
:meth:`Signature.to_dict`, a :class:`~edgekit.runtime.Session` exposes ``.signature`` and the
agent compares them. Nothing else reads a model's I/O description.

Device side: numpy and the flatbuffer schema package (``tflite``); ``onnx`` only for .onnx files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from edgekit.errors import InvalidModelError

# The fallback rule, the one place a layout is assumed: a 4-D tensor of a file that records no
# layout (another converter's .tflite, an ONNX model, a .tflite from edgekit before --io-layout)
# has its format's own layout: TFLite's convolutions take NHWC, ONNX's take NCHW. A tensor older
# edgekit transposed (metadata ``io_layout``) went from NCHW to NHWC. Shapes are never read for it.
FORMAT_LAYOUTS = {".tflite": "NHWC", ".onnx": "NCHW"}
LAYOUT_NAMES = ("NHWC", "NCHW")
SOURCE_LAYOUT = "NCHW"  # what convert transposes: the ONNX model's layout of a moved tensor
# where convert records them: metadata entry -> {LAYOUTS: name -> layout, MOVED: name -> transpose}
METADATA, LAYOUTS, MOVED = "edgekit", "io_layouts", "io_layout"


@dataclass(frozen=True)
class TensorSignature:
    """One input or output. ``layout`` ("NHWC"/"NCHW") is known for 4-D tensors only;
    ``source_layout`` is the ONNX model's layout when convert transposed the tensor (NCHW for an
    NHWC one); ``quant`` is the (scale, zero point) of an int8/uint8 tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    layout: str | None = None
    quant: tuple[float, int] | None = None
    source_layout: str | None = None

    @property
    def source_perm(self) -> tuple[int, ...] | None:
        """The transpose taking an array in the source model's layout to this tensor's, if any."""
        if not self.source_layout or not self.layout or self.source_layout == self.layout:
            return None
        return tuple(self.source_layout.index(axis) for axis in self.layout)

    def describe(self) -> str:
        """One line: name, layout, shape, dtype and quantization, as the CLI prints it."""
        text = " ".join(filter(None, [f"{self.name}:", self.layout, "[" + ",".join(map(str, self.shape)) + "]"]))
        text += f" {self.dtype}"
        if self.quant is not None:
            text += f" (scale {self.quant[0]:.6g}, zero point {self.quant[1]})"
        return text + (f" ({self.source_layout} in the source model)" if self.source_perm else "")

    def to_dict(self) -> dict:
        entry = {"name": self.name, "shape": list(self.shape), "dtype": str(self.dtype), "layout": self.layout}
        if self.source_layout:
            entry["source_layout"] = self.source_layout
        if self.quant is not None:
            entry["scale"], entry["zero_point"] = self.quant
        return entry

    @classmethod
    def from_dict(cls, entry: Mapping) -> TensorSignature:
        """An entry :meth:`to_dict` wrote, or one a manifest of an older edgekit holds (no layout)."""
        if entry.get("layout") not in (None, *LAYOUT_NAMES) or entry.get("source_layout") not in (None, SOURCE_LAYOUT):
            raise ValueError(f"tensor entry {entry.get('name')!r} has an unknown layout")
        try:
            quant = (float(entry["scale"]), int(entry["zero_point"])) if "scale" in entry else None
            return cls(
                str(entry["name"]),
                tuple(int(d) for d in entry["shape"]),
                _dtype(str(entry["dtype"])),
                entry.get("layout"),
                quant,
                entry.get("source_layout"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a tensor entry {dict(entry)!r} lacks or mangles {exc}") from None

    @classmethod
    def of(cls, tensor: TensorSignature) -> TensorSignature:
        """The signature part of a subclass (a backend's TensorSpec)."""
        return cls(*(getattr(tensor, f.name) for f in fields(cls)))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]

    @classmethod
    def of(cls, inputs: Iterable[TensorSignature], outputs: Iterable[TensorSignature]) -> Signature:
        return cls(tuple(map(TensorSignature.of, inputs)), tuple(map(TensorSignature.of, outputs)))

    @classmethod
    def from_model(cls, name: str, data: bytes) -> Signature:
        """The signature of a .tflite (serving signature's names, the layouts its metadata
        records) or .onnx model file's bytes; ``name`` is its file name or suffix. Raises
        InvalidModelError for an unreadable model, ImportError without the reader package."""
        suffix = "." + name.rpartition(".")[2].lower()
        if suffix == ".tflite":
            return _from_tflite(data)
        if suffix == ".onnx":
            return _from_onnx(data)
        raise InvalidModelError(f"{name}: expected a .tflite or .onnx model")

    def to_dict(self) -> dict:
        """The package manifest's ``io``."""
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, io: Mapping) -> Signature:
        """A manifest's ``io``, as this edgekit or an older one (no layouts) wrote it; ValueError if malformed."""
        if not isinstance(io, Mapping):
            raise ValueError(f"a signature is a mapping of inputs and outputs, not {type(io).__name__}")
        try:
            return cls(*(tuple(TensorSignature.from_dict(t) for t in io.get(kind) or ()) for kind in KINDS))
        except AttributeError as exc:  # a tensor entry that is not a mapping
            raise ValueError(f"a tensor entry is not a mapping ({exc})") from None

    def differences(self, serving: Signature) -> list[str]:
        """How this signature differs from the ``serving`` one (input and output names and order,
        dtypes, shapes, and layouts where both know theirs): an application written for one would
        feed or read the other wrongly. Empty when compatible."""
        found = []
        for kind in KINDS:
            old = {t.name: t for t in getattr(serving, kind)}
            new = {t.name: t for t in getattr(self, kind)}
            if list(old) != list(new):
                found.append(f"{kind} {list(new)} instead of {list(old)}")
                continue
            for name, t in new.items():
                was = old[name]
                pairs = [("dtype", str(t.dtype), str(was.dtype)), ("shape", list(t.shape), list(was.shape))]
                if t.layout and was.layout:
                    pairs.append(("layout", t.layout, was.layout))
                found += [f"{kind[:-1]} {name!r} {key} {a} instead of {b}" for key, a, b in pairs if a != b]
        return found


KINDS = ("inputs", "outputs")


@dataclass(frozen=True)
class LayoutRecord:
    """What a model file says about its I/O layouts (convert's ``io_layouts`` and, in older
    files, ``io_layout`` transposes) and, for what it does not say, the fallback rule above."""

    suffix: str
    recorded: Mapping[str, str] | None = None  # name -> layout; None: the file records none
    moved: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # name -> its transpose from NCHW

    @classmethod
    def of_model(cls, suffix: str, data: bytes) -> LayoutRecord:
        if suffix != ".tflite":
            return cls(suffix)
        try:
            info = tflite_metadata(data).get(METADATA)
        except ImportError:  # no schema package: the rule decides (the device extras install it)
            info = None
        if not isinstance(info, dict):
            return cls(suffix)
        recorded = info.get(LAYOUTS)
        moved = info.get(MOVED) if isinstance(info.get(MOVED), dict) else {}
        return cls(
            suffix,
            dict(recorded) if isinstance(recorded, dict) else None,
            {
                name: tuple(perm)
                for name, perm in moved.items()
                if isinstance(perm, list) and sorted(perm) == [0, 1, 2, 3]
            },
        )

    def label(self, tensor: TensorSignature) -> TensorSignature:
        """``tensor`` with its layout and source layout (a 4-D one only)."""
        if len(tensor.shape) != 4:
            return replace(tensor, layout=None, source_layout=None)
        perm = self.moved.get(tensor.name)
        moved = "".join(SOURCE_LAYOUT[a] for a in perm) if perm else None
        if self.recorded is not None:
            layout = self.recorded.get(tensor.name) if self.recorded.get(tensor.name) in LAYOUT_NAMES else None
        else:
            layout = moved or FORMAT_LAYOUTS.get(self.suffix)
        return replace(tensor, layout=layout, source_layout=SOURCE_LAYOUT if moved else None)


def tflite_metadata(data: bytes) -> dict[str, object]:
    """The JSON metadata entries of a .tflite file (name -> value); others are skipped."""
    import tflite

    model = tflite.Model.GetRootAs(data, 0)
    entries: dict[str, object] = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        try:
            entries[(entry.Name() or b"").decode()] = json.loads(bytes(raw).decode())
        except (ValueError, UnicodeDecodeError, TypeError):
            continue
    return entries


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:  # TFLite's string, resource, int4...: nothing numpy holds as numbers
        return np.dtype(object)


def _serving_names(model) -> dict[int, str]:
    """Tensor index -> the serving signature's name for it (what a Session shows)."""
    names: dict[int, str] = {}
    for s in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(s)
        if signature.SignatureKey() in (b"serving_default", None):
            for maps, count in (
                (signature.Inputs, signature.InputsLength()),
                (signature.Outputs, signature.OutputsLength()),
            ):
                for i in range(count):
                    names[maps(i).TensorIndex()] = maps(i).Name().decode()
    return names


def _from_tflite(data: bytes) -> Signature:
    import tflite

    try:
        model = tflite.Model.GetRootAs(data, 0)
        graph = model.Subgraphs(0)
        types = {v: k.lower() for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
        names = _serving_names(model)

        def tensor(index: int) -> TensorSignature:
            t = graph.Tensors(index)
            q = t.Quantization()
            quant = None
            if q is not None and q.ScaleLength() == 1 and q.Scale(0):
                quant = (float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0)
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            name = names.get(index, (t.Name() or b"").decode())
            return TensorSignature(name, shape, _dtype(types.get(t.Type(), str(t.Type()))), quant=quant)

        inputs = [tensor(graph.Inputs(i)) for i in range(graph.InputsLength())]
        outputs = [tensor(graph.Outputs(i)) for i in range(graph.OutputsLength())]
        layouts = LayoutRecord.of_model(".tflite", data)
    except Exception as exc:  # the flatbuffer reader raises whatever a damaged file provokes
        raise InvalidModelError(f"not a readable .tflite model ({exc})") from None
    return Signature(tuple(map(layouts.label, inputs)), tuple(map(layouts.label, outputs)))


def _from_onnx(data: bytes) -> Signature:
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        graph = onnx.load_from_string(data).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InvalidModelError(f"not a readable .onnx model ({exc})") from None
    constants = {i.name for i in graph.initializer}
    layouts = LayoutRecord(".onnx")

    def tensor(value) -> TensorSignature:
        kind = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in kind.shape.dim)
        dtype = np.dtype(tensor_dtype_to_np_dtype(kind.elem_type)) if kind.elem_type else np.dtype(object)
        return layouts.label(TensorSignature(value.name, shape, dtype))

    inputs = tuple(tensor(v) for v in graph.input if v.name not in constants)
    return Signature(inputs, tuple(tensor(v) for v in graph.output))
