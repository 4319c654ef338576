"""Accuracy-aware int8: keep in float the fewest layers for which the int8 model's decisions on
the user's validation data stay within a budget of those of the float model.

A decision is what a user reads off an output: the class of a classifier, the character of a CTC
recogniser at each time step (``argmax`` over the last axis), whether a mask pixel or a score is
above a threshold (``threshold:T``), each compared position by position; or the detections of
a YOLOv8/YOLO11 head (``detections:CONF``), compared as sets: a reference detection with no
same-class match at IoU 0.5 changed, as did an extra one. The float reference is the source
ONNX model on onnxruntime; each candidate is the converted model on LiteRT with XNNPACK, as it
would ship.

The layers are ranked by their own loss of SQNR in int8 (:mod:`edgekit.converters.quant.mixed`,
worst first), and a binary search finds the shortest prefix of that ranking to keep in float.
The ranking is a weak guide to decisions (keeping more layers in float can change more of them),
so the prefix then sheds, costliest first, the layers whose return to int8 still holds the
budget, a capped number of measured models. Every candidate quantizes from one calibration.
Decision rules are a registry: one decorated function adds one (:func:`decision_rule`), its
decisions compared elementwise unless it returns a :class:`DecisionRule` of its own.
This module imports only numpy at load (the configs check rules with it on a device too)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import CalibrationError, ParameterError

if TYPE_CHECKING:
    from edgekit.converters.config import AccuracyBudget, QuantConfig
    from edgekit.converters.ir.graph import Graph
    from edgekit.converters.quant.faster import SpeedChoice
    from edgekit.converters.quant.mixed import RankedLayer
    from edgekit.converters.quant.quantizer import Calibrated

Decide = Callable[[np.ndarray], np.ndarray]  # one output (batch included) -> its decisions
LATENCY_ROUNDS = 3  # alternating rounds, so the machine's noise hits every model alike
# what keeping a layer in float costs, MACs per value written, measured on PP-OCRv4's recogniser
# (LiteRT XNNPACK, 1 thread): 33 HardSwish/Add layers in float add 83 us each for 230k values,
# 7 convolutions and MatMuls 0.64 ms for ~120M MACs; 0.36 ns a value, 0.005 ns a MAC
MACS_PER_VALUE = 64


class DecisionRule(ABC):
    """How the float reference's output and a candidate's output of one run are compared:
    ``count`` gives (decisions that changed, decisions of the reference)."""

    @abstractmethod
    def count(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Elementwise(DecisionRule):
    """Decisions made value by value (``decide``), compared position by position: the default
    for a rule that returns a plain decide function."""

    decide: Decide

    def __call__(self, output: np.ndarray) -> np.ndarray:
        return self.decide(output)

    def count(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
        expected = np.ravel(self.decide(reference))
        got = np.ravel(self.decide(np.asarray(candidate).reshape(np.shape(reference))))
        return int(np.count_nonzero(got != expected)), expected.size


# rule name -> (argument -> a DecisionRule, or a decide function compared elementwise)
DECISION_RULES: dict[str, Callable[[str | None], DecisionRule | Decide]] = {}


def decision_rule(name: str):
    """Register a decision rule: a function of the rule's argument (the text after ``name:``, or
    None) that returns how one output becomes decisions (compared elementwise), or a
    :class:`DecisionRule` that compares outputs its own way, refusing a bad argument with a
    :class:`ParameterError` naming ``{decision}``."""

    def register(make: Callable[[str | None], DecisionRule | Decide]) -> Callable[[str | None], DecisionRule | Decide]:
        DECISION_RULES[name] = make
        return make

    return register


@decision_rule("argmax")
def _argmax(argument: str | None) -> Decide:
    """The index of the largest value along an axis (``argmax:AXIS``; the last by default): a
    classifier's class, a CTC recogniser's character at each time step."""
    try:
        axis = -1 if argument is None else int(argument)
    except ValueError:
        raise ParameterError("{decision} takes an axis, e.g. argmax:1", decision=f"argmax:{argument}") from None

    def decide(output: np.ndarray) -> np.ndarray:
        if not -output.ndim <= axis < output.ndim:
            raise ParameterError(
                f"{{decision}}: the output has {output.ndim} axes; give one of them", decision=f"argmax:{axis}"
            )
        return np.argmax(output, axis=axis)

    return decide


@decision_rule("threshold")
def _threshold(argument: str | None) -> Decide:
    """Every value above T, one decision each (``threshold:T``): a mask's pixels, detection scores."""
    limit = _number(argument)
    if not np.isfinite(limit):
        raise ParameterError("{decision} needs a number, e.g. threshold:0.5", decision=f"threshold:{argument}")
    return lambda output: output > limit


