"""The accuracy-aware int8 mode (issue 21): keep in float the fewest layers for which at most a
budget of the decisions on validation data differ from the float model on onnxruntime.

The digits CNN loses no decision in int8 when calibrated on its own data; calibrated on four
samples scaled down to 30%, its activations clip and int8 changes most of its decisions: a
model that needs layers in float, built from a real trained one. Every share the tests assert is
counted here, with onnxruntime and LiteRT's own interpreter, not read from the mode's figures."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import helper

from edgekit.cli import main
from edgekit.converters import convert
from edgekit.converters.config import BUDGET_METHODS, AccuracyBudget, QuantConfig
from edgekit.converters.quant.accuracy import DECISION_RULES, AccuracyBudgetError, decision_rule, decision_rule_for
from edgekit.converters.quant.calibration import OBSERVERS
from edgekit.errors import ParameterError
from tests.converters.onnx_models import model, rand

SAMPLES = files("edgekit") / "samples"
DIGITS = str(SAMPLES / "digits_cnn.onnx")


@pytest.fixture(scope="module")
def digits():
    data = np.load(str(SAMPLES / "digits_data.npz"))
    return {"calibration": data["x_calib"][:4] * 0.3, "validation": data["x_test"][:150]}


def onnx_outputs(path: str, samples: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None]})[0] for x in samples])


def litert_outputs(path, samples: np.ndarray, nhwc: bool) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    feed, read = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    outputs = []
    for x in samples:
        interpreter.set_tensor(feed, (x.transpose(1, 2, 0) if nhwc else x)[None].astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(read).copy())
    return np.concatenate(outputs)


def changed_classes(path, samples: np.ndarray) -> float:
    """The share of samples whose class (argmax) the converted model gives otherwise than onnxruntime."""
    expected = onnx_outputs(DIGITS, samples).argmax(-1)
    return float(np.mean(litert_outputs(path, samples, nhwc=True).argmax(-1) != expected))


def within(budget: float, digits, path, **options):
    accuracy = AccuracyBudget(digits["validation"], budget, measure_latency=False, **options)
    return convert(DIGITS, path, quant=QuantConfig(calibration=digits["calibration"], accuracy_budget=accuracy))


def test_the_budget_holds_on_the_validation_data(digits, tmp_path):
    int8, chosen = tmp_path / "int8.tflite", tmp_path / "chosen.tflite"
    convert(DIGITS, int8, quantize="int8", calibration=digits["calibration"])
    assert changed_classes(int8, digits["validation"]) > 0.2  # all-int8 is far over the budget
    result = within(0.01, digits, chosen)
    share = changed_classes(chosen, digits["validation"])
    assert share <= 0.01
    assert result.accuracy.kept and result.ops.get("DEQUANTIZE", 0) >= 1
    assert result.accuracy.changed == round(share * len(digits["validation"]))  # the figure it reports is real


def test_the_calibration_whose_int8_model_changes_fewest_decisions_is_chosen(digits, tmp_path):
    """No method asked for: each of the budget's methods is measured on the validation data,
    counted again here with onnxruntime and LiteRT for each method's all-int8 model. One
    calibration sample 40x too bright stretches min-max's ranges; percentile and mse clip it."""
    samples = np.load(str(SAMPLES / "digits_data.npz"))["x_calib"]
    calibration = np.concatenate([samples[:16], samples[:1] * 40])
    asked = AccuracyBudget(digits["validation"], 0.01, measure_latency=False)
    result = convert(
        DIGITS, tmp_path / "chosen.tflite", quant=QuantConfig(calibration=calibration, accuracy_budget=asked)
    ).accuracy
    tried = dict(result.methods)
    assert set(tried) == set(BUDGET_METHODS) == {"minmax", "percentile", "mse"}
    for method, changed in tried.items():
        int8 = tmp_path / f"{method}.tflite"
        convert(DIGITS, int8, quantize="int8", calibration=calibration, method=method)
        assert changed == round(changed_classes(int8, digits["validation"]) * len(digits["validation"]))
    assert tried[result.method] == min(tried.values()) == result.changed_int8 < tried["minmax"]
    quant = QuantConfig(calibration=calibration, method="mse", accuracy_budget=asked)
    one = convert(DIGITS, tmp_path / "mse.tflite", quant=quant).accuracy
    assert one.method == "mse" and one.methods == () and one.changed_int8 == tried["mse"]


