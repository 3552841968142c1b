"""Nodule management guidelines as rule tables: Lung-RADS v2022 (lung cancer screening) and the
Fleischner Society 2017 guidelines (incidental nodules). The reader picks the context; each result
says which rule applied, so a number is never a black box.

Sizes are mean diameters ((long + short axis) / 2): Lung-RADS rounds them to 0.1 mm, Fleischner
to the nearest millimetre. Categories depend only on the inputs given here: morphology that only
a reader can judge (benign calcification, fat, perifissural shape, airway location, suspicious
features for 4X) comes in as flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("solid", "part-solid", "ground-glass")

LUNG_RADS_MANAGEMENT = {
    "0": "Additional lung cancer screening CT images and/or comparison to prior chest CT examinations is needed",
    "1": "Continue annual screening with LDCT in 12 months",
    "2": "Continue annual screening with LDCT in 12 months",
    "3": "6-month LDCT",
    "4A": "3-month LDCT; PET/CT may be considered if there is a solid nodule or solid component >= 8 mm",
    "4B": "Referral for further clinical evaluation: diagnostic chest CT with or without contrast; PET/CT may be "
          "considered if there is a solid nodule or solid component >= 8 mm; tissue sampling",
    "4X": "Referral for further clinical evaluation: diagnostic chest CT with or without contrast; PET/CT may be "
          "considered if there is a solid nodule or solid component >= 8 mm; tissue sampling",
}
CATEGORY_ORDER = ("0", "1", "2", "3", "4A", "4B", "4X")


@dataclass(frozen=True)
class Assessment:
    category: str
    management: str
    rule: str  # the table row that decided, in words


def _mm(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value) + 1e-9, digits)


def lung_rads_v2022(kind: str, mean_diameter_mm: float, solid_mean_diameter_mm: float | None = None, *,
                    baseline: bool = True, new: bool = False, growing: bool = False,
                    prior_category: str | None = None, stable_at_followup: bool = False,
                    benign_calcification_or_fat: bool = False, perifissural: bool = False,
                    suspicious_features: bool = False) -> Assessment:
    """Lung-RADS v2022 category of one nodule.

    baseline: first screening CT (no prior); new: absent on the prior; growing: mean diameter up
    by more than 1.5 mm within 12 months (see `is_growing`); prior_category with
    stable_at_followup: stepped management (a 3 stable or smaller at its 6-month follow-up
    becomes 2, a 4A stable or smaller at its 3-month follow-up becomes 3)."""
    if kind not in KINDS:
        raise ValueError(f"nodule type {kind!r} is not one of {', '.join(KINDS)}")
    d = _mm(mean_diameter_mm)
    solid = _mm(solid_mean_diameter_mm)
    if kind == "part-solid" and solid is None:
        raise ValueError("a part-solid nodule needs the mean diameter of its solid component")

    def result(category: str, rule: str) -> Assessment:
        if suspicious_features and category in ("3", "4A", "4B"):
            return Assessment("4X", LUNG_RADS_MANAGEMENT["4X"], f"{rule}; additional features increase suspicion")
        return Assessment(category, LUNG_RADS_MANAGEMENT[category], rule)

    if benign_calcification_or_fat:
        return result("1", "nodule with benign calcification or fat")
    if stable_at_followup and prior_category == "3" and not growing:
        return result("2", "category 3 nodule stable or smaller at 6-month follow-up")
    if stable_at_followup and prior_category == "4A" and not growing:
        return result("3", "category 4A nodule stable or smaller at 3-month follow-up")
    if perifissural and kind == "solid" and d < 10.0 and (baseline or new):
        return result("2", f"perifissural or juxtapleural solid nodule < 10 mm ({d} mm)")
    if kind == "solid":
        return result(*_solid(d, baseline, new, growing))
    if kind == "part-solid":
        return result(*_part_solid(d, solid, baseline, new, growing))
    if d < 30.0 or (not new and not baseline):
        return result("2", f"non-solid nodule {'< 30 mm' if d < 30.0 else '>= 30 mm, stable or slowly growing'} ({d} mm)")
    return result("3", f"non-solid nodule >= 30 mm on baseline or new ({d} mm)")


def _solid(d: float, baseline: bool, new: bool, growing: bool) -> tuple[str, str]:
    if new:
        if d < 4.0:
            return "2", f"new solid nodule < 4 mm ({d} mm)"
        if d < 6.0:
            return "3", f"new solid nodule 4 to < 6 mm ({d} mm)"
        if d < 8.0:
            return "4A", f"new solid nodule 6 to < 8 mm ({d} mm)"
        return "4B", f"new solid nodule >= 8 mm ({d} mm)"
    if growing:
        if d < 8.0:
            return "4A", f"growing solid nodule < 8 mm ({d} mm)"
        return "4B", f"growing solid nodule >= 8 mm ({d} mm)"
    # Baseline, or an existing nodule judged by size (size thresholds apply whenever reached).
    if d < 6.0:
        return "2", f"solid nodule < 6 mm ({d} mm)"
    if d < 8.0:
        return "3", f"solid nodule 6 to < 8 mm ({d} mm)"
    if d < 15.0:
        return "4A", f"solid nodule 8 to < 15 mm ({d} mm)"
    return "4B", f"solid nodule >= 15 mm ({d} mm)"


def _part_solid(d: float, solid: float, baseline: bool, new: bool, growing: bool) -> tuple[str, str]:
    if new or growing:
        what = "new" if new else "growing"
        if solid >= 4.0:
            return "4B", f"{what} part-solid nodule with solid component >= 4 mm ({solid} mm)"
        if solid > 0 and (growing or d >= 6.0):
            return "4A", f"{what} part-solid nodule with solid component < 4 mm ({solid} mm)"
        if new and d < 6.0:
            return "3", f"new part-solid nodule < 6 mm total ({d} mm)"
    if d < 6.0:
        return "2", f"part-solid nodule < 6 mm total ({d} mm)"
    if solid < 6.0:
        return "3", f"part-solid nodule >= 6 mm total with solid component < 6 mm ({solid} mm)"
    if solid < 8.0:
        return "4A", f"part-solid nodule with solid component 6 to < 8 mm ({solid} mm)"
    return "4B", f"part-solid nodule with solid component >= 8 mm ({solid} mm)"


def is_growing(prior_mean_diameter_mm: float, mean_diameter_mm: float, days: float) -> bool:
    """Lung-RADS growth: mean diameter up by more than 1.5 mm within 12 months."""
    return days <= 366 and _mm(mean_diameter_mm) - _mm(prior_mean_diameter_mm) > 1.5


def worst(assessments: list[Assessment]) -> Assessment | None:
    """The study's category is that of its most suspicious nodule."""
    return most_suspicious(assessments, lambda a: a.category)


