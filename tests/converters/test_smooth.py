"""Activation equalization across a HardSwish (converters/passes/smooth.py): exact in float,
more accurate in int8, against onnxruntime's float32 outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.config import AccuracyBudget, QuantConfig
from edgekit.converters.harness import TFLiteRunner
from edgekit.converters.passes.smooth import channel_scales, hard_swish_chains
from edgekit.converters.pipeline import import_onnx
from edgekit.converters.verification import sqnr_db
from edgekit.errors import ParameterError
from tests import real_models
from tests.converters.onnx_models import model, rand

CHANNELS = 8
SHAPE = (1, 3, 16, 16)


def _outlier_block(extra_reader: bool = False, affine: bool = True) -> onnx.ModelProto:
    """Conv -> HardSwish -> Mul -> Add -> depthwise Conv, as in a PP-LCNet block: one channel of
    the first convolution is 30x the others, and the depthwise weights undo it (the trained
    backbone's channels differ 8-22x). ``extra_reader``: the HardSwish output also leaves the
    graph; ``affine=False``: no Mul/Add, MobileNetV3's form."""
    w1 = rand(CHANNELS, 3, 3, 3, seed=1, scale=0.3)
    w1[0] *= 30
    dw = rand(CHANNELS, 1, 3, 3, seed=2, scale=0.5)
    dw[0] /= 30
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c"], ["h"]),
        helper.make_node("Mul", ["a", "h"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["d"]),
        helper.make_node("Conv", ["d" if affine else "h", "dw", "dwb"], ["y"], pads=[1, 1, 1, 1], group=CHANNELS),
    ]
    if not affine:
        del nodes[2:4]
    outputs = {"y": None, "h": None} if extra_reader else {"y": None}
    weights = {"w1": w1, "b1": rand(CHANNELS, seed=3, scale=0.5), "dw": dw, "dwb": rand(CHANNELS, seed=4, scale=0.1)}
    if affine:
        weights |= {"a": np.array(0.7, np.float32), "b": np.array(0.2, np.float32)}
    return model(nodes, {"x": SHAPE}, outputs, weights)


def _onnxruntime(m: onnx.ModelProto, samples: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.stack([session.run(["y"], {"x": x[None]})[0] for x in samples])


def _tflite(path, samples: np.ndarray) -> np.ndarray:
    runner = TFLiteRunner(path.read_bytes())
    return np.stack([runner({"x": x[None]})["y"] for x in samples])


def test_chain_is_found_only_where_its_tensors_are_private():
    assert len(hard_swish_chains(import_onnx(_outlier_block()))) == 1
    assert hard_swish_chains(import_onnx(_outlier_block(extra_reader=True))) == []


def test_scales_follow_the_ranges_with_a_floor():
    scales = channel_scales(np.array([30.0, 2.0, 2.0, 0.0]))  # the floor: 5% of 30
    assert scales[0] / scales[1] == pytest.approx(15) and scales[3] / scales[1] == pytest.approx(0.75)
    assert np.exp(np.log(scales).mean()) == pytest.approx(1)


@pytest.mark.parametrize("affine", [True, False])
def test_int8_gains_and_float_is_unchanged(tmp_path, monkeypatch, affine):
    """int8 against onnxruntime float32: 10.8 dB without the pass, 32.3 dB with it (measured,
    with the Mul/Add)."""
    m = _outlier_block(affine=affine)
    calibration, test = rand(16, 3, 16, 16, seed=5), rand(8, 3, 16, 16, seed=6)
    expected = _onnxruntime(m, test)
    sqnr = {}
    for smooth in (False, True):
        out = tmp_path / f"int8-{smooth}.tflite"
        convert(m, out, quant=QuantConfig(mode="int8", calibration=calibration, smooth_activations=smooth))
        sqnr[smooth] = sqnr_db(expected, _tflite(out, test).reshape(expected.shape))
    assert sqnr[False] < 15 and sqnr[True] >= 30, sqnr

    # float: the same rewrite, converted without quantizing, is what onnxruntime computes
    from edgekit.converters import pipeline
    from edgekit.converters.passes.smooth import channel_ranges, smooth_activations

    passes = pipeline._onnx_passes
    ranges = channel_ranges(m, ["d" if affine else "h"], [{"x": x[None]} for x in calibration])

    def smoothed(graph, *options):
        return smooth_activations(passes(graph, *options), ranges)

    monkeypatch.setattr(pipeline, "_onnx_passes", smoothed)
    out = tmp_path / "fp32.tflite"
    convert(m, out)
    assert sqnr_db(expected, _tflite(out, test).reshape(expected.shape)) >= 60


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mode": "int16x8", "calibration": np.zeros((2, 3, 16, 16), np.float32)}, "goes with mode=int8"),
        ({"mode": "int8"}, "and calibration=DATA"),
        ({"mode": "fp16"}, "goes with mode=int8"),
    ],
)
def test_refused_where_it_would_do_nothing(options, words):
    with pytest.raises(ParameterError, match=words):
        QuantConfig(smooth_activations=True, **options)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "--smooth-activations goes with --quantize"),
        (["--quantize", "int16x8", "--calibration", "cal.npy"], "--smooth-activations goes with --quantize int8"),
        (["--quantize", "fp16"], "--smooth-activations goes with --quantize int8"),
    ],
)
def test_cli_refuses_the_flag_where_it_would_do_nothing(tmp_path, monkeypatch, capsys, argv, words):
    from edgekit.cli import main

    monkeypatch.chdir(tmp_path)
    onnx.save(_outlier_block(), "block.onnx")
    np.save("cal.npy", rand(4, 3, 16, 16, seed=7))
    try:
        code = main(["convert", "block.onnx", "-o", "m.tflite", "--smooth-activations", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_ppocr_recogniser_reads_what_onnxruntime_reads_with_it(tmp_path):
    """PP-OCRv4's recogniser, its 24 held-out lines (test_real_models): 100% of lines read as
    onnxruntime reads them and 16.4 dB with the pass, 88% and 9.9 dB without (measured); the
    lost lines were spaces read as blanks."""
    from tests.converters.test_real_models import REC_SHAPE, _run_onnx, _run_tflite, _text_lines, ctc_greedy

    path = real_models.path("ppocr-v4-rec")
    _, lines = _text_lines(48, seed=0)
    expected = _run_onnx(path, "x", lines[24:])
    out = tmp_path / "rec-smooth.tflite"
    quant = QuantConfig(mode="int8", calibration=lines[:24], smooth_activations=True)
    result = convert(path, out, input_shapes={"x": REC_SHAPE}, quant=quant)
    got = _run_tflite(out, "x", lines[24:]).reshape(expected.shape)
    agreement = np.mean([ctc_greedy(a) == ctc_greedy(b) for a, b in zip(expected, got, strict=True)])
    assert agreement >= 0.95 and sqnr_db(expected, got) >= 14 and result.partitions == 1, f"{agreement:.0%} of lines"


def test_a_model_without_a_chain_is_said_to_be_unchanged(tmp_path, capsys):
    """The option changes nothing on a model with no Conv -> HardSwish -> depthwise chain: it says so."""
    from importlib.resources import files

    samples = files("edgekit") / "samples"
    calibration = np.load(str(samples / "digits_data.npz"))["x_calib"][:8]
    quant = QuantConfig(calibration=calibration, smooth_activations=True)
    model = str(samples / "digits_cnn.onnx")
    smooth = convert(model, tmp_path / "smooth.tflite", quant=quant)
    plain = convert(model, tmp_path / "plain.tflite", quant=QuantConfig(calibration=calibration))
    said = capsys.readouterr().out
    assert "smooth-activations: this model has no convolution -> HardSwish -> depthwise chain" in said
    assert (tmp_path / "smooth.tflite").read_bytes() == (tmp_path / "plain.tflite").read_bytes()
    assert smooth.ops == plain.ops


def test_the_accuracy_budget_tries_each_calibration_smoothed_too(tmp_path):
    """With an accuracy budget the pass is one more way to quantize, judged as the calibration
    methods are: by the validation decisions its all-int8 model changes. On the outlier block it
    changes fewer, so the budget starts from it and the model written is the smoothed one."""
    m = _outlier_block()
    calibration, validation, test = (rand(n, 3, 16, 16, seed=s) for n, s in ((16, 5), (16, 7), (8, 6)))
    expected = _onnxruntime(m, test)
    budget = AccuracyBudget(validation, 0.5, measure_latency=False)
    quant = QuantConfig(mode="int8", calibration=calibration, method="minmax", accuracy_budget=budget)
    out = tmp_path / "budget.tflite"
    accuracy = convert(m, out, quant=quant).accuracy
    tried = dict(accuracy.methods)
    assert set(tried) == {"minmax", "minmax+smooth"} and tried["minmax+smooth"] < tried["minmax"], tried
    assert accuracy.method == "minmax+smooth" and accuracy.changed_int8 == tried["minmax+smooth"]
    assert sqnr_db(expected, _tflite(out, test).reshape(expected.shape)) >= 30

    # asked for already: it is applied, and there is nothing more to try
    smoothed = convert(m, tmp_path / "smoothed.tflite", quant=replace(quant, smooth_activations=True)).accuracy
    assert smoothed.methods == () and smoothed.method == "minmax"