def test_a_tight_budget_keeps_more_layers_in_float_than_a_loose_one(digits, tmp_path):
    tight = within(0.0, digits, tmp_path / "tight.tflite").accuracy
    loose = within(0.1, digits, tmp_path / "loose.tflite").accuracy
    assert len(tight.kept) > len(loose.kept) >= 1
    assert changed_classes(tmp_path / "tight.tflite", digits["validation"]) == 0
    assert changed_classes(tmp_path / "loose.tflite", digits["validation"]) <= 0.1
    assert all(layer.nodes and layer.ops for layer in tight.kept)


@pytest.mark.parametrize("empty", [np.zeros((0, 1, 8, 8), np.float32), {"image": np.zeros((0, 1, 8, 8), np.float32)}])
def test_no_validation_samples_is_refused_not_passed(digits, empty):
    accuracy = AccuracyBudget(empty, 0.5, measure_latency=False)
    with pytest.raises(ParameterError, match="validation is empty: it holds no samples"):
        convert(DIGITS, quant=QuantConfig(calibration=digits["calibration"], accuracy_budget=accuracy))


def test_a_budget_not_even_float_holds_is_refused(tmp_path):
    """threshold:T at a score where LiteRT's float32 sigmoid and onnxruntime's (each its own
    approximation) fall on two sides of T: no choice of layers in float can hold a budget of 0."""
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])]
    m = model(nodes, {"x": (1, 256)}, {"y": (1, 16)}, {"w": rand(256, 16, scale=0.1)})
    path, fp32 = str(tmp_path / "gemm.onnx"), tmp_path / "fp32.tflite"
    (tmp_path / "gemm.onnx").write_bytes(m.SerializeToString())
    validation = rand(32, 1, 256, seed=1)[:, 0]
    convert(path, fp32)
    reference, float32 = onnx_outputs(path, validation), litert_outputs(fp32, validation, nhwc=False)
    differ = np.flatnonzero(reference != float32)
    assert differ.size, "LiteRT and onnxruntime agree to the bit on every score: pick another model"
    k = differ[0]
    low = np.float32(reference.flat[k])
    limit = low if float32.flat[k] > low else np.nextafter(low, np.float32(-np.inf))
    accuracy = AccuracyBudget(validation, 0.0, f"threshold:{float(limit)!r}", measure_latency=False)
    with pytest.raises(AccuracyBudgetError, match="max_changed=0 cannot be held"):
        convert(path, quant=QuantConfig(calibration=rand(8, 256, seed=2), accuracy_budget=accuracy))


def test_decision_rules():
    ctc = rand(1, 40, 7)
    assert decision_rule_for("argmax")(ctc).shape == (1, 40)  # one decision per time step
    assert decision_rule_for("argmax:1")(ctc).shape == (1, 7)
    assert decision_rule_for("threshold:0.5")(ctc).sum() == (ctc > 0.5).sum()
    for bad in ("top5", "threshold", "threshold:x", "argmax:x", "ctc:x", "ctc:-1"):
        with pytest.raises(ParameterError, match="decision"):
            decision_rule_for(bad)


def _ctc_output(*steps: int, classes: int = 5) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[list(steps)][None]


