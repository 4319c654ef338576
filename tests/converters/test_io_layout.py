"""Issue 25: a model that already takes NHWC (tf2onnx from Keras starts with Transpose(0, 3, 1, 2))
keeps its layout; it used to be "converted" to NHWC again and silently took [1, H, C, W].
``--io-layout`` auto / nhwc / keep (and ``--nchw-io``, the old name of keep) are checked against
onnxruntime with the transposes each layout implies written out here, not read from the model."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from edgekit.cli import main as edgekit
from edgekit.converters import convert, verify
from edgekit.converters.verification import TFLiteRunner, sqnr_db

NCHW_TO_NHWC = (0, 2, 3, 1)


def keras_like(
    h: int = 16, w: int = 12, feature_map: bool = False, softmax_head: bool = False, rescaling: bool = False
) -> object:
    """As tf2onnx writes a Keras CNN: NHWC input, Transpose to NCHW, conv, ReLU, pooling, dense;
    with ``feature_map`` also the ReLU's output, transposed back to NHWC as tf2onnx writes it, and
    with ``softmax_head`` a softmax over its channels after that transpose (MTCNN's face map); with
    ``rescaling`` a Keras Rescaling layer (x * 1/127.5 - 1) before the first transpose."""
    rng = np.random.default_rng(0)
    image = "keras_tensor"
    nodes = []
    if rescaling:
        nodes.append(helper.make_node("Mul", [image, "inv_scale"], ["scaled"]))
        nodes.append(helper.make_node("Sub", ["scaled", "one"], ["rescaled"]))
        image = "rescaled"
    nodes += [
        helper.make_node("Transpose", [image], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "d"], ["logits"], transB=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])]
    if feature_map and softmax_head:
        nodes.append(helper.make_node("Transpose", ["r"], ["r_nhwc"], perm=list(NCHW_TO_NHWC)))
        nodes.append(helper.make_node("Softmax", ["r_nhwc"], ["features"], axis=3))
    elif feature_map:
        nodes.append(helper.make_node("Transpose", ["r"], ["features"], perm=list(NCHW_TO_NHWC)))
    if feature_map:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, h, w, 8]))
    graph = helper.make_graph(
        nodes,
        "keras",
        [helper.make_tensor_value_info("keras_tensor", TensorProto.FLOAT, [1, h, w, 3])],
        outputs,
        [
            numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
            numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "d"),
            numpy_helper.from_array(np.array(1 / 127.5, np.float32), "inv_scale"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("rescaling", [False, True], ids=["transpose_first", "rescaling_first"])
def test_an_nhwc_input_keeps_its_layout(tmp_path, rescaling):
    """Behind a Keras Rescaling layer the input was once taken for NCHW: [1,16,12,3] became
    [1,12,3,16]."""
    model = keras_like(rescaling=rescaling)
    out = tmp_path / "keras.tflite"
    result = convert(model, out)
    runner = TFLiteRunner(out.read_bytes())
    assert runner.tensors["keras_tensor"].shape == (1, 16, 12, 3)  # not (1, 16, 3, 12)
    assert result.io_layout["keras_tensor"].layout == "NHWC"
    assert str(result.io_layout["keras_tensor"]) == (
        "input  keras_tensor: NHWC [1,16,12,3] (NHWC in the ONNX model already: the graph transposes it)"
    )
    assert result.transposes == 0 and result.partitions == 1, result.ops
    assert verify(model, out, samples=4).min_sqnr_db >= 60


def keras_one_channel() -> object:
    """As tf2onnx writes a Keras model on a one-channel input (openwakeword's speech embedding,
    [N, frames, mels, 1]): Pad of the width, then a Reshape to NCHW where a Transpose would be,
    since the channel axis that moves has size 1; conv, ReLU, and Transpose back to NHWC."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Pad", ["spectrogram", "pads"], ["padded"]),
        helper.make_node("Reshape", ["padded", "nchw"], ["t"]),
        helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["features"], perm=list(NCHW_TO_NHWC)),
    ]
    graph = helper.make_graph(
        nodes,
        "keras_one_channel",
        [helper.make_tensor_value_info("spectrogram", TensorProto.FLOAT, [1, 16, 12, 1])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 16, 14, 4])],
        [
            numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 1, 0], np.int64), "pads"),
            numpy_helper.from_array(np.array([1, 1, 16, 14], np.int64), "nchw"),
            numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_one_channel_nhwc_input_read_through_a_reshape_keeps_its_layout(tmp_path):
    """openwakeword's embedding model took [1,32,1,76] for its [1,76,32,1] input: the buffer its
    users feed failed in XNNPACK, a reshaped one ran and was wrong (max error 12.2)."""
    model = keras_one_channel()
    out = tmp_path / "one_channel.tflite"
    result = convert(model, out)
    assert result.io_layout["spectrogram"].layout == "NHWC" and result.partitions == 1
    x = np.random.default_rng(4).uniform(-1, 1, (1, 16, 12, 1)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"spectrogram": x}
    )[0]
    runner = Interpreter(model_path=str(out)).get_signature_runner()
    got = next(iter(runner(spectrogram=x).values()))
    assert got.shape == expected.shape and sqnr_db(expected, got) >= 60


