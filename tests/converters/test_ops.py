"""Every lowering, one small model each, checked against onnxruntime on random inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand

N = helper.make_node
X = {"x": (1, 8, 10, 12)}


def indices_out(m):
    """``m`` with its output typed int64, as ArgMax/ArgMin make it."""
    m.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    return m


def conv_w(cout, cin, k, seed=1):
    return rand(cout, cin, k, k, seed=seed, scale=0.3)


CASES = {
    "conv_same": lambda: model(
        [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        X,
        {"y": None},
        {"w": conv_w(6, 8, 3), "b": rand(6, seed=2)},
    ),
    "conv_stride2_asym": lambda: model(
        [N("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[0, 1, 2, 0])], X, {"y": None}, {"w": conv_w(4, 8, 3)}
    ),
    "conv_dilated": lambda: model(
        [N("Conv", ["x", "w"], ["y"], dilations=[2, 2], pads=[2, 2, 2, 2])], X, {"y": None}, {"w": conv_w(4, 8, 3)}
    ),
    "conv_depthwise_mult2": lambda: model(
        [N("Conv", ["x", "w"], ["y"], group=8, pads=[1, 1, 1, 1])], X, {"y": None}, {"w": rand(16, 1, 3, 3, seed=3)}
    ),
    "conv_grouped": lambda: model(
        [N("Conv", ["x", "w"], ["y"], group=2)], X, {"y": None}, {"w": rand(6, 4, 1, 1, seed=4)}
    ),
    "conv_auto_pad_same": lambda: model(
        [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])], X, {"y": None}, {"w": conv_w(4, 8, 3)}
    ),
    "conv1d": lambda: model(
        [N("Conv", ["x", "w"], ["y"], pads=[1, 1])], {"x": (1, 8, 20)}, {"y": None}, {"w": rand(4, 8, 3, seed=5)}
    ),
    "conv_transpose": lambda: model(
        [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
        X,
        {"y": None},
        {"w": rand(8, 4, 3, 3, seed=6), "b": rand(4, seed=7)},
    ),
    "conv_transpose_valid": lambda: model(
        [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], X, {"y": None}, {"w": rand(8, 4, 2, 2, seed=6)}
    ),
    "gemm": lambda: model(
        [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w", "b"], ["y"], transB=1, alpha=0.5)],
        X,
        {"y": None},
        {"w": rand(10, 960, seed=8, scale=0.05), "b": rand(10, seed=9)},
    ),
    "gemm_noTransB": lambda: model(
        [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w"], ["y"])],
        X,
        {"y": None},
        {"w": rand(960, 7, seed=8, scale=0.05)},
    ),
    "matmul_const_3d": lambda: model(
        [N("MatMul", ["x", "w"], ["y"])], {"x": (1, 5, 16)}, {"y": None}, {"w": rand(16, 8, seed=10)}
    ),
    "matmul_dynamic": lambda: model(
        [N("Transpose", ["x"], ["t"], perm=[0, 2, 1]), N("MatMul", ["x", "t"], ["y"])], {"x": (2, 5, 16)}, {"y": None}
    ),
    "batchnorm_standalone": lambda: model(
        [N("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])],
        X,
        {"y": None},
        {"g": rand(8, seed=1), "b": rand(8, seed=2), "m": rand(8, seed=3), "v": np.abs(rand(8, seed=4)) + 0.5},
    ),
    "conv_bn_relu": lambda: model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
            N("Relu", ["n"], ["y"]),
        ],
        X,
        {"y": None},
        {
            "w": conv_w(6, 8, 3),
            "g": rand(6, seed=1),
            "b": rand(6, seed=2),
            "m": rand(6, seed=3),
            "v": np.abs(rand(6, seed=4)) + 0.5,
        },
    ),
    "relu": lambda: model([N("Relu", ["x"], ["y"])], X, {"y": None}),
    "clip_relu6": lambda: model(
        [N("Clip", ["x", "lo", "hi"], ["y"])],
        X,
        {"y": None},
        {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)},
    ),
    "clip_general": lambda: model(
        [N("Clip", ["x", "lo", "hi"], ["y"])],
        X,
        {"y": None},
        {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)},
    ),
    "clip_opset9": lambda: model([N("Clip", ["x"], ["y"], min=-0.2, max=0.3)], X, {"y": None}, opset=9),
    # bounds the graph computes: a log-mel's floor at its maximum less 80 dB (openwakeword's front end)
    "clip_to_computed_floor": lambda: model(
        [
            N("ReduceMax", ["x"], ["top"], keepdims=0),
            N("Sub", ["top", "range"], ["floor"]),
            N("Clip", ["x", "floor"], ["y"]),
        ],
        X,
        {"y": None},
        {"range": np.array(1.5, np.float32)},
    ),
    "clip_between_computed_bounds": lambda: model(
        [
            N("ReduceMin", ["x"], ["low"], keepdims=0),
            N("Mul", ["low", "half"], ["lo"]),
            N("Clip", ["x", "lo", "hi"], ["y"]),
        ],
        X,
        {"y": None},
        {"half": np.array(0.5, np.float32), "hi": np.array(0.7, np.float32)},
    ),
    "leaky_relu": lambda: model([N("LeakyRelu", ["x"], ["y"], alpha=0.2)], X, {"y": None}),
    "prelu": lambda: model([N("PRelu", ["x", "s"], ["y"])], X, {"y": None}, {"s": rand(8, 1, 1, seed=3)}),
    "sigmoid": lambda: model([N("Sigmoid", ["x"], ["y"])], X, {"y": None}),
    "hard_sigmoid": lambda: model([N("HardSigmoid", ["x"], ["y"], alpha=0.2, beta=0.4)], X, {"y": None}),
    "hard_swish": lambda: model([N("HardSwish", ["x"], ["y"])], X, {"y": None}, opset=14),
    "hard_swish_pattern": lambda: model(
        [N("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])], X, {"y": None}
    ),
    "tanh": lambda: model([N("Tanh", ["x"], ["y"])], X, {"y": None}),
    "elu": lambda: model([N("Elu", ["x"], ["y"])], X, {"y": None}),
    "elu_alpha": lambda: model([N("Elu", ["x"], ["y"], alpha=0.5)], X, {"y": None}),
    "gelu": lambda: model([N("Gelu", ["x"], ["y"])], X, {"y": None}, opset=20),
    "gelu_erf_pattern": lambda: model(
        [
            N("Div", ["x", "sq2"], ["d"]),
            N("Erf", ["d"], ["e"]),
            N("Add", ["e", "one"], ["a"]),
            N("Mul", ["x", "a"], ["m"]),
            N("Mul", ["m", "half"], ["y"]),
        ],
        X,
        {"y": None},
        {"sq2": np.array(1.4142135, np.float32), "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)},
    ),
    "erf_alone": lambda: model(
        [N("Mul", ["x", "k"], ["s"]), N("Erf", ["s"], ["y"])], X, {"y": None}, {"k": np.array(1.7, np.float32)}
    ),
    "reduce_l2": lambda: model(
        [N("ReduceL2", ["x"], ["n"], axes=[1], keepdims=1), N("Div", ["x", "n"], ["y"])], X, {"y": None}, opset=13
    ),
    "lp_normalization_channels": lambda: model([N("LpNormalization", ["x"], ["y"], axis=1)], X, {"y": None}),
    "lp_normalization_last": lambda: model([N("LpNormalization", ["x"], ["y"])], {"x": (1, 6, 16)}, {"y": None}),
    "lp_normalization_middle": lambda: model(
        [N("LpNormalization", ["x"], ["y"], axis=1)], {"x": (1, 6, 16)}, {"y": None}
    ),
    "expand": lambda: model(
        [
            N("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
            N("Expand", ["m", "s"], ["e"]),
            N("Add", ["x", "e"], ["y"]),
        ],
        X,
        {"y": None},
        {"s": np.array(list(X["x"]), np.int64)},
    ),
    "softmax_last": lambda: model([N("Softmax", ["x"], ["y"])], X, {"y": None}),
    "softmax_axis1": lambda: model([N("Softmax", ["x"], ["y"], axis=1)], X, {"y": None}),
    "softmax_opset11": lambda: model([N("Softmax", ["x"], ["y"], axis=1)], X, {"y": None}, opset=11),
    "add_broadcast": lambda: model([N("Add", ["x", "c"], ["y"])], X, {"y": None}, {"c": rand(8, 1, 1, seed=2)}),
    "sub_mul_div": lambda: model(
        [N("Sub", ["x", "c"], ["s"]), N("Mul", ["s", "x"], ["m"]), N("Div", ["m", "d"], ["y"])],
        X,
        {"y": None},
        {"c": rand(12, seed=2), "d": np.array(3.0, np.float32)},
    ),
    "div_tensor": lambda: model(
        [N("Sigmoid", ["x"], ["s"]), N("Add", ["s", "one"], ["p"]), N("Div", ["x", "p"], ["y"])],
        X,
        {"y": None},
        {"one": np.array(1.0, np.float32)},
    ),
    "sum_max_min_mean": lambda: model(
        [
            N("Relu", ["x"], ["r"]),
            N("Sum", ["x", "r", "x"], ["s"]),
            N("Max", ["s", "r"], ["m"]),
            N("Min", ["m", "x"], ["n"]),
            N("Mean", ["n", "s"], ["y"]),
        ],
        X,
        {"y": None},
    ),
    "pow_sqrt_reducemean_layernorm": lambda: model(
        [
            N("ReduceMean", ["x"], ["mu"], axes=[-1]),
            N("Sub", ["x", "mu"], ["c"]),
            N("Pow", ["c", "two"], ["p"]),
            N("ReduceMean", ["p"], ["var"], axes=[-1]),
            N("Add", ["var", "eps"], ["ve"]),
            N("Sqrt", ["ve"], ["sd"]),
            N("Div", ["c", "sd"], ["n"]),
            N("Mul", ["n", "g"], ["ng"]),
            N("Add", ["ng", "b"], ["y"]),
        ],
        {"x": (1, 6, 16)},
        {"y": None},
        {
            "two": np.array(2.0, np.float32),
            "eps": np.array(1e-5, np.float32),
            "g": rand(16, seed=3),
            "b": rand(16, seed=4),
        },
    ),
    "layer_normalization": lambda: model(
        [N("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
        {"x": (1, 6, 16)},
        {"y": None},
        {"g": rand(16, seed=3), "b": rand(16, seed=4)},
    ),
    "maxpool_same": lambda: model(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])], X, {"y": None}
    ),
    "maxpool_resnet_pads": lambda: model(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], X, {"y": None}
    ),
    "maxpool_ceil": lambda: model(
        [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], X, {"y": None}
    ),
    "avgpool_pads_exclude": lambda: model(
        [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])], X, {"y": None}
    ),
    "avgpool_pads_include": lambda: model(
        [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)],
        X,
        {"y": None},
    ),
    "global_pools": lambda: model(
        [N("GlobalAveragePool", ["x"], ["a"]), N("GlobalMaxPool", ["x"], ["m"]), N("Add", ["a", "m"], ["y"])],
        X,
        {"y": None},
    ),
    "lrn": lambda: model([N("LRN", ["x"], ["y"], size=5, alpha=1e-2, beta=0.75, bias=1.0)], X, {"y": None}),
    "lrn_beta1": lambda: model([N("LRN", ["x"], ["y"], size=3, alpha=1e-2, beta=1.0, bias=2.0)], X, {"y": None}),
    "concat_split": lambda: model(
        [
            N("Relu", ["x"], ["r"]),
            N("Concat", ["x", "r"], ["c"], axis=1),
            N("Split", ["c", "sp"], ["a", "b"], axis=1),
            N("Concat", ["b", "a"], ["y"], axis=1),
        ],
        X,
        {"y": None},
        {"sp": np.array([5, 11], np.int64)},
    ),
    "split_equal": lambda: model(
        [N("Split", ["x"], ["a", "b"], axis=2, num_outputs=2), N("Sub", ["a", "b"], ["y"])], X, {"y": None}, opset=18
    ),
    "slice": lambda: model(
        [N("Slice", ["x", "st", "en", "ax"], ["y"])],
        X,
        {"y": None},
        {"st": np.array([1, 2], np.int64), "en": np.array([7, 100], np.int64), "ax": np.array([1, 3], np.int64)},
    ),
    "slice_steps": lambda: model(
        [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
        X,
        {"y": None},
        {
            "st": np.array([0], np.int64),
            "en": np.array([10], np.int64),
            "ax": np.array([2], np.int64),
            "sp": np.array([2], np.int64),
        },
    ),
    "reshape_flatten_transpose": lambda: model(
        [N("Reshape", ["x", "s"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1]), N("Flatten", ["t"], ["y"])],
        X,
        {"y": None},
        {"s": np.array([1, 8, -1], np.int64)},
    ),
    "squeeze_unsqueeze": lambda: model(
        [N("GlobalAveragePool", ["x"], ["g"]), N("Squeeze", ["g", "ax"], ["s"]), N("Unsqueeze", ["s", "ax0"], ["y"])],
        X,
        {"y": None},
        {"ax": np.array([2, 3], np.int64), "ax0": np.array([0], np.int64)},
    ),
    "pad_constant": lambda: model(
        [N("Pad", ["x", "p", "v"], ["y"])],
        X,
        {"y": None},
        {"p": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), "v": np.array(0.5, np.float32)},
    ),
    # issue 26: ops the README lists that no test converted (Neg lowered as ABS went unnoticed)
    "neg": lambda: model([N("Neg", ["x"], ["y"])], X, {"y": None}),
    "abs": lambda: model([N("Abs", ["x"], ["y"])], X, {"y": None}),
    "exp": lambda: model([N("Exp", ["x"], ["y"])], X, {"y": None}),
    "log": lambda: model(
        [N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["p"]), N("Log", ["p"], ["y"])],
        X,
        {"y": None},
        {"one": np.array(1.0, np.float32)},
    ),
    "reciprocal": lambda: model(
        [N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["p"]), N("Reciprocal", ["p"], ["y"])],
        X,
        {"y": None},
        {"one": np.array(1.0, np.float32)},
    ),
    "log_softmax": lambda: model([N("LogSoftmax", ["x"], ["y"], axis=-1)], X, {"y": None}),
    "cast_int32_roundtrip": lambda: model(
        [N("Mul", ["x", "four"], ["m"]), N("Cast", ["m"], ["i"], to=6), N("Cast", ["i"], ["y"], to=1)],
        X,
        {"y": None},
        {"four": np.array(4.0, np.float32)},
    ),
    "reduce_min": lambda: model([N("ReduceMin", ["x"], ["y"], axes=[2, 3], keepdims=1)], X, {"y": None}),
    "pad_edge": lambda: model(  # edge padding of 1 is MIRROR_PAD SYMMETRIC; wider is refused, by name
        [N("Pad", ["x", "p"], ["y"], mode="edge")],
        X,
        {"y": None},
        {"p": np.array([0, 0, 1, 1, 0, 0, 1, 0], np.int64)},
    ),
    "upsample_opset9": lambda: model(
        [N("Upsample", ["x", "sc"], ["y"], mode="nearest")],
        X,
        {"y": None},
        {"sc": np.array([1, 1, 2, 2], np.float32)},
        opset=9,
    ),
    "pad_reflect": lambda: model(
        [N("Pad", ["x", "p"], ["y"], mode="reflect")],
        X,
        {"y": None},
        {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
    ),
    "resize_nearest_2x": lambda: model(
        [
            N(
                "Resize",
                ["x", "", "sc"],
                ["y"],
                mode="nearest",
                nearest_mode="floor",
                coordinate_transformation_mode="asymmetric",
            )
        ],
        X,
        {"y": None},
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    ),
    "resize_bilinear_half_pixel": lambda: model(
        [N("Resize", ["x", "", "sc"], ["y"], mode="linear")], X, {"y": None}, {"sc": np.array([1, 1, 2, 2], np.float32)}
    ),
    "resize_bilinear_align": lambda: model(
        [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", coordinate_transformation_mode="align_corners")],
        X,
        {"y": None},
        {"sz": np.array([1, 8, 17, 23], np.int64)},
    ),
    "reduce_ops": lambda: model(
        [
            N("ReduceMax", ["x"], ["a"], axes=[1], keepdims=1),
            N("ReduceSum", ["x", "ax"], ["b"]),
            N("Add", ["a", "b"], ["y"]),
        ],
        X,
        {"y": None},
        {"ax": np.array([1], np.int64)},
        opset=13,
    ),
    "gather_scalar": lambda: model(
        [N("Gather", ["x", "i"], ["y"], axis=1)], X, {"y": None}, {"i": np.array(3, np.int64)}
    ),
    "gather_vector": lambda: model(
        [N("Gather", ["x", "i"], ["y"], axis=3)], X, {"y": None}, {"i": np.array([0, 5, -1], np.int64)}
    ),
    "shape_subgraph_folded": lambda: model(
        [
            N("Shape", ["x"], ["s"]),
            N("Gather", ["s", "zero"], ["n"]),
            N("Unsqueeze", ["n", "ax"], ["nu"]),
            N("Concat", ["nu", "minus1"], ["shape"], axis=0),
            N("Reshape", ["x", "shape"], ["y"]),
        ],
        X,
        {"y": None},
        {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64)},
    ),
    "attention_block": lambda: model(
        [
            N("MatMul", ["x", "wq"], ["q"]),
            N("MatMul", ["x", "wk"], ["k"]),
            N("MatMul", ["x", "wv"], ["v"]),
            N("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
            N("MatMul", ["q", "kt"], ["s"]),
            N("Mul", ["s", "scale"], ["ss"]),
            N("Softmax", ["ss"], ["p"], axis=-1),
            N("MatMul", ["p", "v"], ["y"]),
        ],
        {"x": (1, 6, 16)},
        {"y": None},
        {
            "wq": rand(16, 16, seed=1, scale=0.3),
            "wk": rand(16, 16, seed=2, scale=0.3),
            "wv": rand(16, 16, seed=3, scale=0.3),
            "scale": np.array(0.25, np.float32),
        },
    ),
    "identity_dropout": lambda: model(
        [N("Identity", ["x"], ["i"]), N("Dropout", ["i"], ["d"]), N("Relu", ["d"], ["y"])], X, {"y": None}
    ),
    "space_to_depth": lambda: model(
        [N("SpaceToDepth", ["x"], ["s"], blocksize=2), N("Conv", ["s", "w"], ["y"])],
        X,
        {"y": None},
        {"w": conv_w(5, 32, 1)},
    ),
    "depth_to_space_dcr": lambda: model(
        [N("Conv", ["x", "w"], ["c"]), N("DepthToSpace", ["c"], ["y"], blocksize=2, mode="DCR")],
        X,
        {"y": None},
        {"w": conv_w(12, 8, 1)},
    ),
    "argmax_channels": lambda: indices_out(
        model(
            [N("Conv", ["x", "w"], ["c"]), N("ArgMax", ["c"], ["y"], axis=1, keepdims=0)],
            X,
            {"y": (1, 10, 12)},
            {"w": conv_w(5, 8, 1)},
        )
    ),
    "argmax_keepdims": lambda: indices_out(model([N("ArgMax", ["x"], ["y"], axis=-1)], X, {"y": (1, 8, 10, 1)})),
    "argmin_channels": lambda: indices_out(
        model([N("ArgMin", ["x"], ["y"], axis=1, keepdims=1)], X, {"y": (1, 1, 10, 12)})
    ),
    "instance_norm": lambda: model(
        [N("InstanceNormalization", ["x", "s", "b"], ["y"])],
        X,
        {"y": None},
        {"s": rand(8, seed=1), "b": rand(8, seed=2)},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_onnxruntime(name, tmp_path):
    m = CASES[name]()
    out = tmp_path / f"{name}.tflite"
    result = convert(m, out)
    report = verify(m, out, samples=4)
    assert report.min_sqnr_db >= 60, f"{name}: {report.table()}\nops: {result.ops}"


def test_lp_normalization_int8_on_the_edge_tpu_matches_onnxruntime(tmp_path):
    """An embedding head (Gemm -> LpNormalization): L2_NORMALIZATION runs in int8 with the output
    parameters its kernel requires (1/128, 0; LiteRT refuses others), and the Edge TPU maps it."""
    m = model(
        [N("Gemm", ["x", "w", "b"], ["e"], transB=1), N("LpNormalization", ["e"], ["y"], axis=1)],
        {"x": (1, 32)},
        {"y": None},
        {"w": rand(16, 32, seed=1, scale=0.3), "b": rand(16, seed=2)},
    )
    data = rand(64, 32, seed=3)
    out = tmp_path / "embedding.tflite"
    result = convert(m, out, quantize="int8", calibration=data, target="edgetpu", io_type="int8")
    assert result.ops == {"FULLY_CONNECTED": 1, "L2_NORMALIZATION": 1}
    assert result.edgetpu.fully_mapped, result.edgetpu.summary()
    assert verify(m, out, data={"x": data[:8]}).min_sqnr_db >= 30


def test_argmax_head_int8_matches_onnxruntime_and_the_edge_tpu_maps_the_rest(tmp_path):
    """A segmentation head (Conv -> ArgMax over the classes): ARG_MAX reads the int8 logits
    directly (version 2); its indices (int32, as every integer the converter writes) equal
    onnxruntime's fp32 ones wherever the two best logits are not within a quantization step; the
    Edge TPU maps the convolution and leaves ARG_MAX (which its compiler lacks) to the CPU."""
    import onnxruntime as ort

    m = indices_out(
        model(
            [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), N("ArgMax", ["c"], ["y"], axis=1, keepdims=0)],
            X,
            {"y": (1, 10, 12)},
            {"w": conv_w(5, 8, 3), "b": rand(5, seed=4)},
        )
    )
    data = rand(32, 8, 10, 12, seed=3)
    out = tmp_path / "head.tflite"
    result = convert(m, out, quantize="int8", calibration=data, target="edgetpu", io_type="int8")
    assert result.ops.get("ARG_MAX") == 1 and "DEQUANTIZE" not in result.ops, result.ops
    assert [node.op for node, _ in result.edgetpu.on_cpu] == ["ARG_MAX"], result.edgetpu.summary()
    assert {node.op for node in result.edgetpu.mapped} >= {"CONV_2D"}, result.edgetpu.summary()

    from edgekit.converters.harness import TFLiteRunner

    x = rand(4, 8, 10, 12, seed=7)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(4)])
    got = np.concatenate([TFLiteRunner(out.read_bytes())({"x": x[i : i + 1]})["y"] for i in range(4)])
    assert got.dtype == np.int32 and got.shape == expected.shape
    assert np.mean(got == expected) >= 0.95
