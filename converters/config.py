"""What a conversion is asked to do, as typed values: :class:`QuantConfig` and :class:`PruneConfig`
are what :func:`edgekit.converters.pipeline.convert` takes and what the CLI builds from its flags.

:class:`AccuracyBudget` is the accuracy-aware int8 mode's request: validation data, a decision
rule and the share of decisions allowed to change. Each config checks its own values when made,
so a mistake is refused before any work. The errors (:class:`edgekit.errors.ParameterError`) name the
library's parameters (``round_to``); a command line renames them to its own flags
(``--prune-round-to``) with :meth:`ParameterError.renamed`.
Nothing here imports onnx: the CLI builds its parser from these modules on a device too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.errors import ParameterError

QUANTIZE_MODES = ("int8", "int16x8", "dynamic", "fp16")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")  # the first is the default
# what the accuracy budget tries when no method is asked for: not entropy, whose calibration takes
# 20x min-max's (PP-OCRv4 rec, 24 samples: 73 s against 3.4 s; percentile 12 s, mse 14 s)
BUDGET_METHODS = ("minmax", "percentile", "mse")
IO_TYPES = ("float32", "int8", "uint8")
WEIGHT_ROUNDINGS = ("nearest", "reconstruct")  # the first is the default
PRUNE_ALLOCATIONS = ("uniform", "latency")
MAX_CLUSTERS = 256  # the int8 grid has 256 values: more clusters than that share nothing


def _check_fraction(name: str, value: float | None, example: float) -> None:
    if value is not None and not 0 < value < 1:
        raise ParameterError(f"{{{name}}} must lie strictly between 0 and 1, e.g. {example:g}", **{name: value})


@dataclass(frozen=True)
class AccuracyBudget:
    """The accuracy-aware int8 mode: keep in float the fewest layers for which at most
    ``max_changed`` (a share, 0 <= share < 1) of the decisions the int8 model makes on the
    ``validation`` samples (an array, or a dict input name -> array, as ``calibration``) differ
    from those of the float model on onnxruntime. ``decision`` names how outputs become decisions
    (see :data:`edgekit.converters.quant.accuracy.DECISION_RULES`: ``argmax`` over the last axis,
    ``threshold:T``, ``detections:CONF`` for a YOLOv8/YOLO11 head), on every output or those
    ``decision_outputs`` names (not a recurrent model's state). ``measure_latency`` times
    float32, all-int8 and the chosen model here. ``refine_trials`` bounds the models measured
    after the search to drop kept layers the budget does not need, costliest first (0: keep what
    the search found)."""

    validation: Any
    max_changed: float
    decision: str = "argmax"
    decision_outputs: tuple[str, ...] = ()
    measure_latency: bool = True
    refine_trials: int = 12

    def __post_init__(self) -> None:
        from edgekit.converters.quant.accuracy import decision_rule_for  # numpy only: no onnx

        if isinstance(self.max_changed, bool) or not isinstance(self.max_changed, (int, float)):
            raise ParameterError("{max_changed} must be a share of the decisions, e.g. 0.01")
        if not 0 <= self.max_changed < 1:
            raise ParameterError(
                "{max_changed} must be a share of the decisions, at least 0 and below 1 (1% is 0.01)",
                max_changed=float(self.max_changed),
            )
        if self.validation is None:
            raise ParameterError("{max_changed} needs {validation:DATA}: the samples the decisions are counted on")
        decision_rule_for(self.decision)  # refuses an unknown rule or a bad argument now, before any work
        object.__setattr__(self, "decision_outputs", tuple(self.decision_outputs or ()))
        if not all(isinstance(name, str) and name for name in self.decision_outputs):
            raise ParameterError("{decision_outputs} must be output names", decision_outputs=self.decision_outputs)
        if isinstance(self.refine_trials, bool) or not isinstance(self.refine_trials, int) or self.refine_trials < 0:
            raise ParameterError("{refine_trials} must be a whole number >= 0", refine_trials=self.refine_trials)


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize: ``mode`` (int8, int16x8, dynamic, fp16); for int8 and int16x8 the
    ``calibration`` samples (None for a QDQ model, which brings its own scales), the range
    ``method`` (None: minmax; with ``accuracy_budget``, each of :data:`BUDGET_METHODS`, and each
    again with ``smooth_activations`` where the model has chains for it and it is not set,
    keeping the one whose all-int8 model changes the fewest decisions), per-channel weights, the
    model's ``io_type``, ONNX nodes to ``keep_float``, the bias correction of the weights'
    rounding error; ``auto_mixed=DB`` also keeps in float every layer whose int8 output loses
    more than DB dB of SQNR; ``accuracy_budget`` (:class:`AccuracyBudget`) keeps in float the
    fewest layers that hold a budget of changed decisions on validation data.
    ``max_weight_values=N`` (int8; a bound by op or ONNX node name is a dict) makes the writer
    refuse a model whose weights hold more than N distinct values in an output channel: binary
    weights hold 2, ternary 3. ``smooth_activations`` (calibrated int8) equalizes the channels
    between a convolution and the depthwise convolution after its HardSwish, exactly in float
    (:mod:`edgekit.converters.passes.smooth`). ``float_where_faster`` (int8 on a CPU target) times
    every weighted op in int8 and in float on this machine and keeps in float those slower in
    int8, if the model is then faster (:mod:`edgekit.converters.quant.faster`); with
    ``accuracy_budget``, on top of the budget's choice and only if the budget still holds.
    ``weight_rounding="reconstruct"`` (calibrated int8 and int16x8) rounds each weight by
    layer-wise reconstruction on the calibration data instead of to nearest
    (:mod:`edgekit.converters.quant.reconstruct`)."""

    mode: str = "int8"
    calibration: Any = None
    method: str | None = None
    per_channel: bool = True
    io_type: str = "float32"
    keep_float: tuple[str, ...] = ()
    bias_correction: bool = True
    fully_integer: bool = False
    auto_mixed: float | None = None
    accuracy_budget: AccuracyBudget | None = None
    max_weight_values: int | Mapping[str, int] | None = None
    smooth_activations: bool = False
    float_where_faster: bool = False
    weight_rounding: str = WEIGHT_ROUNDINGS[0]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float or ()))
        if self.mode not in QUANTIZE_MODES:
            raise ParameterError(f"{{mode}} is not a quantization; choose {', '.join(QUANTIZE_MODES)}", mode=self.mode)
        if self.method is not None and self.method not in CALIBRATION_METHODS:
            raise ParameterError(f"{{method}} is unknown; choose {', '.join(CALIBRATION_METHODS)}", method=self.method)
        if self.io_type not in IO_TYPES:
            raise ParameterError(f"{{io_type}} is unknown; choose {', '.join(IO_TYPES)}", io_type=self.io_type)
        if self.auto_mixed is not None and self.mode != "int8":
            raise ParameterError("{auto_mixed} goes with {mode:int8}")
        if self.accuracy_budget is not None and self.mode != "int8":
            raise ParameterError("{accuracy_budget} goes with {mode:int8}")
        if self.accuracy_budget is not None and self.auto_mixed is not None:
            raise ParameterError("{accuracy_budget} and {auto_mixed} both choose the layers kept in float; give one")
        if self.smooth_activations and (self.mode != "int8" or self.calibration is None):
            raise ParameterError(
                "{smooth_activations} goes with {mode:int8} and {calibration:DATA}: "
                "it measures the channel ranges on the calibration samples"
            )
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ParameterError(
                f"{{weight_rounding}} is unknown; choose {', '.join(WEIGHT_ROUNDINGS)}",
                weight_rounding=self.weight_rounding,
            )
        if self.weight_rounding != "nearest" and (self.mode not in ("int8", "int16x8") or self.calibration is None):
            raise ParameterError(
                "{weight_rounding} goes with {mode:int8} (or int16x8) and {calibration:DATA}: "
                "it reconstructs each layer's output on the calibration samples",
                weight_rounding=self.weight_rounding,
            )
        self._check_float_where_faster()
        self._check_max_weight_values()

    def _check_float_where_faster(self) -> None:
        if not self.float_where_faster:
            return
        if self.mode != "int8" or self.fully_integer:
            raise ParameterError("{float_where_faster} goes with {mode:int8} on a CPU target (not the Edge TPU)")

    def _check_max_weight_values(self) -> None:
        bound = self.max_weight_values
        if bound is None:
            return
        if self.mode != "int8":
            raise ParameterError("{max_weight_values} goes with {mode:int8}: the int8 self-check counts the values")
        for value in bound.values() if isinstance(bound, Mapping) else [bound]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ParameterError(
                    "{max_weight_values} must be a whole number >= 2 (binary weights hold 2 values)",
                    max_weight_values=value,
                )

    def quantize_options(self) -> dict[str, Any]:
        """The keywords of :func:`edgekit.converters.quant.quantizer.quantize_graph`."""
        return {
            "mode": self.mode,
            **self.calibration_options(),
            "per_channel": self.per_channel,
            "io_type": self.io_type,
            "keep_float": list(self.keep_float),
            "fully_integer": self.fully_integer,
        }

    def calibration_options(self) -> dict[str, Any]:
        """The keywords of :func:`edgekit.converters.quant.quantizer.calibrate_graph`."""
        method = self.method or CALIBRATION_METHODS[0]
        return {
            "calibration": self.calibration,
            "method": method,
            "bias_correction": self.bias_correction,
            "weight_rounding": self.weight_rounding,
        }

    def methods_to_try(self) -> tuple[str, ...]:
        """The calibration methods the conversion measures: the one asked for; with an accuracy
        budget and none asked for, every one (the budget's decisions choose)."""
        if self.method is None and self.accuracy_budget is not None:
            return BUDGET_METHODS
        return (self.method or CALIBRATION_METHODS[0],)


