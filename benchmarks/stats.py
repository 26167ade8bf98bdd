"""Small statistics helpers for the benchmarks, and the Figure every benchmark reports.

Latencies are kept in seconds everywhere; the Figure carries the display unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks
    (the same definition as numpy's default). NaN for an empty sequence."""
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * (p / 100.0)
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(ordered[lo])
    frac = rank - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99.0)


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def rate(count: float, seconds: float) -> float:
    """Events per second; NaN when no time elapsed."""
    return count / seconds if seconds > 0 else math.nan


def ratio(value: float | None, floor: float | None) -> float | None:
    """value / floor, or None when either side is missing, NaN, or the floor is zero."""
    if value is None or floor is None:
        return None
    if math.isnan(value) or math.isnan(floor) or floor == 0:
        return None
    return value / floor


def efficiency(throughput_n: float, throughput_1: float, n: int) -> float | None:
    """Parallel efficiency: throughput with n workers over n x the single-worker throughput."""
    if n <= 0:
        return None
    return ratio(throughput_n, throughput_1 * n)


def ms(seconds: float) -> float:
    return seconds * 1000.0


@dataclass(frozen=True)
class Summary:
    """Distribution summary of one list of samples (seconds for latencies)."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        v = list(values)
        if not v:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan)
        return cls(
            n=len(v),
            min=float(min(v)),
            p50=percentile(v, 50),
            p90=percentile(v, 90),
            p99=percentile(v, 99),
            max=float(max(v)),
            mean=mean(v),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Figure:
    """One reported number, optionally set against the floor it should be compared with.

    value / floor_value are in `unit` (e.g. both in ms). ratio = value / floor_value
    (computed when left None and both are present). target is free text such as
    "<= 3x floor"; passed is None when there is no pass/fail criterion.
    """

    name: str
    value: float
    unit: str
    floor_name: str | None = None
    floor_value: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None:
            self.ratio = ratio(self.value, self.floor_value)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # JSON has no NaN: report missing numbers as null
        for key in ("value", "floor_value", "ratio"):
            v = d[key]
            if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                d[key] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        value = d.get("value")
        return cls(
            name=d["name"],
            value=math.nan if value is None else float(value),
            unit=d.get("unit", ""),
            floor_name=d.get("floor_name"),
            floor_value=d.get("floor_value"),
            ratio=d.get("ratio"),
            target=d.get("target", ""),
            passed=d.get("passed"),
            note=d.get("note", ""),
        )
