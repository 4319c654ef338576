"""edgekit inspect MODEL: what is in a model and whether edgekit can convert it."""

from __future__ import annotations

import argparse

from edgekit.commands._shapes import add_input_shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx or .tflite file")
    add_input_shape(parser)
    parser.add_argument("--ops", action="store_true", help="list every op type edgekit can lower and exit")


def run(args: argparse.Namespace) -> int:
    if args.ops:
        from edgekit.converters.lowering import supported_ops

        print("\n".join(supported_ops()))
        return 0
    if args.model.endswith(".tflite"):
        return _inspect_tflite(args.model)
    return _inspect_onnx(args)


def _inspect_onnx(args: argparse.Namespace) -> int:
    from collections import Counter

    from edgekit.converters import onnx_frontend
    from edgekit.converters.analysis import count_macs, count_params
    from edgekit.converters.lowering.driver import unsupported_nodes
    from edgekit.converters.pipeline import onnx_ir
    from edgekit.errors import ShapeError

    source = onnx_frontend.read_model(args.model)
    model = source.model
    print(f"model: {args.model}  (opset {onnx_frontend.default_opset(model)}, sha256 {source.sha256[:16]}...)")
    for vi in onnx_frontend.graph_inputs(model):
        print(f"input  {vi.name}: {onnx_frontend._dims(vi)} {onnx_frontend.input_dtype(vi)}")
    for vi in model.graph.output:
        print(f"output {vi.name}: {onnx_frontend._dims(vi)}")
    shapes = onnx_frontend.parse_input_shapes(args.input_shape)
    try:
        graph = onnx_ir(source, shapes)
    except ShapeError as exc:
        print(f"shapes: {exc}")
        hist = Counter(n.op_type for n in model.graph.node)
        print("ops (before folding): " + ", ".join(f"{op} x{n}" for op, n in hist.most_common()))
        return 0
    print("ops: " + ", ".join(f"{op} x{n}" for op, n in graph.op_histogram().items()))
    print(f"parameters: {count_params(graph):,}")
    print(f"MACs: {count_macs(graph):,}")
    problems = unsupported_nodes(graph)
    if problems:
        print("cannot lower:")
        for op, n, name, reason in problems:
            print(f"  {op} x{n} (first: {name}) - {reason}")
        return 1
    print("cannot lower: none (every op has a lowering)")
    return 0


def _inspect_tflite(path: str) -> int:
    from collections import Counter
    from pathlib import Path

    from edgekit.converters.tflite_reader import load_model, metadata, operator_names  # tflite only, no onnx
    from edgekit.runtime import load
    from edgekit.runtime.validate import validate_tflite

    _, data = load_model(Path(path))
    validate_tflite(data, path)  # a damaged file is a one-line error, not the reader's traceback
    ops = operator_names(data)
    print(f"model: {path}  ({len(data):,} bytes)")
    print("ops: " + ", ".join(f"{op} x{n}" for op, n in Counter(ops).most_common()))
    print(f"XNNPACK partitions: {load(data, threads=1).delegated_partitions()}")
    for key, value in metadata(data).items():
        print(f"metadata {key}: {value}")
    return 0