def test_an_nhwc_input_in_int8_stays_in_one_partition(tmp_path):
    model = keras_like()
    calibration = np.random.default_rng(1).uniform(0, 1, (16, 1, 16, 12, 3)).astype(np.float32)
    out = tmp_path / "keras_int8.tflite"
    result = convert(model, out, quantize="int8", calibration=calibration)
    assert result.partitions == 1 and result.transposes == 0, result.ops
    assert verify(model, out, data={"keras_tensor": calibration[:4]}).min_sqnr_db >= 25


def nchw_model() -> object:
    """As torch writes a CNN: NCHW image in, NCHW feature map out; plus a 4-D output that no
    convolution makes (a vector reshaped), whose layout the graph does not tell."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["features"]),
        helper.make_node("Reshape", ["vector", "grid_shape"], ["g"]),
        helper.make_node("Relu", ["g"], ["grid"]),
    ]
    graph = helper.make_graph(
        nodes,
        "torch",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 6]),
            helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 24]),
        ],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4, 8, 6]),
            helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 2, 3, 4]),
        ],
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([1, 2, 3, 4], np.int64), "grid_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run_tflite(path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The .tflite model run as it is, on arrays already in the layout it takes."""
    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")
    return runner(**feeds)


def assert_matches_onnxruntime(model, tflite_path, tflite_perms: dict[str, tuple[int, ...]]) -> None:
    """onnxruntime on ONNX-layout inputs against the .tflite model on the same inputs transposed by
    ``tflite_perms`` (ONNX -> .tflite layout; identity for names not given), outputs alike."""
    rng = np.random.default_rng(3)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in model.graph.input
    }
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    got = run_tflite(tflite_path, {n: np.transpose(v, tflite_perms.get(n, range(v.ndim))) for n, v in feeds.items()})
    for name, reference in expected.items():
        want = np.transpose(reference, tflite_perms.get(name, range(reference.ndim)))
        assert got[name].shape == want.shape, (name, got[name].shape, want.shape)
        assert sqnr_db(want, got[name]) >= 60, name


def test_auto_moves_nchw_io_to_nhwc_and_leaves_a_4d_output_no_convolution_makes(tmp_path):
    model, out = nchw_model(), tmp_path / "auto.tflite"
    result = convert(model, out)
    assert_matches_onnxruntime(model, out, {"image": NCHW_TO_NHWC, "features": NCHW_TO_NHWC})
    assert str(result.io_layout["image"]) == "input  image: NHWC [1,8,6,3] (NCHW in the ONNX model, transposed here)"
    assert result.io_layout["grid"].layout is None and "--io-layout nhwc" in result.io_layout["grid"].why
    assert str(result.io_layout["vector"]) == "input  vector: [1,24]"


def test_io_layout_nhwc_makes_every_4d_output_nhwc(tmp_path):
    model, out = nchw_model(), tmp_path / "nhwc.tflite"
    result = convert(model, out, io_layout="nhwc")
    assert_matches_onnxruntime(model, out, {"image": NCHW_TO_NHWC, "features": NCHW_TO_NHWC, "grid": NCHW_TO_NHWC})
    assert [d.layout for d in result.io_layout.values()] == ["NHWC", None, "NHWC", "NHWC"]
    assert verify(model, out, samples=2).min_sqnr_db >= 60


def test_io_layout_keep_leaves_every_io_as_in_onnx(tmp_path):
    model, out = nchw_model(), tmp_path / "keep.tflite"
    result = convert(model, out, io_layout="keep")
    assert_matches_onnxruntime(model, out, {})
    assert str(result.io_layout["features"]) == (
        "output features: NCHW [1,4,8,6] (as in the ONNX model: --io-layout keep)"
    )


