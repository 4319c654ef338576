"""Pruning to a budget: the uniform channel ratio that reaches a MAC or parameter target."""

from __future__ import annotations

import onnx

from edgekit.converters.ir.analysis import count_macs, count_params
from edgekit.converters.prune.channels import ROUND_TO, find_groups, kept_count, prune_channels
from edgekit.errors import InputError, ParameterError

MAX_RATIO = 0.95

COST_NAMES = {"macs": "MACs", "params": "params"}


def _check_target(target: float, what: str) -> None:
    if not 0 < target < 1:
        raise ParameterError(f"{{{what}}} must lie strictly between 0 and 1, e.g. 0.5", **{what: target})


def _unreachable(target: float, what: str, reached: float) -> InputError:
    return InputError(
        f"cannot reach {target * 100:g}% of the {COST_NAMES[what]}: pruning every prunable group by "
        f"{MAX_RATIO:.0%} leaves {reached:.1%} (the rest sits in layers channel pruning cannot shrink)"
    )


def cost(model: onnx.ModelProto, what: str) -> int:
    from edgekit.converters.pipeline import import_onnx

    graph = import_onnx(model)
    return count_macs(graph) if what == "macs" else count_params(graph)


def prune_to_budget(
    model: onnx.ModelProto,
    target: float,
    what: str = "macs",
    criterion: str = "l1",
    min_channels: int = 1,
    exclude: frozenset[str] = frozenset(),
    round_to: int = ROUND_TO,
) -> tuple[onnx.ModelProto, float, float]:
    """(pruned model, ratio used, reached fraction of the dense cost) for ``target`` in (0, 1)."""
    _check_target(target, what)
    dense = cost(model, what)
    best = prune_channels(model, MAX_RATIO, criterion, min_channels, exclude, round_to)
    best_fraction = cost(best, what) / dense
    if best_fraction > target:
        raise _unreachable(target, what, best_fraction)
    lo, hi = 0.0, MAX_RATIO
    chosen, fraction, ratio = best, best_fraction, MAX_RATIO
    for _ in range(12):
        mid = (lo + hi) / 2
        candidate = prune_channels(model, mid, criterion, min_channels, exclude, round_to)
        f = cost(candidate, what) / dense
        if f <= target:
            chosen, fraction, ratio, hi = candidate, f, mid, mid
        else:
            lo = mid
    if round_to > 1:
        chosen, fraction = _fill(
            model, target, what, dense, ratio, chosen, fraction, criterion, min_channels, exclude, round_to
        )
    return chosen, ratio, fraction


def _fill(model, target, what, dense, ratio, chosen, fraction, criterion, min_channels, exclude, round_to):
    """Rounded channel counts move in steps of ``round_to``, so one ratio for every group can land
    well under the target; give channels back one tile at a time, widest groups first, while the
    cost stays within it."""
    groups = sorted(find_groups(model, exclude), key=lambda g: -g.channels)
    per_group = ratio if isinstance(ratio, dict) else {g.name: ratio for g in groups}
    counts = {g.name: kept_count(g.channels, per_group.get(g.name, 0.0), min_channels, round_to) for g in groups}
    width = {g.name: g.channels for g in groups}

    def ratios() -> dict[str, float]:
        return {name: 1 - n / width[name] for name, n in counts.items() if n < width[name]}

    grown = True
    while grown:
        grown = False
        for g in groups:
            if counts[g.name] + round_to > g.channels:
                continue
            counts[g.name] += round_to
            candidate = prune_channels(model, ratios(), criterion, min_channels, exclude, round_to)
            f = cost(candidate, what) / dense
            if f <= target:
                chosen, fraction, grown = candidate, f, True
            else:
                counts[g.name] -= round_to
    return chosen, fraction


def prune_by_sensitivity(
    model: onnx.ModelProto, target: float, samples, labels=None, criterion: str = "l1", round_to: int = ROUND_TO
) -> tuple[onnx.ModelProto, dict[str, float], float]:
    """Spend the MAC budget where the sensitivity table says it hurts least."""
    from edgekit.converters.prune.sensitivity import allocate, analyse

    _check_target(target, "macs")
    dense = cost(model, "macs")
    table = analyse(model, samples, labels, criterion=criterion, round_to=round_to)
    ratios = allocate(table, int(dense * (1 - target)))
    if not ratios:
        raise InputError("the sensitivity table offers no pruning step")
    pruned = prune_channels(model, ratios, criterion, round_to=round_to)
    return pruned, ratios, cost(pruned, "macs") / dense


def prune_by_latency(
    model: onnx.ModelProto,
    target: float,
    criterion: str = "l1",
    min_channels: int = 1,
    exclude: frozenset[str] = frozenset(),
    round_to: int = ROUND_TO,
    table=None,
    alpha: float = 1.0,
    threads: int = 1,
    progress=print,
    convert_options: dict | None = None,
) -> tuple[onnx.ModelProto, dict[str, float], float]:
    """Keep ``target`` of the MACs, pruning each group in proportion to the time its MACs cost
    (measured by :func:`edgekit.converters.prune.latency.measure` unless ``table`` is given):
    ratio = base * (time per MAC / mean) ** alpha, with base searched to meet the target."""
    import numpy as np

    from edgekit.converters.prune.latency import measure

    _check_target(target, "macs")
    if table is None:
        table = measure(
            model, 0.5, criterion, round_to, exclude, threads, progress=progress, convert_options=convert_options
        )
    efficiency = {row.group: max(row.efficiency, 0.0) for row in table}
    mean = float(np.mean(list(efficiency.values()))) if efficiency else 0.0
    if mean <= 0:
        raise InputError("the timings show no group whose pruning saves time; use the uniform allocation")
    weights = {g: max(e / mean, 0.1) ** alpha for g, e in efficiency.items()}

    def ratios(base: float) -> dict[str, float]:
        return {g: min(base * w, MAX_RATIO) for g, w in weights.items()}

    dense = cost(model, "macs")
    lo, hi = 0.0, MAX_RATIO / min(weights.values())
    chosen = prune_channels(model, ratios(hi), criterion, min_channels, exclude, round_to)
    fraction = cost(chosen, "macs") / dense
    if fraction > target:
        raise _unreachable(target, "macs", fraction)
    base = hi
    for _ in range(14):
        mid = (lo + hi) / 2
        candidate = prune_channels(model, ratios(mid), criterion, min_channels, exclude, round_to)
        f = cost(candidate, "macs") / dense
        if f <= target:
            chosen, fraction, base, hi = candidate, f, mid, mid
        else:
            lo = mid
    if round_to > 1:
        chosen, fraction = _fill(
            model, target, "macs", dense, ratios(base), chosen, fraction, criterion, min_channels, exclude, round_to
        )
    return chosen, ratios(base), fraction