@pytest.mark.parametrize(
    "candidate, changed",
    [
        ((1, 1, 0, 2, 2, 0), 0),  # the same steps
        ((1, 0, 1, 0, 2, 2), 1),  # a step moved: the reference's "1 2" becomes "1 1 2"
        ((1, 1, 1, 2, 0, 0), 0),  # other steps, the same line: "1 2"
        ((1, 1, 0, 3, 3, 0), 1),  # a character read as another
        ((0, 0, 0, 0, 0, 0), 1),  # nothing read
    ],
)
def test_the_ctc_rule_counts_lines_read_differently(candidate, changed):
    rule = decision_rule_for("ctc")
    assert rule.count(_ctc_output(1, 1, 0, 2, 2, 0), _ctc_output(*candidate)) == (changed, 1)
    assert decision_rule_for("ctc:3").count(_ctc_output(1, 3, 2), _ctc_output(1, 2, 2)) == (0, 1)  # 3 is blank
    with pytest.raises(ParameterError, match="needs a CTC output"):
        rule.count(np.zeros((1, 5)), np.zeros((1, 5)))


def test_a_decision_rule_is_one_decorated_function(digits, tmp_path):
    @decision_rule("sign")
    def sign(argument):
        return lambda output: output > 0

    try:
        result = within(0.05, digits, tmp_path / "m.tflite", decision="sign")
    finally:
        del DECISION_RULES["sign"]
    assert result.accuracy.decisions == 10 * len(digits["validation"])  # one per logit


