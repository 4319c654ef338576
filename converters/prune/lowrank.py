"""Low-rank factorisation: a Gemm, or a 1x1 Conv, whose weight matrix is well approximated by
rank r becomes two thinner layers (SVD: W ~ (U_r S_r) V_r^T)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgekit.errors import InputError, ParameterError


def _rank(singular: np.ndarray, energy: float | None, rank_fraction: float | None) -> int:
    if rank_fraction is not None:
        return max(1, int(round(rank_fraction * singular.size)))
    share = np.cumsum(singular**2) / max(float((singular**2).sum()), 1e-30)
    return int(np.searchsorted(share, energy) + 1)


def _weight_matrix(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, dict] | None:
    """The [out, in] weight matrix and the attributes of a Gemm (transB=1 or 0, not transA) or a
    1x1, group-1, stride-1 Conv with constant weights; None for any other node."""
    weight = inits.get(node.input[1]) if len(node.input) > 1 else None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if weight is None:
        return None
    w = numpy_helper.to_array(weight)
    if node.op_type == "Gemm" and not attrs.get("transA", 0) and w.ndim == 2:
        return (w if attrs.get("transB", 0) else w.T), attrs
    if (
        node.op_type == "Conv"
        and w.ndim == 4
        and w.shape[2:] == (1, 1)
        and attrs.get("group", 1) == 1
        and all(s == 1 for s in attrs.get("strides", [1, 1]))
    ):
        return w[:, :, 0, 0], attrs
    return None


def _two_layers(
    out: onnx.ModelProto, node: onnx.NodeProto, name: str, attrs: dict, first: np.ndarray, second: np.ndarray
) -> list[onnx.NodeProto]:
    """``node`` as two layers of its kind, ``first`` [r, in] then ``second`` [out, r] (which takes
    the bias), their weights added to ``out``."""
    mid = f"{name}/lowrank"
    f_name, s_name = f"{name}/lowrank_in", f"{name}/lowrank_out"
    rest = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
    if node.op_type == "Gemm":
        out.graph.initializer.extend([numpy_helper.from_array(first, f_name), numpy_helper.from_array(second, s_name)])
        return [
            helper.make_node("Gemm", [node.input[0], f_name], [mid], name=f"{name}_a", transB=1),
            helper.make_node(
                "Gemm",
                [mid, s_name, *rest],
                list(node.output),
                name=f"{name}_b",
                transB=1,
                beta=float(attrs.get("beta", 1.0)),
                alpha=float(attrs.get("alpha", 1.0)),
            ),
        ]
    out.graph.initializer.extend(
        [
            numpy_helper.from_array(first[:, :, None, None], f_name),
            numpy_helper.from_array(second[:, :, None, None], s_name),
        ]
    )
    pads = attrs.get("pads")
    extra = {"pads": pads} if pads else {}
    return [
        helper.make_node("Conv", [node.input[0], f_name], [mid], name=f"{name}_a", **extra),
        helper.make_node("Conv", [mid, s_name, *rest], list(node.output), name=f"{name}_b"),
    ]


def factorize(
    model: onnx.ModelProto,
    energy: float | None = 0.9,
    rank_fraction: float | None = None,
    exclude: frozenset[str] = frozenset(),
) -> tuple[onnx.ModelProto, dict[str, tuple[int, int]]]:
    """Factorize every Gemm (transB=1 or 0) and 1x1 group-1 Conv where it saves parameters.
    Returns the model and, per layer, (rank, full rank)."""
    if energy is not None and not 0 < energy < 1:
        raise ParameterError("{energy} must lie strictly between 0 and 1, e.g. 0.9", energy=energy)
    if rank_fraction is not None and not 0 < rank_fraction < 1:
        raise ParameterError("{rank_fraction} must lie strictly between 0 and 1", rank_fraction=rank_fraction)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    report: dict[str, tuple[int, int]] = {}
    nodes = []
    for node in out.graph.node:
        name = node.name or node.output[0]
        found = None if name in exclude else _weight_matrix(node, inits)
        if found is None:
            nodes.append(node)
            continue
        matrix, attrs = found
        u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
        r = _rank(s, energy, rank_fraction)
        if r * sum(matrix.shape) >= matrix.size:
            nodes.append(node)
            continue
        first = (vt[:r]).astype(np.float32)  # [r, in]
        second = (u[:, :r] * s[:r]).astype(np.float32)  # [out, r]
        nodes.extend(_two_layers(out, node, name, attrs, first, second))
        report[name] = (r, min(matrix.shape))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.value_info[:]
    if not report:
        raise InputError("nothing to factorize: no Gemm or 1x1 Conv gains from a lower rank at this setting")
    return out, report
