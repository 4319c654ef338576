"""edgekit inspect MODEL: what is in a model and whether edgekit can convert it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgekit.commands._report import op_counts
from edgekit.commands._shapes import add_input_shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="an .onnx or .tflite file (none with --ops)")
    add_input_shape(parser)
    parser.add_argument("--ops", action="store_true", help="list every op type edgekit can lower and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.ops:
        from edgekit.converters.onnx.lowering import supported_ops

        ops = list(supported_ops())
        print(json.dumps({"supported_ops": ops}, indent=1) if args.json else "\n".join(ops))
        return 0
    if args.model.endswith(".tflite"):
        facts = _tflite_facts(args.model)
        report = _tflite_report
    else:
        facts = _onnx_facts(args)
        report = _onnx_report
    print(json.dumps(facts, indent=1) if args.json else report(facts))
    return 1 if facts.get("cannot_lower") else 0


def _check(args: argparse.Namespace) -> None:
    """Refuse what would do nothing: a model with --ops, shapes for a .tflite (its shapes are fixed)."""
    from edgekit.errors import InputError

    if args.ops and (args.model or args.input_shape):
        raise InputError("--ops lists the ops edgekit can lower and takes no model or --input-shape")
    if not args.ops and not args.model:
        raise InputError("give a model (an .onnx or .tflite file), or --ops for the ops edgekit can lower")
    if args.input_shape and args.model.endswith(".tflite"):
        raise InputError("--input-shape is for ONNX models: a .tflite's shapes are fixed in the file")


def _onnx_facts(args: argparse.Namespace) -> dict[str, Any]:
    from collections import Counter

    from edgekit.converters.ir.analysis import count_macs, count_params
    from edgekit.converters.onnx import frontend as onnx_frontend
    from edgekit.converters.onnx.lowering.driver import unsupported_nodes
    from edgekit.converters.pipeline import onnx_ir
    from edgekit.errors import ShapeError

    source = onnx_frontend.read_model(args.model)
    model = source.model
    shapes = onnx_frontend.parse_input_shapes(args.input_shape)
    onnx_frontend.check_input_shapes(model, shapes)  # as convert checks them: mistakes are refused
    facts: dict[str, Any] = {
        "model": args.model,
        "opset": onnx_frontend.default_opset(model),
        "sha256": source.sha256,
        "inputs": [
            {
                "name": vi.name,
                "shape": list(shapes.get(vi.name, onnx_frontend._dims(vi))),
                "dtype": str(onnx_frontend.input_dtype(vi)),
            }
            for vi in onnx_frontend.graph_inputs(model)
        ],
        "outputs": [{"name": vi.name, "shape": onnx_frontend._dims(vi)} for vi in model.graph.output],
    }
    try:
        graph = onnx_ir(source, shapes)
    except ShapeError as exc:
        facts["shapes_unknown"] = str(exc)
        facts["ops_before_folding"] = dict(Counter(n.op_type for n in model.graph.node).most_common())
        return facts
    facts["ops"] = dict(graph.op_histogram())
    facts["parameters"] = count_params(graph)
    facts["macs"] = count_macs(graph)
    facts["cannot_lower"] = [
        {"op": op, "count": n, "first_node": name, "reason": reason} for op, n, name, reason in unsupported_nodes(graph)
    ]
    return facts


def _onnx_report(facts: dict[str, Any]) -> str:
    lines = [f"model: {facts['model']}  (opset {facts['opset']}, sha256 {facts['sha256'][:16]}...)"]
    lines += [f"input  {i['name']}: {i['shape']} {i['dtype']}" for i in facts["inputs"]]
    lines += [f"output {o['name']}: {o['shape']}" for o in facts["outputs"]]
    if "shapes_unknown" in facts:
        lines.append(f"shapes: {facts['shapes_unknown']}")
        lines.append(f"ops (before folding): {op_counts(facts['ops_before_folding'])}")
        return "\n".join(lines)
    lines.append(f"ops: {op_counts(facts['ops'])}")
    lines.append(f"parameters: {facts['parameters']:,}")
    lines.append(f"MACs: {facts['macs']:,}")
    if facts["cannot_lower"]:
        lines.append("cannot lower:")
        lines += [
            f"  {p['op']} x{p['count']} (first: {p['first_node']}) - {p['reason']}" for p in facts["cannot_lower"]
        ]
    else:
        lines.append("cannot lower: none (every op has a lowering)")
    return "\n".join(lines)


def _tflite_facts(path: str) -> dict[str, Any]:
    from collections import Counter
    from pathlib import Path

    from edgekit.converters.quant.int8_rules import distinct_weight_values
    from edgekit.converters.tflite.importer import read_graph
    from edgekit.converters.tflite.reader import load_model, metadata, operator_names  # tflite only, no onnx
    from edgekit.runtime import load
    from edgekit.runtime.signature import Signature
    from edgekit.runtime.validate import validate_tflite

    _, data = load_model(Path(path))
    validate_tflite(data, path)  # a damaged file is a one-line error, not the reader's traceback
    return {
        "model": path,
        "size_bytes": len(data),
        "ops": dict(Counter(operator_names(data)).most_common()),
        "signature": Signature.from_model(path, data).to_dict(),  # as a package manifest records it
        **_delegation(load(data, threads=1)),
        # per weighted op ("index:OP"): the most distinct values an output channel holds (2 binary, 3 ternary)
        "weight_values": distinct_weight_values(read_graph(data)),
        "metadata": metadata(data),
    }


def _delegation(session) -> dict[str, Any]:
    """XNNPACK's partitions and the ops it leaves to TFLite's kernels, as the loaded model has them."""
    from collections import Counter

    return {
        "xnnpack_partitions": session.delegated_partitions(),
        "cpu_ops": dict(Counter(op for _, op in session.undelegated_ops() or ()).most_common()),
    }


def _tflite_report(facts: dict[str, Any]) -> str:
    from edgekit.runtime.signature import Signature

    lines = [
        f"model: {facts['model']}  ({facts['size_bytes']:,} bytes)",
        f"ops: {op_counts(facts['ops'])}",
        f"XNNPACK partitions: {facts['xnnpack_partitions']}"
        + (f"; left to TFLite's own kernels: {op_counts(facts['cpu_ops'])}" if facts["cpu_ops"] else ""),
        "distinct weight values per output channel: "
        + (", ".join(f"{layer} {n}" for layer, n in facts["weight_values"].items()) or "no weighted ops"),
    ]
    signature = Signature.from_dict(facts["signature"])
    lines += [f"input  {t.describe()}" for t in signature.inputs]
    lines += [f"output {t.describe()}" for t in signature.outputs]
    lines += [f"metadata {key}: {value}" for key, value in facts["metadata"].items()]
    return "\n".join(lines)
