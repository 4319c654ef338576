"""Pruning: pruned models load in onnxruntime, convert, and match; bad requests are refused."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from edgekit.converters.prune import cluster_weights, find_groups, magnitude_prune, prune_channels
from edgekit.converters.prune.budget import cost, prune_to_budget
from edgekit.errors import InputError
from tests.converters.onnx_models import model, rand

N = helper.make_node
DIGITS = str(files("edgekit") / "samples" / "digits_cnn.onnx")


def residual_cnn():
    """conv-bn-relu-conv chain (prunable), a residual Add (its channels tied), then Gemm."""
    return model(
        [
            N("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            N("BatchNormalization", ["a", "g", "b", "m", "v"], ["an"]),
            N("Relu", ["an"], ["ar"]),
            N("Conv", ["ar", "w2"], ["c"], pads=[1, 1, 1, 1]),
            N("Add", ["c", "x"], ["s"]),
            N("Relu", ["s"], ["sr"]),
            N("Conv", ["sr", "w3"], ["d"]),
            N("Relu", ["d"], ["dr"]),
            N("Conv", ["dr", "dw"], ["e"], group=8, pads=[1, 1, 1, 1]),
            N("Relu", ["e"], ["er"]),
            N("Conv", ["er", "w4"], ["f"]),
            N("GlobalAveragePool", ["f"], ["gp"]),
            N("Flatten", ["gp"], ["fl"]),
            N("Gemm", ["fl", "fc"], ["y"], transB=1),
        ],
        {"x": (1, 4, 8, 8)},
        {"y": None},
        {
            "w1": rand(6, 4, 3, 3, seed=1),
            "g": rand(6, seed=2),
            "b": rand(6, seed=3),
            "m": rand(6, seed=4),
            "v": np.abs(rand(6, seed=5)) + 0.5,
            "w2": rand(4, 6, 3, 3, seed=6),
            "w3": rand(8, 4, 1, 1, seed=7),
            "dw": rand(8, 1, 3, 3, seed=8),
            "w4": rand(5, 8, 1, 1, seed=9),
            "fc": rand(3, 5, seed=10),
        },
    )


@pytest.mark.parametrize("criterion", ["l1", "l2", "fpgm"])
def test_channel_pruning_keeps_the_model_valid(criterion, tmp_path):
    m = residual_cnn()
    groups = {g.name for g in find_groups(m)}
    assert len(groups) == 3  # w1->w2, w3->dw->w4, w4->fc; w2's output is tied to the residual
    pruned = prune_channels(m, 0.5, criterion)
    onnx.checker.check_model(pruned)
    weights = {i.name: i.dims for i in pruned.graph.initializer}
    assert list(weights["w1"]) == [3, 4, 3, 3] and list(weights["w2"]) == [4, 3, 3, 3]
    assert cost(pruned, "macs") < cost(m, "macs")
    out = tmp_path / "p.tflite"
    convert(pruned, out)
    assert verify(pruned, out, samples=4).min_sqnr_db > 60


def residual_stage(dead=(1, 5)):
    """A stem conv and two residual blocks sharing 8 channels, then Gemm; the channels in
    ``dead`` are exactly zero in every conv that writes the residual channels."""
    w0, w2, w3 = rand(8, 3, 3, 3, seed=1), rand(8, 6, 3, 3, seed=2), rand(8, 8, 1, 1, seed=3)
    for w in (w0, w2, w3):
        w[list(dead)] = 0
    return model(
        [
            N("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
            N("Relu", ["a"], ["ar"]),
            N("Conv", ["ar", "w1"], ["h"], pads=[1, 1, 1, 1]),
            N("Relu", ["h"], ["hr"]),
            N("Conv", ["hr", "w2"], ["b"], pads=[1, 1, 1, 1]),
            N("Add", ["ar", "b"], ["s"]),
            N("Relu", ["s"], ["sr"]),
            N("Conv", ["sr", "w3"], ["c"]),
            N("Add", ["sr", "c"], ["t"]),
            N("GlobalAveragePool", ["t"], ["gp"]),
            N("Flatten", ["gp"], ["fl"]),
            N("Gemm", ["fl", "fc"], ["y"], transB=1),
        ],
        {"x": (1, 3, 8, 8)},
        {"y": None},
        {"w0": w0, "w1": rand(6, 8, 3, 3, seed=4), "w2": w2, "w3": w3, "fc": rand(3, 8, seed=5)},
    )


def test_residual_channels_are_pruned_together(tmp_path):
    """The stem, both blocks' last convs and the Adds form one group: pruning its two dead
    channels removes them from every producer and reader and changes no output."""
    import onnxruntime as ort

    m = residual_stage()
    groups = {g.name: g for g in find_groups(m)}
    assert set(groups) == {"a", "h"}  # the residual group is named after the stem conv
    residual = groups["a"]
    assert [p.output[0] for p in residual.producers] == ["a", "b", "c"] and len(residual.joins) == 2
    assert sorted(c.output[0] for c in residual.consumers) == ["c", "h", "y"]
    pruned = prune_channels(m, {"a": 0.25}, round_to=1)
    onnx.checker.check_model(pruned)
    dims = {i.name: list(i.dims) for i in pruned.graph.initializer}
    assert dims["w0"][0] == dims["w2"][0] == dims["w3"][0] == dims["w3"][1] == dims["w1"][1] == dims["fc"][1] == 6
    x = rand(4, 3, 8, 8, seed=9)

    def run(mm):
        session = ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"x": v[None]})[0] for v in x])

    np.testing.assert_allclose(run(pruned), run(m), rtol=1e-5, atol=1e-5)
    out = tmp_path / "p.tflite"
    convert(pruned, out)
    assert verify(pruned, out, samples=4).min_sqnr_db > 60
    # a residual chain that starts at the graph input is tied: it is not a group
    assert {g.name for g in find_groups(residual_cnn())} == {"a", "d", "f"}


def test_cli_within_blocks_leaves_residual_channels(tmp_path):
    source, out = tmp_path / "r.onnx", tmp_path / "p.onnx"
    onnx.save(residual_stage(), source)
    for flag, residual_width in (([], 6), (["--within-blocks"], 8)):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgekit",
                "prune",
                str(source),
                "-o",
                str(out),
                "--ratio",
                "0.25",
                "--round-to",
                "1",
                *flag,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        dims = {i.name: list(i.dims) for i in onnx.load(out).graph.initializer}
        assert dims["w0"][0] == residual_width and dims["w1"][0] == 4  # the inner group shrinks either way


def wide_cnn():
    """Three prunable groups wider than 8 channels: 40 -> 48 -> 24 -> Gemm."""
    return model(
        [
            N("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            N("Relu", ["a"], ["ar"]),
            N("Conv", ["ar", "w2"], ["b"], pads=[1, 1, 1, 1]),
            N("Relu", ["b"], ["br"]),
            N("Conv", ["br", "w3"], ["c"]),
            N("Relu", ["c"], ["cr"]),
            N("GlobalAveragePool", ["cr"], ["gp"]),
            N("Flatten", ["gp"], ["fl"]),
            N("Gemm", ["fl", "fc"], ["y"], transB=1),
        ],
        {"x": (1, 3, 8, 8)},
        {"y": None},
        {
            "w1": rand(40, 3, 3, 3, seed=1),
            "w2": rand(48, 40, 3, 3, seed=2),
            "w3": rand(24, 48, 1, 1, seed=3),
            "fc": rand(5, 24, seed=4),
        },
    )


def test_cli_rounding_defaults_are_the_library_default():
    from edgekit.cli import build_parser
    from edgekit.converters.prune.channels import ROUND_TO

    parser = build_parser()
    assert parser.parse_args(["prune", "m.onnx", "-o", "p.onnx", "--ratio", "0.5"]).round_to == ROUND_TO
    # convert leaves it unset (a --prune-round-to without a pruning budget is refused), and the
    # library's default applies: PruneConfig.round_to None is ROUND_TO
    from edgekit.commands.convert import _prune_config

    args = parser.parse_args(["convert", "m.onnx", "-o", "m.tflite", "--prune-ratio", "0.5"])
    assert args.prune_round_to is None and _prune_config(args, None).round_to is None


def test_channel_counts_round_to_tiles():
    from edgekit.converters.prune.channels import kept_count

    assert [kept_count(40, 0.5, round_to=r) for r in (1, 8, 16)] == [20, 24, 16]
    assert kept_count(16, 0.9, round_to=8) == 8 and kept_count(6, 0.5, round_to=8) == 3  # narrow: not rounded
    assert kept_count(64, 0.5, min_channels=40, round_to=8) == 40
    m = wide_cnn()

    def widths(p):
        return [d.dims[0] for d in p.graph.initializer if d.name in ("w1", "w2", "w3")]

    assert widths(prune_channels(m, 0.5, round_to=1)) == [20, 24, 12]
    assert widths(prune_channels(m, 0.5)) == [16, 32, 16]  # the default rounds to 16
    for round_to in (8, 16):
        pruned, _, fraction = prune_to_budget(m, 0.5, round_to=round_to)
        assert all(w % round_to == 0 for w in widths(pruned))
        assert 0.4 < fraction <= 0.5  # channels given back tile by tile up to the target (coarse at 16)
        assert abs(fraction - cost(pruned, "macs") / cost(m, "macs")) < 1e-9
    with pytest.raises(InputError, match="round_to=0 must be a positive channel count"):
        prune_channels(m, 0.5, round_to=0)


def test_latency_aware_allocation():
    from edgekit.converters.prune.budget import prune_by_latency
    from edgekit.converters.prune.latency import GroupLatency, format_table, measure

    m = wide_cnn()
    table = measure(m, progress=None, rounds=2, runs=2)  # real timings: tiny, noisy, but well-formed
    assert [row.group for row in table] == ["a", "b", "c"] and all(row.macs_saved > 0 for row in table)
    assert "time/MAC" in format_table(table)
    # with given timings: the group whose MACs cost the most time is pruned the most
    given = [GroupLatency("a", 0.3, 0.6), GroupLatency("b", 0.3, 0.15), GroupLatency("c", 0.05, 0.05)]
    pruned, ratios, fraction = prune_by_latency(m, 0.5, table=given, round_to=1)
    assert ratios["a"] > ratios["c"] > ratios["b"] and fraction <= 0.5
    assert abs(fraction - cost(pruned, "macs") / cost(m, "macs")) < 1e-9 and fraction > 0.45
    with pytest.raises(InputError, match="saves time"):
        prune_by_latency(m, 0.5, table=[GroupLatency("a", 0.3, -0.1)])


def test_pruned_digits_model_still_classifies(tmp_path):
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    pruned, ratio, fraction = prune_to_budget(onnx.load(DIGITS), 0.7)
    assert fraction <= 0.7
    out = tmp_path / "p.tflite"
    convert(pruned, out, quantize="int8", calibration=data["x_calib"])
    assert verify(pruned, out, data=data["x_test"][:50]).min_sqnr_db > 20


def _int8_weights(path) -> dict[str, tuple[np.ndarray, int]]:
    """Weight tensors of CONV_2D / DEPTHWISE / FULLY_CONNECTED in an int8 .tflite: name ->
    (int8 values, the axis of their output channels)."""
    import tflite

    data = path.read_bytes()
    m = tflite.Model.GetRootAsModel(data, 0)
    graph = m.Subgraphs(0)
    axes = {
        tflite.BuiltinOperator.CONV_2D: 0,
        tflite.BuiltinOperator.DEPTHWISE_CONV_2D: 3,
        tflite.BuiltinOperator.FULLY_CONNECTED: 0,
    }
    found = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex()).BuiltinCode()
        if code not in axes:
            continue
        tensor = graph.Tensors(op.Inputs(1))
        raw = m.Buffers(tensor.Buffer()).DataAsNumpy()
        assert tensor.Type() == tflite.TensorType.INT8
        found[tensor.Name().decode()] = (raw.view(np.int8).reshape(tensor.ShapeAsNumpy()), axes[code])
    return found


def test_magnitude_and_cluster(tmp_path):
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    m = onnx.load(DIGITS)
    sparse, report = magnitude_prune(m, 0.8)
    weights = [
        onnx.numpy_helper.to_array(i)
        for i in sparse.graph.initializer
        if i.name in {n.input[1] for n in sparse.graph.node if n.op_type in ("Conv", "Gemm")}
    ]
    total = sum(w.size for w in weights)
    assert abs(sum((w == 0).sum() for w in weights) / total - 0.8) < 0.01
    assert set(report) and all(0 <= v <= 1 for v in report.values())
    clustered = cluster_weights(m, 16)
    for init in clustered.graph.initializer:
        w = onnx.numpy_helper.to_array(init)
        if w.ndim == 4 and w.shape[1] > 1:
            assert all(np.unique(row).size <= 16 for row in w.reshape(w.shape[0], -1))
    # both load in onnxruntime, convert to int8, and verify against onnxruntime on held-out digits
    for name, pruned in (("sparse", sparse), ("clustered", clustered)):
        out = tmp_path / f"{name}.tflite"
        convert(pruned, out, quantize="int8", calibration=data["x_calib"])
        assert verify(pruned, out, data=data["x_test"][:50]).min_sqnr_db > 15, name
        int8 = _int8_weights(out)
        assert len(int8) == 5
        if name == "sparse":  # int8 keeps every zero: 80% of all weights are exactly 0
            zeros = sum(int((w == 0).sum()) for w, _ in int8.values())
            assert zeros >= 0.8 * total - 1, (zeros, total)
        else:  # int8 keeps the clustering: at most 16 distinct int8 values per output channel
            for w, axis in int8.values():
                rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
                assert max(np.unique(row).size for row in rows) <= 16


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_pruned_torchvision_models_convert_and_verify(name, tmp_path):
    """50% of the MACs off real architectures: valid ONNX, onnxruntime runs it, int8 converts
    and edgekit verify compares it with onnxruntime."""
    import onnxruntime as ort

    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from edgekit.converters.torch import export_onnx

    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    export_onnx(getattr(torchvision.models, name)(weights=None).eval(), torch.zeros(1, 3, 224, 224), path)
    dense = onnx.load(path)
    pruned, _, fraction = prune_to_budget(dense, 0.5)
    assert 0.4 < fraction <= 0.5
    onnx.checker.check_model(pruned)
    session = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    assert session.run(None, {session.get_inputs()[0].name: sample})[0].shape == (1, 1000)
    fp32 = tmp_path / "pruned.tflite"
    convert(pruned, fp32)
    assert verify(pruned, fp32, samples=2).min_sqnr_db > 60
    int8 = tmp_path / "pruned_int8.tflite"
    calibration = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    result = convert(pruned, int8, quantize="int8", calibration=calibration)
    assert result.partitions == 1
    dense_int8 = tmp_path / "dense_int8.tflite"
    dense_result = convert(dense, dense_int8, quantize="int8", calibration=calibration)
    # a MAC budget does not fix the weight count: MobileNetV3's classifier (Gemm -> Gemm, not
    # channel-pruned) holds most of its weights, and MobileNetV2 at 50% of the MACs keeps
    # 62% of its int8 bytes at the default rounding to 16 (59% rounded to 8)
    limit = {"mobilenet_v3_small": 0.8, "mobilenet_v2": 0.65}.get(name, 0.6)
    assert int8.stat().st_size < limit * dense_result.size_bytes
    # int8 serves the pruned model as well as the dense one (random weights: MobileNetV3's
    # outputs barely depend on the input, so its SQNR is low either way)
    dense_sqnr = verify(dense, dense_int8, data=calibration[:2]).min_sqnr_db
    assert verify(pruned, int8, data=calibration[:2]).min_sqnr_db > min(dense_sqnr - 3, 10)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: prune_channels(m, 1.5), "between 0 and 1"),
        (lambda m: prune_channels(m, 0.0), "between 0 and 1"),
        (lambda m: prune_channels(m, 0.5, exclude=frozenset(g.name for g in find_groups(m))), "excluded"),
        (lambda m: prune_to_budget(m, 0.01), r"cannot reach 1% of the MACs: .* leaves \d+\.\d%"),
        (lambda m: prune_to_budget(m, 0.001, "params"), r"cannot reach 0\.1% of the params"),
        (lambda m: magnitude_prune(m, 1.0), "between 0 and 1"),
    ],
)
def test_bad_requests(call, message):
    with pytest.raises(InputError, match=message):
        call(onnx.load(DIGITS))


def test_nothing_prunable():
    m = model([N("Relu", ["x"], ["y"])], {"x": (1, 4)}, {"y": None})
    with pytest.raises(InputError, match="nothing is prunable"):
        prune_channels(m, 0.5)


def test_one_rule_teaches_the_pruner_an_op(monkeypatch):
    """Channels that reach an op without a rule are tied; registering one rule for it (here
    Softsign, element-wise, as Relu) makes them prunable, and the pruned model computes what the
    dense one does in onnxruntime (the pruned channels are dead: zero weights, Softsign(0) = 0)."""
    import onnxruntime as ort

    from edgekit.converters.prune import channels

    w1 = rand(8, 3, 3, 3, seed=1)
    w1[[1, 5]] = 0
    m = model(
        [
            N("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            N("Softsign", ["a"], ["s"]),
            N("Conv", ["s", "w2"], ["b"], pads=[1, 1, 1, 1]),
            N("Relu", ["b"], ["y"]),
        ],
        {"x": (1, 3, 6, 6)},
        {"y": None},
        {"w1": w1, "w2": rand(4, 8, 3, 3, seed=2)},
    )
    (tied,) = [g for g in channels._all_groups(m) if g.name == "a"]
    assert tied.tied == "reaches Softsign s" and not find_groups(m)
    monkeypatch.setitem(channels.CHANNEL_RULES, "Softsign", channels.CHANNEL_RULES["Relu"])
    assert [g.name for g in find_groups(m)] == ["a"]
    pruned = prune_channels(m, 0.25, round_to=1)
    onnx.checker.check_model(pruned)
    dims = {i.name: list(i.dims) for i in pruned.graph.initializer}
    assert dims["w1"][0] == dims["w2"][1] == 6
    x = rand(3, 3, 6, 6, seed=3)

    def run(mm):
        session = ort.InferenceSession(mm.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"x": v[None]})[0] for v in x])

    np.testing.assert_allclose(run(pruned), run(m), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="two channel rules for Relu"):
        channels.channel_rule("Relu")(channels.CHANNEL_RULES["Relu"])


def test_size_report_takes_the_xz_preset_from_its_caller():
    """report.py measures xz at the preset it is given (packaging, the layer above, owns it)."""
    import lzma
    from pathlib import Path

    from edgekit.converters.prune.report import compressed_sizes

    data = Path(DIGITS).read_bytes()
    assert "int8_xz" not in compressed_sizes(data, "int8")
    for preset in (0, 6):
        assert compressed_sizes(data, "int8", preset)["int8_xz"] == len(lzma.compress(data, preset=preset))


def test_cli(tmp_path):
    out = tmp_path / "p.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "prune", DIGITS, "-o", str(out), "--target-macs", "0.6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "tflite_fp32_zstd" in result.stdout and out.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "edgekit", "prune", DIGITS, "-o", str(tmp_path / "q.onnx"), "--ratio", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "between 0 and 1" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_cli_rank_and_cluster_scope(tmp_path):
    def prune(*args):
        out = tmp_path / "p.onnx"
        result = subprocess.run(
            [sys.executable, "-m", "edgekit", "prune", DIGITS, "-o", str(out), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return onnx.load(out), result.stdout

    _, stdout = prune("--method", "lowrank", "--rank", "0.25")
    assert "rank    8 of   32" in stdout  # the 64x32 1x1 conv at a quarter of its full rank
    clustered, _ = prune("--method", "cluster", "--clusters", "4", "--cluster-scope", "layer")
    w = next(onnx.numpy_helper.to_array(i) for i in clustered.graph.initializer if list(i.dims) == [32, 16, 3, 3])
    assert np.unique(w).size <= 4  # four values for the whole layer, not per channel


def test_sensitivity_table_and_allocation():
    from edgekit.converters.prune.budget import prune_by_sensitivity
    from edgekit.converters.prune.sensitivity import analyse, format_table

    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    m = onnx.load(DIGITS)
    table = analyse(m, data["x_test"][:60], data["y_test"][:60])
    assert len(table) == len(find_groups(m)) and "r=0.5" in format_table(table)
    for s in table:  # pruning more never saves fewer MACs (the 25% step of a 16-channel group rounds to none)
        saved = [s.macs_saved[r] for r in sorted(s.macs_saved)]
        assert saved == sorted(saved) and saved[-1] > 0
    pruned, ratios, fraction = prune_by_sensitivity(m, 0.7, data["x_test"][:60], data["y_test"][:60])
    assert ratios and fraction < 1
    onnx.checker.check_model(pruned)


def test_sensitivity_allocation_spends_the_budget_where_it_hurts_least():
    """Issue 26: inverting the allocation (budget spent where it hurts most) passed every test."""
    from edgekit.converters.prune.sensitivity import Sensitivity, allocate

    saved = {0.25: 100, 0.5: 200}
    robust = Sensitivity("robust", saved, {0.25: 59.9, 0.5: 59.8}, dense=60.0)
    fragile = Sensitivity("fragile", saved, {0.25: 30.0, 0.5: 10.0}, dense=60.0)
    assert allocate([fragile, robust], 200) == {"robust": 0.5}
    assert allocate([fragile, robust], 300) == {"robust": 0.5, "fragile": 0.25}


def test_lowrank_factorisation(tmp_path):
    m = model(
        [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w", "b"], ["y"], transB=1)],
        {"x": (2, 64)},
        {"y": None},
        {"w": (rand(48, 4, seed=1) @ rand(4, 64, seed=2)).astype(np.float32), "b": rand(48, seed=3)},
    )
    from edgekit.converters.prune.lowrank import factorize

    low, report = factorize(m, energy=0.999)
    assert list(report.values()) == [(4, 48)]  # a rank-4 matrix is found to be rank 4
    onnx.checker.check_model(low)
    convert(low, tmp_path / "l.tflite")
    assert verify(m, tmp_path / "l.tflite", samples=4).min_sqnr_db > 60  # same function as the dense model
    with pytest.raises(InputError, match="between 0 and 1"):
        factorize(m, energy=1.5)


def _onnx_outputs(m: onnx.ModelProto, x: np.ndarray, tensors: list[str] | None = None) -> list[np.ndarray]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    if tensors:
        del probe.graph.output[:]
        probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runs = [session.run(tensors, {name: v[None]}) for v in x]
    return [np.concatenate([r[i] for r in runs]) for i in range(len(runs[0]))]


def test_bias_correction_recovers_the_pruned_digits_model():
    """50% of the channels pruned, no training: bias correction on the calibration split brings the
    output closer to the dense model's and the accuracy back up, on the held-out split."""
    from edgekit.converters.prune import correct_bias
    from edgekit.converters.verification import sqnr_db

    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    dense = onnx.load(DIGITS)
    pruned = prune_channels(dense, 0.5)
    corrected = correct_bias(dense, pruned, data["x_calib"])
    onnx.checker.check_model(corrected)
    x, y = data["x_test"], data["y_test"]
    (reference,), (plain,), (fixed,) = (_onnx_outputs(m, x) for m in (dense, pruned, corrected))
    figures = {
        "sqnr_db": tuple(round(float(sqnr_db(reference, o)), 2) for o in (plain, fixed)),
        "accuracy": tuple(round(float(np.mean(o.argmax(1) == y)), 4) for o in (plain, fixed)),
    }
    print(f"digits, 50% channels pruned (no correction -> bias-corrected), held-out: {figures}")
    assert figures["sqnr_db"][1] > figures["sqnr_db"][0] + 1.0
    assert figures["accuracy"][1] > figures["accuracy"][0] + 0.1
    # the consumers' per-channel output means on the calibration samples now match the dense ones
    from edgekit.converters.prune.channels import kept_channels
    from edgekit.converters.prune.recovery import pruned_consumers

    consumers = [n.output[0] for n in pruned_consumers(dense, corrected)]
    assert len(consumers) == 3
    kept = kept_channels(corrected)
    calib = data["x_calib"]
    for tensor, want, got in zip(
        consumers, _onnx_outputs(dense, calib, consumers), _onnx_outputs(corrected, calib, consumers), strict=True
    ):
        want = want.mean(axis=tuple(i for i in range(want.ndim) if i != 1))
        want = want[kept[tensor]] if tensor in kept else want
        got = got.mean(axis=tuple(i for i in range(got.ndim) if i != 1))
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_bias_correction_creates_missing_biases(tmp_path):
    from edgekit.converters.prune import correct_bias

    m = residual_cnn()  # no Conv has a bias
    pruned = prune_channels(m, 0.5)
    samples = np.random.default_rng(0).standard_normal((16, 4, 8, 8)).astype(np.float32)
    corrected = correct_bias(m, pruned, samples)
    onnx.checker.check_model(corrected)
    biased = {n.input[1]: n.input[2] for n in corrected.graph.node if n.op_type == "Conv" and len(n.input) > 2}
    assert {"w2", "w4"} <= set(biased) and "fc" not in biased  # the consumers of pruned channels
    convert(corrected, tmp_path / "c.tflite")
    assert verify(corrected, tmp_path / "c.tflite", samples=4).min_sqnr_db > 60
    # a model pruned elsewhere (no record of the kept channels) is refused rather than misaligned
    foreign = onnx.ModelProto()
    foreign.CopyFrom(pruned)
    del foreign.metadata_props[:]
    with pytest.raises(InputError, match="line up"):
        correct_bias(m, foreign, samples)


