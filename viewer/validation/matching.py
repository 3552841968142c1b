"""Detections against reference lesions, LUNA16's way.

Detections are taken by score, highest first. One whose centre lies inside a counted lesion
(`ReferenceLesion.contains`: mask, box stack, or within diameter/2 of a centre) hits it; a lesion
is credited once, to its highest-scoring detection. A later detection inside a lesion already
credited is a duplicate, and one inside only excluded findings (LIDC lesions too few readers
marked, nodules under 3 mm) is ignored: LUNA16 counts neither as a false positive. Every other
detection is a false positive. Duplicates and ignored detections are still listed, so a person
can look at each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.volume import Volume
from viewer.validation.lesion import ReferenceLesion

HIT, DUPLICATE, EXCLUDED, FALSE_POSITIVE = "hit", "duplicate", "inside an excluded finding", "false positive"


@dataclass(frozen=True, eq=False)
class Finding:
    """What the validated method reported at one place: a detection, or a model's component."""

    id: str
    centre_lps_mm: tuple[float, float, float]
    score: float
    diameter_mm: float | None = None
    volume_mm3: float | None = None
    mask: Volume | None = None             # on a sub-grid of the study
    type: str = ""                         # solid / part-solid / ground-glass, when measured
    kind: str = ""                         # nodule / mass / ..., passed through from the detection
    method: str = ""
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"id": self.id, "centre_lps_mm": [round(v, 2) for v in self.centre_lps_mm], "score": round(self.score, 4),
               "diameter_mm": None if self.diameter_mm is None else round(self.diameter_mm, 2),
               "volume_mm3": None if self.volume_mm3 is None else round(self.volume_mm3, 1),
               "type": self.type, "kind": self.kind, "method": self.method}
        out.update(self.details)
        return out


@dataclass
class Match:
    finding: Finding
    outcome: str                           # HIT, DUPLICATE, EXCLUDED or FALSE_POSITIVE
    lesion: ReferenceLesion | None = None


@dataclass
class MatchResult:
    matches: list[Match]
    credited: dict[int, Match]             # id(lesion) -> the hit that credits it

    def hit_of(self, lesion: ReferenceLesion) -> Match | None:
        return self.credited.get(id(lesion))

    @property
    def false_positives(self) -> list[Match]:
        return [m for m in self.matches if m.outcome == FALSE_POSITIVE]


def match(findings: list[Finding], lesions: list[ReferenceLesion]) -> MatchResult:
    credited: dict[int, Match] = {}
    matches = []
    for finding in sorted(findings, key=lambda f: -f.score):
        point = np.asarray(finding.centre_lps_mm, float)[None]
        inside = [lesion for lesion in lesions if lesion.contains(point)[0]]
        counted = [lesion for lesion in inside if lesion.counts]
        free = [lesion for lesion in counted if id(lesion) not in credited]
        if free:
            lesion = min(free, key=lambda l: float(np.linalg.norm(np.subtract(l.centre_lps_mm, finding.centre_lps_mm))))
            result = Match(finding, HIT, lesion)
            credited[id(lesion)] = result
        elif counted:
            result = Match(finding, DUPLICATE, counted[0])
        elif inside:
            result = Match(finding, EXCLUDED, inside[0])
        else:
            result = Match(finding, FALSE_POSITIVE)
        matches.append(result)
    return MatchResult(matches, credited)


def dice(a: Volume, b: Volume) -> float:
    """Dice of two masks that lie on sub-grids of one study grid (same spacing and direction),
    compared voxel by voxel in the box that holds both."""
    if not (np.allclose(a.spacing, b.spacing, atol=1e-4) and np.allclose(a.direction, b.direction, atol=1e-5)):
        raise ValueError(f"masks on different grids (spacing {a.spacing} vs {b.spacing}); cannot compare voxels")
    offset = np.rint(a.lps_to_index(b.affine[:3, 3])).astype(int)[::-1]  # b's first voxel in a's (z, y, x)
    lo = np.minimum(0, offset)
    hi = np.maximum(np.array(a.shape), offset + np.array(b.shape))
    canvas_a = np.zeros(hi - lo, bool)
    canvas_b = np.zeros(hi - lo, bool)
    sa, sb = -lo, offset - lo
    canvas_a[sa[0]:sa[0] + a.shape[0], sa[1]:sa[1] + a.shape[1], sa[2]:sa[2] + a.shape[2]] = np.asarray(a.voxels) > 0
    canvas_b[sb[0]:sb[0] + b.shape[0], sb[1]:sb[1] + b.shape[1], sb[2]:sb[2] + b.shape[2]] = np.asarray(b.voxels) > 0
    total = int(canvas_a.sum() + canvas_b.sum())
    return 2.0 * int((canvas_a & canvas_b).sum()) / total if total else 0.0
