"""FROC and the LUNA16 competition performance metric (CPM).

The FROC curve plots sensitivity (hit lesions / counted lesions) against the mean number of false
positives per scan as the score threshold falls through every score; the CPM is the mean
sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (Setio et al. 2017). The
curve has one point per distinct score, from (0, 0), and is read between points by linear
interpolation, as the LUNA16 evaluation script does with numpy.interp on its ROC points (beyond
the last point the sensitivity stays at its last value). Written here rather than taken from
scikit-learn's roc_curve, which the LUNA16 script wraps, because that is a dozen lines and
scikit-learn is not otherwise needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Froc:
    false_positives_per_scan: tuple[float, ...]
    sensitivity: tuple[float, ...]
    thresholds: tuple[float, ...]          # the score threshold of each point (inf for the start)
    lesions: int
    scans: int

    def sensitivity_at(self, rate: float) -> float:
        """Sensitivity at `rate` false positives per scan, linear between the curve's points; at a
        rate where the curve rises vertically, the top."""
        fps, sens = np.asarray(self.false_positives_per_scan), np.asarray(self.sensitivity)
        i = int(np.searchsorted(fps, rate, side="right")) - 1
        if i >= len(fps) - 1:
            return float(sens[-1])
        x0, x1, y0, y1 = fps[i], fps[i + 1], sens[i], sens[i + 1]
        return float(y0 + (y1 - y0) * (rate - x0) / (x1 - x0)) if x1 > x0 else float(y1)

    @property
    def cpm(self) -> float:
        return float(np.mean([self.sensitivity_at(r) for r in FP_RATES]))

    def to_json(self) -> dict:
        return {"false_positives_per_scan": [round(v, 4) for v in self.false_positives_per_scan],
                "sensitivity": [round(v, 4) for v in self.sensitivity],
                "thresholds": [None if not np.isfinite(t) else round(t, 4) for t in self.thresholds],
                "sensitivity_at": {f"{r:g}": round(self.sensitivity_at(r), 4) for r in FP_RATES},
                "cpm": round(self.cpm, 4), "lesions": self.lesions, "scans": self.scans}


def froc(hit_scores, false_positive_scores, lesions: int, scans: int) -> Froc:
    """The FROC of a run: the score of each credited hit (one per hit lesion), the score of each
    false positive, the number of counted lesions and of scans."""
    if lesions <= 0 or scans <= 0:
        raise ValueError(f"a FROC needs lesions and scans; got {lesions} lesions in {scans} scans")
    hits = np.sort(np.asarray(list(hit_scores), float))[::-1]
    fps = np.sort(np.asarray(list(false_positive_scores), float))[::-1]
    if len(hits) > lesions:
        raise ValueError(f"{len(hits)} hits for {lesions} lesions: a lesion is credited once")
    thresholds = np.unique(np.concatenate([hits, fps]))[::-1]
    x, y, t = [0.0], [0.0], [float("inf")]
    for threshold in thresholds:
        x.append(float(np.count_nonzero(fps >= threshold)) / scans)
        y.append(float(np.count_nonzero(hits >= threshold)) / lesions)
        t.append(float(threshold))
    return Froc(tuple(x), tuple(y), tuple(t), lesions, scans)