@pytest.fixture
def files_for_cli(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("cal.npz", image=digits["calibration"])
    np.savez("val.npz", image=digits["validation"])
    np.savez("empty.npz", image=np.zeros((0, 1, 8, 8), np.float32))
    return tmp_path


def test_cli_accuracy_budget(files_for_cli, capsys):
    argv = ["convert", DIGITS, "-o", "m.tflite", "--quantize", "int8", "--calibration", "cal.npz"]
    argv += ["--accuracy-budget", "1%", "--validation-data", "val.npz", "--no-speed-check", "--report", "r.json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kept in float:" in out and "all-int8:" in out and "the fewest of the methods tried (minmax " in out
    report = json.loads((files_for_cli / "r.json").read_text())["accuracy"]
    assert report["max_changed"] == 0.01 and report["share_changed"] <= 0.01 < report["share_changed_int8"]
    assert report["method"] in dict(report["methods"]) and len(report["methods"]) == 3
    assert changed_classes(files_for_cli / "m.tflite", np.load("val.npz")["image"]) <= 0.01


QUANTIZE = ["--quantize", "int8", "--calibration", "cal.npz"]
BUDGET = ["--accuracy-budget", "1%", "--validation-data", "val.npz"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--validation-data", "val.npz", *QUANTIZE], "--validation-data goes with --accuracy-budget"),
        (["--decision", "argmax", *QUANTIZE], "--decision goes with --accuracy-budget"),
        (BUDGET, "--accuracy-budget goes with --quantize"),
        ([*BUDGET, "--quantize", "int16x8", "--calibration", "cal.npz"], "--accuracy-budget goes with --quantize int8"),
        ([*BUDGET, *QUANTIZE, "--auto-mixed"], "--accuracy-budget and --auto-mixed"),
        ([*QUANTIZE, "--accuracy-budget", "100%", "--validation-data", "val.npz"], "below 1"),
        ([*QUANTIZE, "--accuracy-budget=-0.01", "--validation-data", "val.npz"], "at least 0"),
        ([*QUANTIZE, "--accuracy-budget", "some", "--validation-data", "val.npz"], "50% or 0.5"),
        ([*QUANTIZE, "--accuracy-budget", "1%"], "needs --validation-data"),
        ([*QUANTIZE, "--accuracy-budget", "1%", "--validation-data", "empty.npz"], "empty"),
        ([*QUANTIZE, *BUDGET, "--decision", "top5"], "--decision top5 is unknown"),
        ([*QUANTIZE, *BUDGET, "--decision", "detections:2"], "--decision detections:2 needs a confidence"),
        ([*QUANTIZE, *BUDGET, "--decision", "detections"], "--decision detections:0.25 needs an ultralytics detector"),
    ],
)
def test_cli_refuses_in_one_line(files_for_cli, capsys, argv, words):
    try:
        code = main(["convert", DIGITS, "-o", "m.tflite", *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (files_for_cli / "m.tflite").exists()


def hard_swish_model():
    """conv, HardSwish as paddle2onnx writes it (Add, Clip, Mul, Div), conv."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Add", ["c1", "three"], ["a"], name="add"),
        n("Clip", ["a", "zero", "six"], ["clip"], name="clip"),
        n("Mul", ["c1", "clip"], ["m"], name="mul"),
        n("Div", ["m", "six"], ["hs"], name="div"),
        n("Conv", ["hs", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    weights = {"w1": rand(8, 3, 3, 3), "w2": rand(4, 8, 3, 3, seed=1), "three": np.float32(3), "zero": np.float32(0)}
    return model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, weights | {"six": np.float32(6)})


def test_layers_are_named_as_keep_float_matches_them_fused_ones_too():
    """paddle2onnx writes HardSwish as Add, Clip, Mul, Div; the converter fuses them into one node
    of its own name. The ranking names that node (keep_float then takes it), not the four it replaced."""
    from edgekit.converters.pipeline import import_onnx, to_tflite_graph
    from edgekit.converters.quant.mixed import first_samples, ranked_layers, runnable
    from edgekit.converters.quant.quantizer import quantize_graph

    m = hard_swish_model()
    graph = import_onnx(m)
    calibration = rand(8, 3, 8, 8, seed=2)
    int8 = quantize_graph(to_tflite_graph(graph), graph, mode="int8", calibration=calibration)
    ranked = ranked_layers(m, graph, runnable(int8), first_samples(graph, calibration))
    names = {node.name for node in graph.nodes}
    assert any("HardSwish" in layer.ops for layer in ranked), ranked
    assert all(set(layer.nodes) <= names for layer in ranked), (ranked, names)


def test_the_refinement_drops_layers_the_budget_does_not_need_within_its_cap(digits, tmp_path):
    """At a budget of 0 the prefix search keeps 3 layers; one of them, back in int8, changes no
    decision. The refinement finds it, never keeps a layer the prefix did not, and measures at
    most ``refine_trials`` models; the share is counted again with onnxruntime and LiteRT."""
    prefix = within(0.0, digits, tmp_path / "prefix.tflite", refine_trials=0).accuracy
    assert prefix.refinements == () and len(prefix.kept) == prefix.searched
    refined = within(0.0, digits, tmp_path / "refined.tflite").accuracy
    assert refined.searched == len(prefix.kept) and refined.trials == prefix.trials
    assert {layer.tensor for layer in refined.kept} < {layer.tensor for layer in prefix.kept}
    assert all(kept <= prefix.searched for kept, _ in refined.refinements)
    assert changed_classes(tmp_path / "refined.tflite", digits["validation"]) == 0
    assert refined.changed == 0 and (len(refined.kept), 0) in refined.refinements  # what it reports was measured
    for cap in (1, 2):
        capped = within(0.0, digits, tmp_path / f"cap{cap}.tflite", refine_trials=cap).accuracy
        assert len(capped.refinements) == cap and len(capped.kept) <= len(prefix.kept)
        assert changed_classes(tmp_path / f"cap{cap}.tflite", digits["validation"]) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_refine_trials_is_a_whole_number(digits, bad):
    with pytest.raises(ParameterError, match="refine_trials"):
        AccuracyBudget(digits["validation"], 0.01, refine_trials=bad)


@pytest.fixture
def observers_made(monkeypatch):
    """How many range observers calibration makes: one per float tensor each time it runs."""
    made = []

    class Counted(OBSERVERS["minmax"]):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setitem(OBSERVERS, "minmax", Counted)
    return made


def test_calibration_runs_once_per_conversion(digits, tmp_path, observers_made):
    convert(DIGITS, tmp_path / "int8.tflite", quantize="int8", calibration=digits["calibration"])
    once = len(observers_made)
    assert once > 0
    observers_made.clear()
    result = within(0.0, digits, tmp_path / "budget.tflite")
    assert len(result.accuracy.trials) + len(result.accuracy.refinements) > 3  # many models, one calibration
    assert len(observers_made) == once
    observers_made.clear()
    mixed = QuantConfig(calibration=digits["calibration"], auto_mixed=0.0)
    convert(DIGITS, tmp_path / "mixed.tflite", quant=mixed)
    assert len(observers_made) == once


def test_a_hard_swish_kept_in_float_is_one_op_again(tmp_path):
    """int8 splits HardSwish into ADD, MUL, MUL for XNNPACK's int8 kernels. Kept in float (what
    the budget does to a fragile one), it is one float HARD_SWISH, not three float ops each
    writing every value (on PP-OCRv4's recogniser: 0.86x fp32 latency became 0.73x for the same
    93 layers in float), and it computes what onnxruntime does as the split ops did."""
    from edgekit.converters.pipeline import import_onnx

    path = tmp_path / "hs.onnx"
    path.write_bytes(hard_swish_model().SerializeToString())
    hard_swish = next(node.name for node in import_onnx(str(path)).nodes if node.op == "HardSwish")
    calibration, samples = rand(8, 3, 8, 8, seed=2), rand(16, 3, 8, 8, seed=3)
    int8 = convert(path, tmp_path / "int8.tflite", quantize="int8", calibration=calibration)
    kept = convert(path, tmp_path / "kept.tflite", quant=QuantConfig(calibration=calibration, keep_float=(hard_swish,)))
    assert "HARD_SWISH" not in int8.ops and kept.ops["HARD_SWISH"] == 1
    assert kept.ops.get("MUL", 0) == int8.ops["MUL"] - 2 and kept.ops.get("ADD", 0) == int8.ops["ADD"] - 1
    expected = onnx_outputs(str(path), samples)

    def sqnr(tflite) -> float:
        got = litert_outputs(tflite, samples, nhwc=True).transpose(0, 3, 1, 2)
        return 10 * np.log10(np.sum(expected**2) / np.sum((got - expected) ** 2))

    assert sqnr(tmp_path / "kept.tflite") >= sqnr(tmp_path / "int8.tflite") - 0.1 > 25


def yolo_head(*detections: tuple[float, float, float, float, int, float], classes: int = 3, anchors: int = 8):
    """An ultralytics head output [1, 4 + classes, anchors]: one anchor per (cx, cy, w, h, class,
    score), every other anchor scoring 0.01 for every class."""
    output = np.full((1, 4 + classes, anchors), 0.01, np.float32)
    output[0, :4] = 10
    for anchor, (cx, cy, w, h, cls, score) in enumerate(detections):
        output[0, :4, anchor] = cx, cy, w, h
        output[0, 4 + cls, anchor] = score
    return output


FACE, HAND = (50, 50, 20, 20, 0, 0.9), (150, 150, 30, 30, 1, 0.8)


@pytest.mark.parametrize(
    ("candidate", "changed"),
    [
        ((FACE, HAND), 0),
        (((53, 52, 20, 20, 0, 0.7), HAND), 0),  # moved, IoU 0.62 and less sure: the same detection
        (((70, 50, 20, 20, 0, 0.9), HAND), 2),  # moved off itself (IoU 0): one lost, one extra
        ((FACE,), 1),  # dropped
        ((FACE, (150, 150, 30, 30, 1, 0.2)), 1),  # under the confidence: dropped
        ((FACE, HAND, (250, 250, 10, 10, 2, 0.5)), 1),  # an extra one
        (((50, 50, 20, 20, 2, 0.9), HAND), 2),  # a class change: one lost, one extra
        ((FACE, (149, 150, 30, 30, 1, 0.8), (151, 150, 30, 30, 1, 0.7)), 0),  # a duplicate NMS removes
    ],
)
def test_the_detections_rule_counts_detections_that_changed(candidate, changed):
    rule = decision_rule_for("detections")
    assert rule.count(yolo_head(FACE, HAND), yolo_head(*candidate)) == (changed, 2)  # (changed, reference's)


def test_the_detections_rule_takes_a_confidence():
    assert decision_rule_for("detections:0.85").count(yolo_head(FACE, HAND), yolo_head(FACE)) == (0, 1)
    for bad in ("detections:x", "detections:0", "detections:1.5", "detections:nan"):
        with pytest.raises(ParameterError, match=f"decision={bad} needs a confidence"):
            decision_rule_for(bad)


@pytest.mark.parametrize("shape", [(1, 10), (1, 4, 100), (2, 3, 4, 5)])
def test_the_detections_rule_refuses_an_output_not_of_a_detector_head(shape):
    output = np.zeros(shape, np.float32)
    with pytest.raises(ParameterError, match=r"decision=detections:0.25 needs an ultralytics detector output"):
        decision_rule_for("detections").count(output, output)


@pytest.fixture(scope="module")
def yolo_within_budget(tmp_path_factory):
    """NudeNet's YOLOv8n converted in the accuracy-aware mode, at most 10% of its fp32 detections
    changed on 48 validation crops of people (default min-max calibration: all-int8 finds recall
    0.83, precision 0.88 of fp32's on the held-out crops); fp32 detections by onnxruntime and the
    chosen model's by LiteRT's own interpreter on the validation and on 48 held-out crops."""
    from tests import real_models
    from tests.converters.test_real_models import YOLO_SHAPE, _people_crops

    path = real_models.path("nudenet-yolov8n")
    calibration, validation, test = _people_crops(24, seed=0), _people_crops(48, seed=2), _people_crops(48, seed=1)
    out = tmp_path_factory.mktemp("yolo-budget") / "chosen.tflite"
    accuracy = AccuracyBudget(validation, 0.1, "detections")
    quant = QuantConfig(calibration=calibration, accuracy_budget=accuracy)
    result = convert(path, out, input_shapes={"images": YOLO_SHAPE}, quant=quant)

    def detections(outputs: np.ndarray) -> list:
        return [real_models.yolo_detections(output[None]) for output in outputs]

    def agreement(samples: np.ndarray):
        expected = detections(onnx_outputs(str(path), samples))
        return real_models.detection_agreement(expected, detections(litert_outputs(out, samples, nhwc=True)))

    return result, agreement(validation), agreement(test)


@pytest.mark.slow
def test_yolov8n_within_a_detections_budget_finds_what_fp32_finds(yolo_within_budget):
    """Issue 21's bar for detectors, reached by the budget where default int8 misses it.
    Measured: the all-int8 models change 18 (minmax), 14 (percentile) and 8 (mse) of the 62
    validation detections (entropy, not tried by default, 31); from mse's calibration the mode keeps 52 of 236 ranked
    layers in float and changes 5 (validation recall 0.92, precision 1.00); on the 46 held-out
    detections recall 0.91, precision 0.98, IoU 0.97, at 0.61x fp32 latency (all-int8 0.26x) and
    21 s of search, quiet. From minmax's, as before the mode tried every method: 63 layers, 0.83x."""
    result, validation, held_out = yolo_within_budget
    accuracy = result.accuracy
    print(accuracy.summary(), f"\nvalidation: {validation}\nheld out: {held_out}", f"\nops: {result.ops}")
    # the figure the mode reports is the one counted again with onnxruntime and LiteRT
    assert accuracy.decisions == validation.reference
    assert accuracy.changed == validation.reference + validation.value - 2 * validation.matched
    assert accuracy.changed <= 0.1 * accuracy.decisions < accuracy.changed_int8
    assert accuracy.method == "mse" and dict(accuracy.methods)["minmax"] > accuracy.changed_int8
    assert validation.recall >= 0.9 and validation.precision >= 0.9
    assert held_out.recall >= 0.9 and held_out.precision >= 0.9 and held_out.mean_iou >= 0.9, held_out


@pytest.mark.parametrize("rows", ["[N, ...]", "[N, 1, ...]"])
def test_layers_rank_on_multi_input_calibration_stored_either_way(tmp_path, rows):
    """A .npz of one [1, ...] sample per row ([N, 1, 576] for silero-vad v6's input) is what
    --calibration and --verify --data take; --auto-mixed and the budget, which rank layers on
    its first sample, once passed onnxruntime [1, 1, 576] and died in a traceback."""
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w"], ["a"]), n("Add", ["a", "state"], ["s"]), n("Relu", ["s"], ["y"])]
    m = model(nodes, {"x": (1, 8), "state": (1, 4)}, {"y": None}, {"w": rand(8, 4)})
    samples = {"x": rand(16, 8, seed=1), "state": rand(16, 4, seed=2)}
    if rows == "[N, 1, ...]":
        samples = {name: value[:, None] for name, value in samples.items()}
    result = convert(m, tmp_path / "mixed.tflite", quant=QuantConfig(calibration=samples, auto_mixed=0.0))
    assert result.partitions == 1


def _vad_like():
    """A speech probability and a recurrent state output, as silero-vad has (h, c)."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w"], ["c"], name="conv"),
        n("ReduceMean", ["c"], ["m"], axes=[1, 2, 3], keepdims=0, name="pool"),
        n("Sigmoid", ["m"], ["prob"], name="sigmoid"),
        n("Tanh", ["c"], ["state"], name="state"),
    ]
    return model(nodes, {"x": (1, 3, 4, 4)}, {"prob": (1,), "state": (1, 8, 4, 4)}, {"w": rand(8, 3, 1, 1)})


def test_decisions_are_counted_on_the_outputs_named():
    """silero-vad v6 under threshold:0.5 counted 257 decisions a sample: its speech probability
    and 256 values of its LSTM state; the state decides nothing."""
    samples = rand(12, 3, 4, 4, seed=5)
    every = AccuracyBudget(samples, 0.5, "threshold:0.5", measure_latency=False)
    named = AccuracyBudget(samples, 0.5, "threshold:0.5", decision_outputs=("prob",), measure_latency=False)
    counted = {}
    for label, budget in (("every", every), ("named", named)):
        quant = QuantConfig(calibration=samples, accuracy_budget=budget)
        counted[label] = convert(_vad_like(), quant=quant).accuracy.decisions
    assert counted == {"every": 12 * (1 + 8 * 4 * 4), "named": 12}


def test_a_decision_output_the_model_lacks_is_refused():
    budget = AccuracyBudget(rand(4, 3, 4, 4), 0.1, decision_outputs=("speech",))
    with pytest.raises(ParameterError, match=r"decision_outputs names no output of the model: speech; its outputs"):
        convert(_vad_like(), quant=QuantConfig(calibration=rand(4, 3, 4, 4), accuracy_budget=budget))


def test_a_silent_first_calibration_sample_does_not_hide_the_lossy_layers():
    """Layers were ranked on the first calibration sample alone: a silent one (a VAD's pause, a
    black frame) makes every layer exact or 0/0, and --auto-mixed then kept nothing in float."""
    from edgekit.converters.pipeline import import_onnx, to_tflite_graph
    from edgekit.converters.quant.mixed import lossy_layers_on_calibration
    from edgekit.converters.quant.quantizer import quantize_graph

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["a"], name="first"),
        n("Relu", ["a"], ["r"], name="relu"),
        n("Conv", ["r", "w2"], ["y"], name="second"),
    ]
    m = model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, {"w1": rand(8, 3, 3, 3), "w2": rand(4, 8, 1, 1, seed=1)})
    calibration = rand(8, 3, 8, 8, seed=2)
    calibration[0] = 0.0
    graph = import_onnx(m)
    int8 = quantize_graph(to_tflite_graph(graph), graph, mode="int8", calibration=calibration)
    assert lossy_layers_on_calibration(m, graph, int8, calibration, 0.0)
