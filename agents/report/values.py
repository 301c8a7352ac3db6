"""Reading JSON values defensively: a wrong type or a non-finite number reads as missing.

``summary.json`` may come from an older build, an interrupted run or a hand edit; the report
shows what it can rather than failing on one odd value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["as_float", "as_int", "as_list", "as_mapping", "as_str", "threshold_text"]


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_mapping(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def threshold_text(sharing: Mapping[str, Any]) -> str:
    """The sharing gain's threshold as a reader should take it, on its scale."""
    value = as_float(sharing.get("threshold"))
    if value is None:
        return "?"
    scale = as_str(sharing.get("threshold_scale")) or "return"
    if scale == "over_baseline":
        return f"{value:.0%} better than the baseline controller"
    if scale == "normalised":
        return f"{value:g} (normalised: 0 random, 1 the baseline controller)"
    return f"{value:g}"
