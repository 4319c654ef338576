"""Per-op profile.

The Python interpreter APIs have no op profiler, so a ``.tflite`` is profiled op by op: each op
is rebuilt as a one-op model with its real shapes, types, quantization, options and constants
(through edgekit's own reader and writer), run on the same backend and threads, and timed.
``.onnx`` models use onnxruntime's own profiling JSON. The tables follow benchmark_model's
``--enable_op_profiling``: run order, top ops by time, summary by op type.

XNNPACK (in LiteRT's builds) folds a spatial PAD into the VALID convolution after it, so in
the real model such a PAD costs little or nothing, while timed alone it can look expensive.
With XNNPACK on, such a PAD's row is what it adds in situ: the PAD + convolution pair timed
together, less the convolution alone (tflite-runtime 2.14's XNNPACK leaves the PAD a real op)."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class OpTiming:
    index: int
    op: str
    name: str
    avg_ms: float
    delegated: bool | None


@dataclass
class OpProfile:
    ops: list[OpTiming]

    @property
    def total_ms(self) -> float:
        return sum(o.avg_ms for o in self.ops)

    def tables(self, top: int = 10) -> str:
        total = self.total_ms or 1.0
        lines = [
            "============================== Run Order ==============================",
            f"{'node type':<24} {'avg ms':>9} {'%':>7} {'cdf%':>7}  {'delegated':>9}  name",
        ]
        cdf = 0.0
        for o in self.ops:
            cdf += o.avg_ms
            lines.append(
                f"{o.op:<24} {o.avg_ms:>9.4f} {100 * o.avg_ms / total:>6.2f}% {100 * cdf / total:>6.2f}%"
                f"  {str(o.delegated):>9}  {o.name}"
            )
        lines += [
            "",
            f"============================== Top by Computation Time ({top}) ==============================",
            f"{'node type':<24} {'avg ms':>9} {'%':>7}  name",
        ]
        for o in sorted(self.ops, key=lambda o: -o.avg_ms)[:top]:
            lines.append(f"{o.op:<24} {o.avg_ms:>9.4f} {100 * o.avg_ms / total:>6.2f}%  {o.name}")
        by_type: dict[str, list[float]] = defaultdict(list)
        for o in self.ops:
            by_type[o.op].append(o.avg_ms)
        lines += [
            "",
            "============================== Summary by node type ==============================",
            f"{'node type':<24} {'count':>6} {'avg ms':>9} {'%':>7} {'cdf%':>7}",
        ]
        cdf = 0.0
        for op, times in sorted(by_type.items(), key=lambda kv: -sum(kv[1])):
            cdf += sum(times)
            lines.append(
                f"{op:<24} {len(times):>6} {sum(times):>9.4f} {100 * sum(times) / total:>6.2f}%"
                f" {100 * cdf / total:>6.2f}%"
            )
        delegated = [o for o in self.ops if o.delegated]
        if any(o.delegated is not None for o in self.ops):
            on_cpu = ", ".join(sorted({o.op for o in self.ops if o.delegated is False})) or "none"
            lines.append(
                f"\ndelegate coverage: {len(delegated)} of {len(self.ops)} ops inside XNNPACK/delegate "
                f"partitions; on the CPU: {on_cpu}"
            )
        lines.append(f"sum of per-op averages: {self.total_ms:.4f} ms")
        return "\n".join(lines)


def _random_feed(spec, rng) -> np.ndarray:
    shape = tuple(1 if d < 0 else d for d in spec.shape)
    if np.issubdtype(spec.dtype, np.integer):
        info = np.iinfo(spec.dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(spec.dtype)
    return rng.uniform(-1, 1, shape).astype(spec.dtype)


CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")
VALID = 1  # tflite.Padding.VALID


def _fused_pad(graph, index: int, consumers: dict) -> bool:
    """Is node ``index`` a PAD that XNNPACK folds into the VALID convolution that alone reads it
    (constant paddings on height and width only)?"""
    node = graph.nodes[index]
    if node.op not in ("PAD", "PADV2") or index + 1 >= len(graph.nodes):
        return False
    after = graph.nodes[index + 1]
    readers = consumers.get(node.outputs[0], [])
    if after.op not in CONVOLUTIONS or after.inputs[0] != node.outputs[0] or readers != [after]:
        return False
    if after.attrs.get("padding") != VALID or not graph.is_const(node.inputs[1]):
        return False
    paddings = graph.tensors[node.inputs[1]].data
    return paddings is not None and paddings.shape == (4, 2) and not paddings[[0, 3]].any()


def time_ops(
    graph, nodes: list, backend: str = "auto", threads: int = 1, xnnpack: bool = True, runs: int = 20, rng=None
) -> tuple[float, bool | None]:
    """Median ms of ``nodes`` (of a graph read by :func:`edgekit.converters.tflite.importer.read_graph`)
    run alone as a model of their own on random inputs, and whether a delegate took them (None
    when the backend cannot say)."""
    from edgekit.converters.tflite.submodel import ops_model
    from edgekit.runtime import load

    rng = rng if rng is not None else np.random.default_rng(0)
    session = load(ops_model(graph, nodes), backend=backend, threads=threads, xnnpack=xnnpack)
    session.run({s.name: _random_feed(s, rng) for s in session.inputs}, raw=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.invoke_raw()
        samples.append(time.perf_counter() - start)
    partitions = session.delegated_partitions()
    session.close()
    return 1000 * statistics.median(samples), None if partitions is None or not xnnpack else partitions > 0


def profile_tflite(
    path: str | os.PathLike, backend: str = "auto", threads: int = 1, xnnpack: bool = True, runs: int = 20
) -> OpProfile:
    from edgekit.converters.tflite.importer import read_graph

    graph = read_graph(Path(path).read_bytes())
    rng = np.random.default_rng(0)

    def timed(nodes) -> tuple[float, bool | None]:
        return time_ops(graph, nodes, backend=backend, threads=threads, xnnpack=xnnpack, runs=runs, rng=rng)

    timings = []
    consumers = graph.consumers()
    pads = {i for i in range(len(graph.nodes)) if xnnpack and _fused_pad(graph, i, consumers)}
    for index, node in enumerate(graph.nodes):
        if index in pads:  # what the PAD adds to its convolution in situ: the pair less the conv alone
            pair, delegated = timed([node, graph.nodes[index + 1]])
            conv, _ = timed([graph.nodes[index + 1]])
            name = f"{node.outputs[0]} (timed with the next convolution, which XNNPACK can fold it into)"
            timings.append(OpTiming(index, node.op, name, max(pair - conv, 0.0), delegated))
            continue
        ms, delegated = timed([node])
        timings.append(OpTiming(index, node.op, node.outputs[0], ms, delegated))
    return OpProfile(timings)


def profile_onnx(path: str | os.PathLike, threads: int = 1, runs: int = 20) -> OpProfile:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    for _ in range(runs):
        session.run(None, feeds)
    trace = session.end_profiling()
    events = json.loads(Path(trace).read_text())
    Path(trace).unlink(missing_ok=True)
    per_node: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    order: list[str] = []
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            if node not in per_node:
                order.append(node)
            per_node[node].append(e["dur"] / 1000)
            kinds[node] = e.get("args", {}).get("op_name", "?")
    return OpProfile([OpTiming(k, kinds[n], n, statistics.median(per_node[n]), None) for k, n in enumerate(order)])


def profile(path: str | os.PathLike, **options) -> OpProfile:
    if str(path).endswith(".onnx"):
        return profile_onnx(path, threads=options.get("threads", 1), runs=options.get("runs", 20))
    return profile_tflite(path, **options)
