"""Nodule growth between two time points: volume change, volume doubling time (VDT) with an
interval from the measurement error, and the Lung-RADS growth flag.

VDT = dt * ln 2 / ln(V2 / V1). Small volume changes make the VDT explode and flip sign with
noise, so the interval matters as much as the value: it is computed from the relative volume
error of the measurement (both volumes off by up to +-error in the worst directions), and the
result says when the interval reaches from the suspicious range into the benign one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from viewer.analysis.guidelines import is_growing

SUSPICIOUS_VDT_DAYS = 400.0  # solid nodules doubling faster than this are suspicious for malignancy
BENIGN_VDT_DAYS = 600.0      # slower (or shrinking): growth typical of benign nodules
DEFAULT_RELATIVE_ERROR = 0.05  # RadSight's measured median volume error on free nodules is ~2%; 5% covers most


@dataclass(frozen=True)
class Growth:
    days: float
    volume_change_pct: float
    vdt_days: float | None            # None when the volume did not change; negative when it shrank
    vdt_interval_days: tuple[float, float] | None  # (fastest, slowest); inf where the error allows no growth
    growing: bool                      # Lung-RADS: mean diameter up by > 1.5 mm within 12 months
    assessment: str                    # what the VDT interval says, in words

    def to_json(self) -> dict:
        def finite(v):
            return None if v is None or math.isinf(v) else round(v, 1)

        return {"days": self.days, "volume_change_pct": round(self.volume_change_pct, 1),
                "vdt_days": finite(self.vdt_days),
                "vdt_interval_days": [finite(v) for v in self.vdt_interval_days] if self.vdt_interval_days else None,
                "growing": self.growing, "assessment": self.assessment}


def vdt(days: float, v1: float, v2: float) -> float | None:
    """Volume doubling time in days (negative: halving time); None for no change."""
    if v1 <= 0 or v2 <= 0:
        raise ValueError("volumes must be positive")
    ratio = math.log(v2 / v1)
    return None if ratio == 0 else days * math.log(2) / ratio


def growth(days: float, prior_volume_mm3: float, volume_mm3: float, prior_mean_diameter_mm: float,
           mean_diameter_mm: float, relative_error: float = DEFAULT_RELATIVE_ERROR) -> Growth:
    if days <= 0:
        raise ValueError(f"the prior must be older than the current study (interval {days} days)")
    value = vdt(days, prior_volume_mm3, volume_mm3)
    fastest = _positive_vdt(days, prior_volume_mm3 * (1 - relative_error), volume_mm3 * (1 + relative_error))
    slowest = _positive_vdt(days, prior_volume_mm3 * (1 + relative_error), volume_mm3 * (1 - relative_error))
    interval = (fastest, slowest)
    return Growth(days, (volume_mm3 / prior_volume_mm3 - 1) * 100, value, interval,
                  is_growing(prior_mean_diameter_mm, mean_diameter_mm, days), _assess(interval))


def _positive_vdt(days: float, v1: float, v2: float) -> float:
    """VDT, or infinity when these volumes show no growth (no doubling ever)."""
    return days * math.log(2) / math.log(v2 / v1) if v2 > v1 else math.inf


def _assess(interval: tuple[float, float]) -> str:
    low, high = interval
    if math.isinf(high):
        # The volumes are compatible with no growth at all; `low` is the fastest VDT the error allows.
        fastest = "" if math.isinf(low) else f" (fastest VDT the error allows: {low:.0f} days)"
        return f"no growth beyond the measurement error{fastest}"
    if high < SUSPICIOUS_VDT_DAYS:
        return f"VDT < {SUSPICIOUS_VDT_DAYS:.0f} days: growth in the range suspicious for malignancy"
    if low > BENIGN_VDT_DAYS:
        return f"VDT > {BENIGN_VDT_DAYS:.0f} days: growth in the range typical of benign nodules"
    if low < SUSPICIOUS_VDT_DAYS and high > BENIGN_VDT_DAYS:
        return ("indeterminate: within the measurement error the VDT spans both the suspicious "
                f"(< {SUSPICIOUS_VDT_DAYS:.0f} days) and the benign (> {BENIGN_VDT_DAYS:.0f} days) range")
    return f"indeterminate: VDT interval reaches into {SUSPICIOUS_VDT_DAYS:.0f}-{BENIGN_VDT_DAYS:.0f} days"