def most_suspicious(items: list, category: Callable[[object], str]):
    """The item whose Lung-RADS `category(item)` is the most suspicious (the first of equals)."""
    return max(items, key=lambda x: CATEGORY_ORDER.index(category(x)), default=None)


def fleischner_2017(kind: str, mean_diameter_mm: float, solid_mean_diameter_mm: float | None = None, *,
                    multiple: bool = False, high_risk: bool = False) -> Assessment:
    """Fleischner Society 2017 recommendation for an incidental nodule (adults >= 35 years, not
    screening, no known cancer, not immunocompromised). Categories are the table's size bands."""
    if kind not in KINDS:
        raise ValueError(f"nodule type {kind!r} is not one of {', '.join(KINDS)}")
    d = round(float(mean_diameter_mm))  # Fleischner rounds the mean diameter to the nearest millimetre
    if kind == "solid":
        risk = "high" if high_risk else "low"
        many = "multiple" if multiple else "single"
        if d < 6:
            text = "Optional CT at 12 months" if high_risk else "No routine follow-up"
            return Assessment("<6 mm", text, f"{many} solid nodule < 6 mm, {risk} risk")
        if d <= 8:
            if multiple:
                text = "CT at 3-6 months, then " + ("CT at 18-24 months" if high_risk else "consider CT at 18-24 months")
            else:
                text = "CT at 6-12 months, then " + ("CT at 18-24 months" if high_risk else "consider CT at 18-24 months")
            return Assessment("6-8 mm", text, f"{many} solid nodule 6-8 mm, {risk} risk")
        if multiple:
            return Assessment(">8 mm", "CT at 3-6 months, then consider CT at 18-24 months",
                              f"multiple solid nodules > 8 mm, {risk} risk")
        return Assessment(">8 mm", "Consider CT at 3 months, PET/CT, or tissue sampling",
                          f"single solid nodule > 8 mm, {risk} risk")
    if multiple:
        if d < 6:
            return Assessment("<6 mm", "CT at 3-6 months; if stable, consider CT at 2 and 4 years",
                              "multiple subsolid nodules < 6 mm")
        return Assessment(">=6 mm", "CT at 3-6 months; subsequent management based on the most suspicious nodule(s)",
                          "multiple subsolid nodules >= 6 mm")
    if d < 6:
        return Assessment("<6 mm", "No routine follow-up", f"single {kind} nodule < 6 mm")
    if kind == "ground-glass":
        return Assessment(">=6 mm", "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years",
                          "single ground-glass nodule >= 6 mm")
    if solid_mean_diameter_mm is None:
        raise ValueError("a part-solid nodule needs the mean diameter of its solid component")
    return Assessment(">=6 mm", "CT at 3-6 months to confirm persistence; if unchanged and the solid component "
                                "remains < 6 mm, annual CT for 5 years", "single part-solid nodule >= 6 mm")
