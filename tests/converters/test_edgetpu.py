"""Edge TPU rule checks on hand-built graphs."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, QuantParams
from edgekit.converters.tflite.edgetpu import check_edgetpu


def _int8_graph(ops: list[str], shape=(1, 8, 8, 4), dtype=np.int8) -> Graph:
    g = Graph()
    q = QuantParams(0.1, 0)
    g.add_tensor("t0", shape, dtype, quant=q)
    for i, op in enumerate(ops):
        g.add_tensor(f"t{i + 1}", shape, dtype, quant=q)
        g.add_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"n{i}")
    g.inputs, g.outputs = ["t0"], [f"t{len(ops)}"]
    return g


def test_all_supported_ops_map():
    report = check_edgetpu(_int8_graph(["RELU", "RELU6", "LOGISTIC"]))
    assert report.fully_mapped and len(report.mapped) == 3


def test_first_unsupported_op_sends_the_rest_to_the_cpu():
    report = check_edgetpu(_int8_graph(["RELU", "ELU", "RELU", "RELU6"]))
    assert [n.op for n in report.mapped] == ["RELU"]
    assert [n.op for n, _ in report.on_cpu] == ["ELU", "RELU", "RELU6"]
    assert "not supported" in report.on_cpu[0][1] and "after an unmapped op" in report.on_cpu[1][1]


def test_float_tensors_are_refused():
    report = check_edgetpu(_int8_graph(["RELU"], dtype=np.float32))
    assert not report.fully_mapped and "float32" in report.on_cpu[0][1]


def test_more_than_three_innermost_dims():
    report = check_edgetpu(_int8_graph(["RELU"], shape=(2, 8, 8, 4)))
    assert "3 innermost" in report.on_cpu[0][1]
    assert check_edgetpu(_int8_graph(["RELU"], shape=(1, 1, 8, 8, 4))).fully_mapped


def test_l2_normalization_maps_at_its_int8_version():
    """int8 L2_NORMALIZATION is kernel version 2 (op table), the highest the compiler maps."""
    assert check_edgetpu(_int8_graph(["L2_NORMALIZATION"])).fully_mapped


def test_an_op_version_newer_than_the_compiler_takes_stays_on_the_cpu():
    report = check_edgetpu(_int8_graph(["TRANSPOSE"], shape=(1, 1, 8, 8, 4)))  # 5-D: version 5
    assert "op version 5 is newer than the compiler accepts (2)" in report.on_cpu[0][1]


def test_a_convolution_with_a_real_filter_maps():
    """The 3-innermost-dimensions rule is the compiler's for activations: an int8 CONV_2D whose
    filter is [8, 3, 3, 4] maps (every convolution of a real model was reported as left to the
    CPU by it)."""
    g = _int8_graph([])
    g.add_const(np.ones((8, 3, 3, 4), np.int8), "filter")
    g.tensors["filter"].quant = QuantParams(np.full(8, 0.01), np.zeros(8, np.int64), 0)
    g.add_const(np.zeros(8, np.int32), "bias")
    g.add_tensor("y", (1, 8, 8, 8), np.int8, quant=QuantParams(0.1, 0))
    attrs = {"padding": "SAME", "stride_w": 1, "stride_h": 1, "fused_activation_function": "NONE"}
    g.add_node("CONV_2D", ["t0", "filter", "bias"], ["y"], attrs, name="conv")
    g.outputs = ["y"]
    report = check_edgetpu(g)
    assert report.fully_mapped, report.on_cpu