def _number(argument: str | None) -> float:
    try:
        return float(argument) if argument is not None else float("nan")
    except ValueError:
        return float("nan")


@dataclass(frozen=True)
class DetectionsRule(DecisionRule):
    """An ultralytics detector head's detections (:mod:`edgekit.converters.quant.detections`) at
    ``confidence``: the reference's detections are the decisions; each with no same-class match
    at IoU 0.5 in the candidate changed, and so did each of the candidate's left unmatched."""

    confidence: float

    def count(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
        from edgekit.converters.quant.detections import matched_pairs, yolo_detections

        reference = np.asarray(reference)
        if reference.ndim != 3 or reference.shape[1] < 5:
            raise ParameterError(
                f"{{decision}} needs an ultralytics detector output [batch, 4 + classes, anchors]; this "
                f"output is {list(reference.shape)}: choose another rule",
                decision=f"detections:{self.confidence:g}",
            )
        candidate = np.asarray(candidate).reshape(reference.shape)
        changed = total = 0
        for want, got in zip(reference, candidate, strict=True):
            expected, found = yolo_detections(want, self.confidence), yolo_detections(got, self.confidence)
            matched = len(matched_pairs(expected, found))
            changed += len(expected.scores) + len(found.scores) - 2 * matched
            total += len(expected.scores)
        return changed, total


@decision_rule("detections")
def _detections(argument: str | None) -> DetectionsRule:
    """A YOLOv8/YOLO11 head's detections at a confidence (``detections:CONF``, 0.25 by default)."""
    from edgekit.converters.quant.detections import YOLO_CONFIDENCE

    confidence = YOLO_CONFIDENCE if argument is None else _number(argument)
    if not 0 < confidence <= 1:
        raise ParameterError(
            "{decision} needs a confidence above 0 and at most 1, e.g. detections:0.25",
            decision=f"detections:{argument}",
        )
    return DetectionsRule(confidence)


@dataclass(frozen=True)
class CtcLines(DecisionRule):
    """A CTC recogniser's text, one decision per line (output ``[batch, time, classes]``): the
    best class at each time step, repeats merged, ``blank`` dropped; a line whose characters
    differ from the reference's changed, whatever its time steps did."""

    blank: int

    def lines(self, output: np.ndarray) -> list[list[int]]:
        best = np.argmax(output, axis=-1)
        return [row[(row != self.blank) & np.r_[True, row[1:] != row[:-1]]].tolist() for row in best]

    def count(self, reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
        reference = np.asarray(reference)
        if reference.ndim != 3:
            raise ParameterError(
                f"{{decision}} needs a CTC output [batch, time, classes]; this output is "
                f"{list(reference.shape)}: choose another rule",
                decision=f"ctc:{self.blank}",
            )
        expected = self.lines(reference)
        got = self.lines(np.asarray(candidate).reshape(reference.shape))
        return sum(a != b for a, b in zip(expected, got, strict=True)), len(expected)


@decision_rule("ctc")
def _ctc(argument: str | None) -> CtcLines:
    """A CTC recogniser's decoded lines (``ctc:BLANK``; the blank class is 0 by default)."""
    if argument is not None and not argument.isdigit():
        raise ParameterError("{decision} takes the blank class, e.g. ctc:0", decision=f"ctc:{argument}")
    return CtcLines(int(argument) if argument is not None else 0)


def decision_rule_for(spec: str) -> DecisionRule:
    """The decision rule ``spec`` (``name`` or ``name:argument``) names."""
    name, sep, argument = str(spec).partition(":")
    if name not in DECISION_RULES:
        raise ParameterError(f"{{decision}} is unknown; choose {', '.join(DECISION_RULES)}", decision=spec)
    rule = DECISION_RULES[name](argument if sep else None)
    return rule if isinstance(rule, DecisionRule) else Elementwise(rule)


@dataclass(frozen=True)
class Latencies:
    """Median latency (ms) of each model, LiteRT with XNNPACK, on this machine."""

    float_ms: float
    int8_ms: float
    mixed_ms: float
    threads: int


@dataclass(frozen=True)
class AccuracyResult:
    """What the accuracy-aware mode kept in float and what that holds and costs."""

    max_changed: float
    decision: str
    samples: int
    decisions: int  # per model, over every validation sample and output
    changed_int8: int  # decisions of the all-int8 model that differ from the float reference
    changed: int  # the same, for the chosen model
    kept: tuple[RankedLayer, ...]  # the layers kept in float, worst loss in int8 first
    candidates: int  # layers ranked by their loss in int8
    trials: tuple[tuple[int, int], ...]  # the prefix search's (layers kept in float, decisions changed)
    refinements: tuple[tuple[int, int], ...]  # the same, for each set the refinement measured
    refine_trials: int  # the cap on refinements
    searched: int  # layers in float in the shortest prefix that held, before the refinement
    search_seconds: float  # ranking, quantizing and counting: the time the mode adds to a conversion
    latency: Latencies | None = None
    kept_before: tuple[str, ...] = field(default=())  # the user's own keep_float
    method: str = "minmax"  # the calibration every candidate quantized from ("mse+smooth": on the smoothed graph)
    methods: tuple[tuple[str, int], ...] = ()  # each method tried: its all-int8 model's decisions changed
    speed: SpeedChoice | None = None  # what --float-where-faster kept in float on top, measured here

    def summary(self) -> str:
        """What the CLI prints."""
        layers = ", ".join(_said(k) for k in self.kept[:8]) + (" ..." if len(self.kept) > 8 else "")
        lines = [
            f"accuracy budget: at most {self.max_changed:.2%} of {self.decisions:,} decisions ({self.decision}, "
            f"{self.samples} validation samples) may differ from float32 on onnxruntime",
            f"  all-int8: {_share(self.changed_int8, self.decisions)} differ{self._calibration_said()}",
            f"  kept in float: {len(self.kept)} of {self.candidates} ranked layer(s){': ' + layers if layers else ''}",
            f"  search: the shortest prefix that holds keeps {self.searched} ({len(self.trials)} models); the "
            f"refinement returns {self.searched - len(self.kept)} to int8 ({len(self.refinements)} models, "
            f"at most {self.refine_trials})",
            f"  chosen: {_share(self.changed, self.decisions)} differ ({self.search_seconds:.1f} s)",
        ]
        if self.speed is not None and self.speed.kept_float:
            lines.insert(-1, f"  also in float, slower in int8 here: {len(self.speed.kept_float)} weighted op(s)")
        if self.latency is not None:
            t = self.latency
            lines.append(
                f"  latency on this machine ({t.threads} thread{'s' if t.threads > 1 else ''}): float32 "
                f"{t.float_ms:.3g} ms, all-int8 {t.int8_ms:.3g} ms, chosen {t.mixed_ms:.3g} ms "
                f"({t.mixed_ms / t.float_ms:.2f}x float32)"
            )
        return "\n".join(lines)

    def _calibration_said(self) -> str:
        if not self.methods:
            return f" ({self.method} calibration)"
        tried = ", ".join(f"{method} {changed:,}" for method, changed in self.methods)
        return f" with {self.method} calibration, the fewest of the methods tried ({tried})"

    def as_dict(self) -> dict[str, Any]:
        """The figures, as the conversion report records them."""
        return asdict(self) | {
            "share_changed_int8": self.changed_int8 / self.decisions,
            "share_changed": self.changed / self.decisions,
        }


def _said(layer: RankedLayer) -> str:
    return f"{layer.tensor} ({'+'.join(layer.ops)}, loses {layer.sqnr_drop:.1f} dB)"


def _share(changed: int, total: int) -> str:
    return f"{changed:,}/{total:,} decisions ({changed / total:.2%})"


class AccuracyBudgetError(ParameterError):
    """The budget cannot be held: even with every ranked layer in float too many decisions change."""


def quantize_within_budget(
    model, graph: Graph, tfl: Graph, quant: QuantConfig, calibrations: dict[str, Calibrated]
) -> tuple[Graph, AccuracyResult]:
    """The int8 model with the fewest layers kept in float whose decisions on
    ``quant.accuracy_budget.validation`` differ from the float model's (onnxruntime on ``model``)
    for at most ``max_changed`` of them, and the figures of the search.

    ``graph`` is the ONNX-level IR ``model`` became, ``tfl`` its float TFLite-level graph,
    ``calibrations`` its calibration by each method tried (method -> ranges): the one whose
    all-int8 model changes the fewest decisions is the one every candidate quantizes from. The binary search over
    the ranked prefix assumes that keeping more layers in float never changes more decisions;
    where that fails it may keep more layers than needed, which the refinement then trims, never
    fewer than it measured: the model returned is the one whose decisions were counted.
    Raises :class:`AccuracyBudgetError` when even every ranked layer in float misses the budget."""
    from edgekit.converters.quant.mixed import ranked_layers, runnable

    start = time.perf_counter()
    budget = quant.accuracy_budget
    counter = _DecisionCounter(model, graph, budget)
    method, int8, by_method = _fewest_changes(tfl, graph, quant, calibrations, counter)
    trial = _Trial(tfl, graph, quant, calibrations[method], counter)
    ranked = ranked_layers(model, graph, runnable(int8), _ranking_samples(graph, quant, counter))
    ranked = [layer for layer in ranked if not set(layer.nodes) <= set(quant.keep_float)]
    search = _PrefixSearch(ranked, trial)
    chosen, changed = search.run(int8, dict(by_method).get(method))
    if changed > counter.allowed:
        raise AccuracyBudgetError(
            f"{{max_changed}} cannot be held: with all {len(ranked)} ranked layers in float "
            f"{_share(changed, counter.total)} still differ from the float model on onnxruntime; "
            "raise {max_changed}, or check {decision} and {validation}",
            max_changed=budget.max_changed,
        )
    refined = _Refinement(ranked[:chosen], search.best, changed, trial)
    refined.run({layer.tensor: latency_cost(graph, layer) for layer in ranked[:chosen]}, budget.refine_trials)
    best, changed, speed = _faster_within_budget(trial, refined, quant.float_where_faster)
    seconds = time.perf_counter() - start
    latency = _latencies(runnable(tfl), runnable(int8), runnable(best)) if budget.measure_latency else None
    result = AccuracyResult(
        max_changed=budget.max_changed,
        decision=budget.decision,
        samples=counter.samples,
        decisions=counter.total,
        changed_int8=search.measured[0],
        changed=changed,
        kept=tuple(refined.kept),
        candidates=len(ranked),
        trials=tuple(search.measured.items()),
        refinements=tuple(refined.measured),
        refine_trials=budget.refine_trials,
        searched=chosen,
        search_seconds=seconds,
        latency=latency,
        kept_before=tuple(quant.keep_float),
        method=method,
        methods=by_method,
        speed=speed,
    )
    return best, result


def _ranking_samples(graph: Graph, quant: QuantConfig, counter: _DecisionCounter) -> list[dict[str, np.ndarray]]:
    """The first calibration samples, as --auto-mixed ranks on; a QDQ model may bring none:
    then the first validation samples."""
    from edgekit.converters.quant.mixed import RANKING_SAMPLES, first_samples

    if quant.calibration is not None:
        return first_samples(graph, quant.calibration)
    return counter.feeds[:RANKING_SAMPLES]


def _faster_within_budget(trial: _Trial, refined: _Refinement, wanted: bool):
    """``--float-where-faster`` (if ``wanted``) on the budget's choice: the ops slower in int8 here
    kept in float too, if the model still holds the budget (its decisions counted) and is faster;
    the model, its decisions changed and the :class:`~edgekit.converters.quant.faster.SpeedChoice`."""
    from edgekit.converters.quant.faster import speed_choice

    if not wanted:
        return refined.best, refined.changed, None

    counted: dict[str, int] = {}

    def holds(model: Graph) -> bool:
        counted["changed"] = trial.changed(model)
        return counted["changed"] <= trial.allowed

    model, choice = speed_choice(
        trial.calibrated.graph, refined.best, lambda keep: trial.quantized(refined.kept, keep), holds
    )
    return model, counted["changed"] if choice.kept_float else refined.changed, choice


def _fewest_changes(
    tfl: Graph, graph: Graph, quant: QuantConfig, calibrations: dict[str, Calibrated], counter: _DecisionCounter
) -> tuple[str, Graph, tuple[tuple[str, int], ...]]:
    """The calibration method whose all-int8 model changes the fewest decisions (the first of
    equals), that model, and each method's count; one method: no count (the search makes it)."""
    if len(calibrations) == 1:
        method, calibrated = next(iter(calibrations.items()))
        return method, _Trial(tfl, graph, quant, calibrated, counter).quantized([]), ()
    counted, models = [], {}
    for method, calibrated in calibrations.items():
        trial = _Trial(tfl, graph, quant, calibrated, counter)
        models[method] = trial.quantized([])
        counted.append((method, trial.changed(models[method])))
    best = min(counted, key=lambda pair: pair[1])[0]
    return best, models[best], tuple(counted)


def latency_cost(graph: Graph, layer: RankedLayer) -> int:
    """What keeping ``layer`` in float adds to the int8 model's latency, in values written: each
    value its nodes write costs a float op, and a DEQUANTIZE/QUANTIZE where a float island
    meets int8, while float multiply-accumulates cost XNNPACK little more than int8 ones."""
    from edgekit.converters.ir.analysis import MAC_RULES

    nodes = {node.name: node for node in graph.nodes}
    cost = 0
    for node in (nodes[name] for name in layer.nodes):
        cost += (MAC_RULES[node.op](graph, node) if node.op in MAC_RULES else 0) // MACS_PER_VALUE
        cost += sum(int(np.prod(graph.shape(out))) for out in node.outputs if out)
    return cost


class _Trial:
    """One candidate: the model with some ranked layers (and the user's ``keep_float``) in
    float, quantized from the conversion's calibration, and its decisions changed."""

    def __init__(self, tfl: Graph, graph: Graph, quant: QuantConfig, calibrated: Calibrated, counter) -> None:
        self.tfl, self.graph, self.quant, self.calibrated, self.counter = tfl, graph, quant, calibrated, counter

    def quantized(self, layers: list[RankedLayer], also: tuple[str, ...] = ()) -> Graph:
        """The model with ``layers`` (and the nodes named in ``also``) in float."""
        from edgekit.converters.quant.quantizer import quantize_graph

        keep = (*self.quant.keep_float, *(name for layer in layers for name in layer.nodes), *also)
        options = replace(self.quant, keep_float=keep).quantize_options()
        return quantize_graph(self.tfl, self.graph, **options, calibrated=self.calibrated)

    def changed(self, model: Graph) -> int:
        from edgekit.converters.quant.mixed import runnable

        return self.counter.changed(runnable(model))

    @property
    def allowed(self) -> int:
        return self.counter.allowed


class _PrefixSearch:
    """The shortest prefix of ``ranked`` to keep in float whose model changes at most
    ``allowed`` decisions: all-int8 first, then every ranked layer, then a binary search between."""

    def __init__(self, ranked: list[RankedLayer], trial: _Trial) -> None:
        self.ranked, self.trial = ranked, trial
        self.measured: dict[int, int] = {}  # prefix length -> decisions changed
        self.best: Graph | None = None

    def _try(self, k: int, model: Graph | None = None, changed: int | None = None) -> bool:
        model = model if model is not None else self.trial.quantized(self.ranked[:k])
        self.measured[k] = changed if changed is not None else self.trial.changed(model)
        holds = self.measured[k] <= self.trial.allowed
        if holds:
            self.best = model  # the search only moves to shorter prefixes that hold
        return holds

    def run(self, int8: Graph, int8_changed: int | None = None) -> tuple[int, int]:
        """(prefix length, decisions changed) of the model in ``best``; a count over ``allowed``
        when not even the whole ranking holds (``best`` is then None). ``int8_changed``: the
        all-int8 model's count, when it was measured already."""
        if self._try(0, int8, int8_changed):
            return 0, self.measured[0]
        n = len(self.ranked)
        if n == 0 or not self._try(n):
            return n, self.measured[n]
        low, high = 0, n  # low misses, high holds: both measured
        while high - low > 1:
            mid = (low + high) // 2
            if self._try(mid):
                high = mid
            else:
                low = mid
        return high, self.measured[high]


class _Refinement:
    """Layers of a set that holds the budget put back in int8 where the measured decisions
    still hold it: groups of the costliest first, a group that misses split in two (its
    costliest layers, making half its cost, and the rest), at most ``trials`` models measured.
    It only ever removes layers, and ``best`` is always a measured model that holds."""

    def __init__(self, kept: list[RankedLayer], best: Graph, changed: int, trial: _Trial) -> None:
        self.kept, self.best, self.changed, self.trial = list(kept), best, changed, trial
        self.measured: list[tuple[int, int]] = []  # (layers kept in float, decisions changed) per model

    def run(self, cost: dict[str, int], trials: int) -> None:
        order = sorted(self.kept, key=lambda layer: -cost[layer.tensor])
        queue = list(_halves(order, cost)) if len(order) > 1 else []  # none at all: all-int8, which missed
        while queue and len(self.measured) < trials:
            group = [layer for layer in queue.pop(0) if layer in self.kept]
            candidate = [layer for layer in self.kept if layer not in group]
            if candidate:  # none: all-int8, which the search measured missing
                model = self.trial.quantized(candidate)
                changed = self.trial.changed(model)
                self.measured.append((len(candidate), changed))
                if changed <= self.trial.allowed:
                    self.kept, self.best, self.changed = candidate, model, changed
                    continue
            if len(group) > 1:
                queue[:0] = _halves(group, cost)


def _halves(group: list[RankedLayer], cost: dict[str, int]) -> tuple[list[RankedLayer], list[RankedLayer]]:
    """``group`` (costliest first) cut where its first part reaches half its cost; neither part empty."""
    total, running, cut = sum(cost[layer.tensor] for layer in group), 0, 0
    while cut < len(group) - 1 and (cut == 0 or running < total / 2):
        running += cost[group[cut].tensor]
        cut += 1
    return group[:cut], group[cut:]


class _DecisionCounter:
    """The validation samples, the float reference's outputs on them, and how many of its
    decisions a candidate model changes."""

    def __init__(self, model, graph: Graph, budget: AccuracyBudget) -> None:
        from edgekit.converters.harness import OnnxRunner
        from edgekit.converters.onnx.frontend import read_model

        source = read_model(model).model
        self.rule = decision_rule_for(budget.decision)
        self.feeds = validation_samples(budget.validation, graph)
        self.samples = len(self.feeds)
        reference = OnnxRunner(source)
        self.outputs = _decision_outputs(graph.metadata["_signature"]["outputs"], budget.decision_outputs)
        self.reference = [reference(feed) for feed in self.feeds]
        self.total = sum(self._count(outputs, outputs)[1] for outputs in self.reference)
        if self.total == 0:
            raise ParameterError(
                "{validation} gives no decisions: the outputs are empty under {decision}", decision=budget.decision
            )
        self.allowed = int(np.floor(budget.max_changed * self.total + 1e-9))

    def _count(self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> tuple[int, int]:
        counts = [self.rule.count(np.asarray(reference[name]), np.asarray(candidate[name])) for name in self.outputs]
        return sum(changed for changed, _ in counts), sum(total for _, total in counts)

    def changed(self, tflite_model: bytes) -> int:
        """How many decisions the model (LiteRT, XNNPACK, one thread) makes otherwise than the reference."""
        from edgekit.converters.harness import TFLiteRunner

        runner = TFLiteRunner(tflite_model, threads=1)
        return sum(self._count(ref, runner(feed))[0] for feed, ref in zip(self.feeds, self.reference, strict=True))


def _decision_outputs(outputs: list[str], chosen: tuple[str, ...]) -> list[str]:
    """The model's outputs whose decisions count: ``chosen``, each one of ``outputs``, or all."""
    unknown = [name for name in chosen if name not in outputs]
    if unknown:
        raise ParameterError(
            f"{{decision_outputs}} names no output of the model: {', '.join(unknown)}; "
            f"its outputs are {', '.join(outputs)}"
        )
    return list(chosen) or list(outputs)


def validation_samples(validation, graph: Graph) -> list[dict[str, np.ndarray]]:
    """Per-run feeds from ``validation`` (as calibration data: an array, or input name -> array),
    checked against the model's inputs; none at all is refused, not counted as a pass."""
    from edgekit.converters.quant.calibration import prepare_samples

    arrays = validation.values() if isinstance(validation, dict) else [validation]
    if any(np.size(a) == 0 for a in arrays):
        raise ParameterError("{validation} is empty: it holds no samples, and the budget needs decisions to count")
    with _said_of_validation():
        feeds = prepare_samples(validation, graph)
    if not feeds:
        raise ParameterError("{validation} is empty: it holds no samples, and the budget needs decisions to count")
    return feeds


def load_validation(path: Path, **image_options) -> np.ndarray | dict[str, np.ndarray]:
    """Validation samples from a file or folder, read as calibration data is (see
    :func:`edgekit.converters.quant.calibration_data.load_calibration` for ``image_options``)."""
    from edgekit.converters.quant.calibration_data import load_calibration

    with _said_of_validation():
        return load_calibration(path, **image_options)


@contextmanager
def _said_of_validation():
    """Calibration data's checks, applied to validation data, said of it (naming ``validation``)."""
    try:
        yield
    except CalibrationError as exc:
        said = str(exc).replace("calibration", "validation").replace("{", "{{").replace("}", "}}")
        raise ParameterError("{validation}: " + said) from None


def _latencies(float_model: bytes, int8_model: bytes, mixed_model: bytes, threads: int = 1) -> Latencies:
    """Median latency of the three models on LiteRT with XNNPACK, in alternating rounds."""
    from edgekit.converters.speed import median_latencies

    ms = median_latencies({"float32": float_model, "int8": int8_model, "mixed": mixed_model}, threads, LATENCY_ROUNDS)
    return Latencies(ms["float32"], ms["int8"], ms["mixed"], threads=threads)