@pytest.mark.parametrize("softmax_head", [False, True], ids=["transpose", "softmax_after_transpose"])
@pytest.mark.parametrize("io_layout", ["auto", "nhwc", "keep"])
def test_nhwc_io_in_onnx_stays_nhwc_whatever_the_option(tmp_path, io_layout, softmax_head):
    """With a softmax after the graph's own transpose, the output was once taken for NCHW and
    transposed again: [1,16,12,8] came out as [1,12,8,16], silently, and verification agreed."""
    model, out = keras_like(feature_map=True, softmax_head=softmax_head), tmp_path / f"{io_layout}.tflite"
    result = convert(model, out, io_layout=io_layout)
    assert_matches_onnxruntime(model, out, {})  # NHWC in ONNX: the .tflite takes and gives the same arrays
    assert result.io_layout["features"].layout == "NHWC" and result.transposes == 0, result.ops


def test_the_library_refuses_the_boolean_it_replaced(tmp_path):
    with pytest.raises(TypeError, match="io_layout"):
        convert(nchw_model(), tmp_path / "x.tflite", nhwc_io=False)


def test_cli_io_layout_keep_and_its_old_name_nchw_io(tmp_path, capsys):
    source = tmp_path / "torch.onnx"
    source.write_bytes(nchw_model().SerializeToString())
    keep, alias = tmp_path / "keep.tflite", tmp_path / "alias.tflite"
    assert edgekit(["convert", str(source), "-o", str(keep), "--io-layout", "keep"]) == 0
    summary = capsys.readouterr().out
    assert "input  image: NCHW [1,3,8,6] (as in the ONNX model: --io-layout keep)" in summary.splitlines()
    assert edgekit(["convert", str(source), "-o", str(alias), "--nchw-io"]) == 0
    capsys.readouterr()
    assert_matches_onnxruntime(nchw_model(), keep, {})
    assert_matches_onnxruntime(nchw_model(), alias, {})


def test_cli_verify_feeds_each_model_its_own_layout(tmp_path, capsys):
    """edgekit verify on an NHWC-input model: ONNX-layout data go to onnxruntime as they are and to
    the .tflite model as it takes them; a forced-NHWC output is transposed back before comparing."""
    keras, torch = tmp_path / "keras.onnx", tmp_path / "torch.onnx"
    keras.write_bytes(keras_like(feature_map=True).SerializeToString())
    torch.write_bytes(nchw_model().SerializeToString())
    data = tmp_path / "keras_tensor.npy"
    np.save(data, np.random.default_rng(4).standard_normal((3, 1, 16, 12, 3)).astype(np.float32))
    for source, io_layout in ((keras, "auto"), (keras, "keep"), (torch, "nhwc")):
        out = tmp_path / f"{source.stem}_{io_layout}.tflite"
        assert edgekit(["convert", str(source), "-o", str(out), "--io-layout", io_layout]) == 0
        assert edgekit(["verify", str(source), str(out), "--samples", "3", "--min-sqnr", "60"]) == 0
        if source == keras:
            assert edgekit(["verify", str(source), str(out), "--data", str(data), "--min-sqnr", "60"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("source", "io_layout", "moved"),
    [
        ("torch", "auto", {"image", "features"}),
        ("torch", "nhwc", {"image", "features", "grid"}),
        ("torch", "keep", set()),
        ("keras", "auto", set()),
        ("keras", "nhwc", set()),
    ],
)
def test_the_signature_read_from_the_file_is_what_convert_decided(tmp_path, source, io_layout, moved):
    """Issue 22: the layout convert writes is read back by edgekit.runtime's Signature (what the
    package manifest, the Session and the agent use), with the transposes written out above."""
    from edgekit.runtime.signature import Signature

    model = nchw_model() if source == "torch" else keras_like(feature_map=True)
    out = tmp_path / f"{source}_{io_layout}.tflite"
    result = convert(model, out, io_layout=io_layout)
    signature = Signature.from_model(out.name, out.read_bytes())
    tensors = {t.name: t for t in (*signature.inputs, *signature.outputs)}
    assert {name: t.layout for name, t in tensors.items()} == {n: d.layout for n, d in result.io_layout.items()}
    assert {name: t.shape for name, t in tensors.items()} == {n: d.shape for n, d in result.io_layout.items()}
    assert {name for name, t in tensors.items() if t.source_perm} == moved
    assert all(tensors[name].source_perm == NCHW_TO_NHWC for name in moved)
