"""Study-level patterns that are not nodules: multifocal ground-glass and part-solid opacities.

An infection or inflammation (COVID-19 pneumonia, organising pneumonia, oedema) shows many
subsolid opacities in both lungs. Each one, taken alone, looks like a ground-glass or part-solid
nodule, and listing them as nodules turns a pneumonia into a screening result of category 2-4.
Lung-RADS v2022 gives such studies category 0: "findings suggestive of an inflammatory or
infectious process", to be resolved on a short-interval CT. So when the subsolid findings are
many and bilateral, they are reported as one pattern with its members, and the nodule list keeps
only what stays actionable within that pattern: masses and solid nodules of 8 mm or more (smaller
solid foci in a pneumonia are part of it and are re-examined at the follow-up CT anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.analysis.detection import Detection

MIN_SUBSOLID = 6          # subsolid findings >= MIN_SIZE_MM in the study ...
MIN_PER_LUNG = 2          # ... with at least this many in each lung
MIN_SIZE_MM = 5.0
KEEP_SOLID_MM = 8.0       # within a pattern, solid nodules at least this large stay on the nodule list
LUNG_RADS_CATEGORY = "0"
LUNG_RADS_RULE = ("multifocal bilateral ground-glass / part-solid opacities: findings suggestive of an "
                  "inflammatory or infectious process")


@dataclass(frozen=True)
class OpacityPattern:
    """Multifocal subsolid opacities: the detections that make it up and how they spread."""

    members: tuple[Detection, ...]
    right: int
    left: int

    @property
    def description(self) -> str:
        largest = max(d.measurement.mean_diameter_mm for d in self.members)
        return (f"multifocal ground-glass and part-solid opacities in both lungs ({len(self.members)} foci: "
                f"{self.right} right, {self.left} left; largest {largest:.0f} mm), suggestive of an "
                "inflammatory or infectious process")

    def to_json(self) -> dict:
        return {"kind": "multifocal-opacities", "description": self.description, "count": len(self.members),
                "right": self.right, "left": self.left,
                "lung_rads": {"version": "v2022", "category": LUNG_RADS_CATEGORY, "rule": LUNG_RADS_RULE},
                "members": [{"centre_lps_mm": [round(v, 1) for v in d.measurement.centre_lps_mm],
                             "mean_diameter_mm": round(d.measurement.mean_diameter_mm, 1),
                             "type": d.measurement.type, "side": d.side} for d in self.members]}


def split_pattern(detections: list[Detection]) -> tuple[OpacityPattern | None, list[Detection]]:
    """(the pattern or None, the detections still reported as nodules or masses)."""
    subsolid = [d for d in detections if d.measurement.kind == "nodule" and d.measurement.type != "solid"
                and d.measurement.mean_diameter_mm >= MIN_SIZE_MM]
    right = sum(d.side == "right" for d in subsolid)
    left = sum(d.side == "left" for d in subsolid)
    if len(subsolid) < MIN_SUBSOLID or min(right, left) < MIN_PER_LUNG:
        return None, detections
    kept = [d for d in detections if d.measurement.kind == "mass" or
            (d.measurement.type == "solid" and d.measurement.mean_diameter_mm >= KEEP_SOLID_MM)]
    members = tuple(d for d in detections if d not in kept)
    return OpacityPattern(members, sum(d.side == "right" for d in members), sum(d.side == "left" for d in members)), kept