def test_cli_bias_correct(tmp_path):
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    np.save(tmp_path / "calib.npy", data["x_calib"])
    out = tmp_path / "p.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "prune", DIGITS, "-o", str(out), "--ratio", "0.5"]
        + ["--bias-correct", "--data", str(tmp_path / "calib.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bias correction on 200 samples" in result.stdout and out.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "edgekit", "prune", DIGITS, "-o", str(tmp_path / "q.onnx"), "--ratio", "0.5"]
        + ["--bias-correct"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--data" in bad.stderr and not (tmp_path / "q.onnx").exists()


def _edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=300)


def test_convert_with_pruning(tmp_path):
    """edgekit convert --prune-macs: the pruned model is what gets converted and verified."""
    from ai_edge_litert.interpreter import Interpreter

    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    np.save(tmp_path / "calib.npy", data["x_calib"])
    np.save(tmp_path / "test.npy", data["x_test"][:50])
    common = ["--quantize", "int8", "--calibration", str(tmp_path / "calib.npy")]
    dense = _edgekit("convert", DIGITS, "-o", str(tmp_path / "dense.tflite"), *common)
    assert dense.returncode == 0, dense.stderr
    pruned = _edgekit(
        "convert",
        DIGITS,
        "-o",
        str(tmp_path / "pruned.tflite"),
        *common,
        *("--prune-macs", "0.5", "--prune-criterion", "l2", "--prune-bias-correct"),
        *("--verify", "--data", str(tmp_path / "test.npy"), "--report", str(tmp_path / "r.json")),
    )
    assert pruned.returncode == 0, pruned.stderr
    assert "bias-corrected" in pruned.stdout and "SQNR" in pruned.stdout
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pruning"]["macs_pruned"] <= 0.5 * report["pruning"]["macs_dense"]
    assert report["outputs"][0]["sqnr_db"] > 20  # the int8 model against the pruned ONNX it came from
    assert (tmp_path / "pruned.tflite").stat().st_size < (tmp_path / "dense.tflite").stat().st_size
    interpreter = Interpreter(model_path=str(tmp_path / "pruned.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], data["x_test"][:1].transpose(0, 2, 3, 1).astype(inp["dtype"]))
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 10)
    ratio = _edgekit("convert", DIGITS, "-o", str(tmp_path / "r.tflite"), "--prune-ratio", "0.25")
    assert ratio.returncode == 0 and "pruned 25.0% of the channels" in ratio.stdout


def test_clustering_keeps_magnitude_zeros():
    """Sparsity and clustering compound: zeros stay zero and count as one of the N values."""
    sparse, _ = magnitude_prune(onnx.load(DIGITS), 0.8)
    both = cluster_weights(sparse, 8)
    weights = {n.input[1] for n in both.graph.node if n.op_type in ("Conv", "Gemm")}
    before = {i.name: onnx.numpy_helper.to_array(i) for i in sparse.graph.initializer if i.name in weights}
    checked = 0
    for init in both.graph.initializer:
        if init.name not in weights:
            continue
        w, zeros = onnx.numpy_helper.to_array(init), before[init.name] == 0
        assert (w[zeros] == 0).all() and (w[~zeros] != 0).mean() > 0.9, init.name
        rows = w.reshape(w.shape[0], -1)
        assert max(np.unique(row).size for row in rows) <= 8, init.name
        checked += 1
    assert checked == 5


def test_convert_with_sparsity_and_clusters(tmp_path):
    """edgekit convert --prune-sparsity / --prune-clusters: int8 keeps the zeros and the shared
    values, the file compresses smaller than the dense one, and --verify also compares the
    result with the unpruned model on the same inputs, which shows what one-shot sparsity costs."""
    import json
    import lzma

    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    np.save(tmp_path / "calib.npy", data["x_calib"])
    np.save(tmp_path / "test.npy", data["x_test"])
    common = ["--quantize", "int8", "--calibration", str(tmp_path / "calib.npy")]
    verify = ["--verify", "--data", str(tmp_path / "test.npy"), "--report", str(tmp_path / "r.json")]
    dense = _edgekit("convert", DIGITS, "-o", str(tmp_path / "dense.tflite"), *common)
    assert dense.returncode == 0, dense.stderr
    unpruned_top1 = {}
    for sparsity in ("0.3", "0.8"):
        out = tmp_path / f"s{sparsity}.tflite"
        args = ("--prune-sparsity", sparsity, "--prune-clusters", "16")
        small = _edgekit("convert", DIGITS, "-o", str(out), *common, *args, *verify)
        assert small.returncode == 0, small.stderr
        assert f"zeroed {float(sparsity):.0%} of the weights" in small.stdout and "compressed: xz" in small.stdout
        assert "against the unpruned digits_cnn.onnx" in small.stdout
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["pruning"]["sparsity"] == float(sparsity) and report["pruning"]["clusters"] == 16
        assert report["outputs"][0]["sqnr_db"] > 20  # int8 against the compressed ONNX it came from
        unpruned_top1[sparsity] = report["pruning"]["outputs_vs_unpruned"][0]["top1_agreement"]
        int8 = _int8_weights(out)
        total = sum(w.size for w, _ in int8.values())
        assert sum(int((w == 0).sum()) for w, _ in int8.values()) >= float(sparsity) * total - 1
        for w, axis in int8.values():
            rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
            assert max(np.unique(row).size for row in rows) <= 16
        xz = [len(lzma.compress((tmp_path / p).read_bytes())) for p in ("dense.tflite", out.name)]
        assert xz[1] < 0.95 * xz[0], xz
    # on the 8k-parameter sample, 30% one-shot keeps the dense model's answers; 80% needs training
    assert unpruned_top1["0.3"] > 0.93 and unpruned_top1["0.8"] < 0.5, unpruned_top1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune-sparsity", "1"], "--prune-sparsity 1 must lie strictly between 0 and 1"),
        (["--prune-sparsity", "-0.2"], "--prune-sparsity -0.2 must lie strictly between 0 and 1"),
        (["--prune-clusters", "1"], "--prune-clusters 1 must be between 2 and 256"),
        (["--prune-clusters", "16", "--equalize"], "would undo --prune-clusters"),
        (["--prune-ratio", "1.5"], "--prune-ratio 1.5 must lie strictly between 0 and 1"),
        (["--prune-ratio", "0"], "--prune-ratio 0 must lie strictly between 0 and 1"),
        (["--prune-macs", "1"], "--prune-macs 1 must lie strictly between 0 and 1"),
        (["--prune-ratio", "0.5", "--prune-bias-correct"], "--calibration"),
        (["--prune-bias-correct"], "--prune-ratio R or --prune-macs F"),
        (["--prune-ratio", "0.5", "--prune-allocation", "latency"], "goes with --prune-macs F"),
    ],
)
def test_convert_with_bad_pruning_options(tmp_path, args, message):
    out = tmp_path / "o.tflite"
    result = _edgekit("convert", DIGITS, "-o", str(out), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
