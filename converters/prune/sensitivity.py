"""Sensitivity analysis: prune each channel group alone at several ratios and measure what it
costs the model's output (SQNR against the dense model, or accuracy with labels). The budgeted
pruner spends a MAC budget where the table says it hurts least."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgekit.converters.prune.channels import ROUND_TO, find_groups, prune_channels
from edgekit.errors import InputError

RATIOS = (0.25, 0.5, 0.75)


@dataclass
class Sensitivity:
    group: str
    macs_saved: dict[float, int]
    score: dict[float, float]  # SQNR dB (or accuracy) with the group pruned at each ratio
    dense: float  # the same measure for the unpruned model

    def row(self) -> str:
        cells = "  ".join(f"{self.score[r]:>8.2f}" for r in sorted(self.score))
        return f"{self.group[:48]:<48} {cells}"


def _outputs(model: onnx.ModelProto, samples: np.ndarray) -> np.ndarray:
    from edgekit.converters.harness import OnnxRunner

    runner = OnnxRunner(model)
    name = runner.input_names[0]
    return np.concatenate([next(iter(runner({name: s[None]}).values())) for s in samples])


def _score(reference: np.ndarray, output: np.ndarray, labels: np.ndarray | None) -> float:
    if labels is not None:
        return float(np.mean(output.argmax(-1) == labels))
    from edgekit.converters.verification import sqnr_db

    return min(sqnr_db(reference, output), 120.0)


def analyse(
    model: onnx.ModelProto,
    samples: np.ndarray,
    labels: np.ndarray | None = None,
    ratios=RATIOS,
    criterion: str = "l1",
    round_to: int = ROUND_TO,
) -> list[Sensitivity]:
    from edgekit.converters.prune.budget import cost

    groups = find_groups(model)
    if not groups:
        raise InputError("nothing is prunable: channel pruning needs Conv -> [BN/activation] -> Conv/Gemm chains")
    dense_macs = cost(model, "macs")
    reference = _outputs(model, samples)
    dense = _score(reference, reference, labels)
    table = []
    for g in groups:
        saved, score = {}, {}
        for r in ratios:
            pruned = prune_channels(model, {g.name: r}, criterion, round_to=round_to)
            saved[r] = dense_macs - cost(pruned, "macs")
            score[r] = _score(reference, _outputs(pruned, samples), labels)
        table.append(Sensitivity(g.name, saved, score, dense))
    return table


def allocate(table: list[Sensitivity], macs_to_save: int) -> dict[str, float]:
    """Per-group ratios: greedily take the next ratio step that costs the least score per MAC
    saved, until the savings (summed over groups, an approximation) reach ``macs_to_save``."""
    chosen: dict[str, float] = {}
    saved = 0
    while saved < macs_to_save:
        best = None
        for s in table:
            current = chosen.get(s.group)
            steps = sorted(r for r in s.score if current is None or r > current)
            if not steps:
                continue
            r = steps[0]
            before_score = s.dense if current is None else s.score[current]
            gain = s.macs_saved[r] - (s.macs_saved[current] if current else 0)
            if gain <= 0:
                continue
            loss = max(before_score - s.score[r], 0.0) + 1e-9
            if best is None or loss / gain < best[0]:
                best = (loss / gain, s.group, r, gain)
        if best is None:
            break
        chosen[best[1]] = best[2]
        saved += best[3]
    return chosen


def format_table(table: list[Sensitivity]) -> str:
    ratios = sorted(table[0].score) if table else []
    header = f"{'group (producer)':<48} " + "  ".join(f"{'r=' + str(r):>8}" for r in ratios)
    return "\n".join([header, *(s.row() for s in table)])
