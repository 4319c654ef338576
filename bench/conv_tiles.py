"""How an int8 convolution's LiteRT time steps with its channel counts on this CPU: a table of
one 3x3 convolution (stride 1, SAME) timed alone, input channels down, output channels across.
Flat runs are the channel tiles of XNNPACK's kernels (64 wide with AMX, 8-16 on Arm): pruning
inside a tile buys nothing, which is what ``edgekit prune --round-to N`` is for.

    python -m bench.conv_tiles [--side 56] [--cin 8 16 32 48 64 80 96 128] [--cout 16 32 48 64 96 128]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table, work_dir  # noqa: E402


def conv_model(cin: int, cout: int, side: int):
    weights = np.random.default_rng(0).normal(0, 0.1, (cout, cin, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, side, side])],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=56)
    parser.add_argument("--cin", type=int, nargs="+", default=[8, 16, 32, 48, 64, 80, 96, 128])
    parser.add_argument("--cout", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    from edgekit.converters import convert
    from edgekit.runtime.opprofile import profile_tflite

    work = work_dir("edgekit-tiles-")
    rows = []
    for cin in args.cin:
        row = [str(cin)]
        for cout in args.cout:
            path = work / f"c{cin}_{cout}.tflite"
            calibration = np.random.default_rng(0).uniform(-1, 1, (2, cin, args.side, args.side)).astype(np.float32)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                convert(conv_model(cin, cout, args.side), path, quantize="int8", calibration=calibration)
            ops = profile_tflite(path, runs=args.runs).ops
            row.append(f"{min(o.avg_ms for o in ops if o.op == 'CONV_2D'):.3f}")
        rows.append(row)
    print(f"int8 3x3 conv at {args.side}x{args.side}, LiteRT, 1 thread: ms (inputs down, outputs across)")
    print(table(rows, ["in \\ out", *map(str, args.cout)]))


if __name__ == "__main__":
    main()
