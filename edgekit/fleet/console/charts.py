"""Time-series charts as geometry for server-rendered SVG: the pages draw them without JavaScript.
Only numbers and label strings leave here; the template escapes the labels."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

WIDTH, HEIGHT = 760, 190
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 26
MAX_POINTS = WIDTH  # more points than pixel columns only costs bytes
DOTS_UP_TO = 240  # a dot per point while they stay apart (and a lone point is visible)


@dataclass
class Series:
    name: str
    css: str  # its colour class in the page's stylesheet
    points: list[tuple[float, float]]  # (ts, value)
    hollow: list[bool] = field(default_factory=list)  # per point: drawn open (an estimate, not a reading)


@dataclass
class Chart:
    title: str
    unit: str
    t0: float
    t1: float
    series: list[Series]
    marks: list[tuple[float, str]]  # (ts, label): model versions on the time axis

    @property
    def point_count(self) -> int:
        return sum(len(s.points) for s in self.series)

    def geometry(self) -> dict:
        values = [v for s in self.series for _, v in s.points]
        top = _nice_ceiling(max(values)) if values else 1.0
        span = max(self.t1 - self.t0, 1e-9)
        plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def x(ts: float) -> float:
            return round(LEFT + (ts - self.t0) / span * plot_w, 1)

        def y(value: float) -> float:
            return round(TOP + plot_h - max(0.0, value) / top * plot_h, 1)

        lines = []
        for s in self.series:
            points, hollow = _thin(s.points, s.hollow)
            dots = (
                [{"x": x(t), "y": y(v), "hollow": h} for (t, v), h in zip(points, hollow, strict=True)]
                if len(points) <= DOTS_UP_TO
                else []
            )
            lines.append(
                {
                    "name": s.name,
                    "css": s.css,
                    "polyline": " ".join(f"{x(t)},{y(v)}" for t, v in points),
                    "dots": dots,
                    "count": len(s.points),
                }
            )
        y_ticks = [{"y": y(top * i / 4), "label": _format(top * i / 4)} for i in range(5)]
        x_ticks = [{"x": x(self.t0 + span * i / 4), "label": _clock(self.t0 + span * i / 4, span)} for i in range(5)]
        marks = [{"x": x(ts), "label": label} for ts, label in self.marks if self.t0 <= ts <= self.t1]
        return {
            "title": self.title,
            "unit": self.unit,
            "width": WIDTH,
            "height": HEIGHT,
            "plot": {"left": LEFT, "top": TOP, "right": WIDTH - RIGHT, "bottom": HEIGHT - BOTTOM},
            "lines": lines,
            "y_ticks": y_ticks,
            "x_ticks": x_ticks,
            "marks": marks,
            "points": self.point_count,
        }


def _thin(points: list[tuple[float, float]], hollow: list[bool]) -> tuple[list, list]:
    hollow = hollow or [False] * len(points)
    if len(points) <= MAX_POINTS:
        return points, hollow
    step = math.ceil(len(points) / MAX_POINTS)
    return points[::step], hollow[::step]


def _nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at or above ``value``: round axis labels."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * power:
            return factor * power
    return 10 * power


def _format(value: float) -> str:
    return f"{value:.4g}"


def _clock(ts: float, span: float) -> str:
    return time.strftime("%H:%M" if span <= 86400 else "%m-%d %H:%M", time.gmtime(ts))