@dataclass(frozen=True)
class PruneConfig:
    """What to prune before converting. Structured channel pruning (at most one budget:
    ``ratio``, the share of every group's channels to remove; ``macs`` or ``params``, the
    fraction of the MACs or parameters to keep), ranked by ``criterion``, keeping a multiple
    of ``round_to`` channels (None: the pruner's default); ``allocation="latency"`` (with
    ``macs``) prunes more where MACs cost more time;
    ``bias_correct`` shifts biases so output means on ``samples`` match the dense model's.
    Then weight compression: ``sparsity`` zeroes that share of the weights, ``clusters``
    shares N values per output channel (k-means on the int8 grid)."""

    ratio: float | None = None
    macs: float | None = None
    params: float | None = None
    criterion: str = "l1"
    round_to: int | None = None
    allocation: str = "uniform"
    bias_correct: bool = False
    samples: Any = None
    sparsity: float | None = None
    clusters: int | None = None

    def __post_init__(self) -> None:
        budgets = [name for name in ("ratio", "macs", "params") if getattr(self, name) is not None]
        if len(budgets) > 1:
            raise ParameterError(
                " and ".join(f"{{{name}}}" for name in budgets) + " are budgets for one pruning; give one"
            )
        for name in budgets:
            _check_fraction(name, getattr(self, name), 0.5)
        _check_fraction("sparsity", self.sparsity, 0.8)
        if self.round_to is not None and self.round_to < 1:
            raise ParameterError("{round_to} must be a positive channel count, e.g. 8", round_to=self.round_to)
        if self.clusters is not None and not 2 <= self.clusters <= MAX_CLUSTERS:
            raise ParameterError(f"{{clusters}} must be between 2 and {MAX_CLUSTERS}, e.g. 16", clusters=self.clusters)
        if self.allocation not in PRUNE_ALLOCATIONS:
            raise ParameterError(
                f"{{allocation}} is unknown; choose {', '.join(PRUNE_ALLOCATIONS)}", allocation=self.allocation
            )
        if not self.channels and (self.bias_correct or self.allocation != "uniform"):
            which = "{bias_correct}" if self.bias_correct else "{allocation}"
            raise ParameterError(which + " goes with {ratio:R} or {macs:F}")
        if self.allocation == "latency" and self.macs is None:
            raise ParameterError("{allocation:latency} goes with {macs:F}")
        if self.bias_correct and self.samples is None:
            raise ParameterError("{bias_correct} needs {samples:DATA} (the samples it measures the layers on)")
        if self.bias_correct and isinstance(self.samples, Mapping) and len(self.samples) != 1:
            raise ParameterError("{bias_correct} needs {samples} for a single input")

    @property
    def channels(self) -> bool:
        """Whether structured channel pruning is asked for."""
        return self.ratio is not None or self.macs is not None or self.params is not None

    @property
    def weights(self) -> bool:
        """Whether weight compression (sparsity, clustering) is asked for."""
        return self.sparsity is not None or self.clusters is not None
