"""NODULE records (DESIGN.md `radsight analyze` / `radsight measure` contract) built from a
viewer.analysis.nodules.NoduleMeasurement. Units are in the key names (mm, mm3, HU)."""

from __future__ import annotations

from viewer.analysis.guidelines import lung_rads_v2022
from viewer.analysis.nodules import NoduleMeasurement

SOURCES = ("measured", "ai")


def lung_rads(measurement: NoduleMeasurement, *, baseline: bool = True, new: bool = False,
              growing: bool = False) -> dict | None:
    """Lung-RADS v2022 of the nodule: as a baseline screening finding unless the tracking says
    otherwise (a follow-up's nodule that is new, or growing). Reader-only features (benign
    calcification, perifissural shape, suspicious features) are not assumed, so this is the
    size-and-type category a reader starts from. None when the type needs a number the
    measurement lacks (a part-solid nodule without a solid-component diameter)."""
    try:
        a = lung_rads_v2022(measurement.type, measurement.mean_diameter_mm, measurement.solid_mean_diameter_mm,
                            baseline=baseline, new=new, growing=growing)
    except ValueError:
        return None
    return {"version": "v2022", "category": a.category, "management": a.management, "rule": a.rule,
            "baseline": baseline}


def nodule_record(measurement: NoduleMeasurement, id: str, *, tracking_uid: str | None = None,
                  source: str = "measured", scores: dict | None = None, provenance: dict | None = None,
                  prior: dict | None = None) -> dict:
    """The NODULE dict. source "ai" needs provenance (models, method, how the score was made);
    scores are the AI's numbers in [0, 1] ({} for a measured nodule)."""
    if source not in SOURCES:
        raise ValueError(f"nodule source {source!r} is not one of {', '.join(SOURCES)}")
    if source == "ai" and not provenance:
        raise ValueError(f"AI nodule {id}: provenance (models and method) is required")
    m = measurement.to_json()
    record = {
        "id": id,
        "tracking_uid": tracking_uid,
        "centre_lps_mm": m["centre_lps_mm"],
        "volume_mm3": m["volume_mm3"],
        "long_axis_mm": m["long_axis_mm"],
        "short_axis_mm": m["short_axis_mm"],
        "mean_diameter_mm": round(measurement.mean_diameter_mm, 1),
        "mean_hu": m["mean_hu"],
        "type": measurement.type,
        "scores": dict(scores or {}),
        "lung_rads": lung_rads(measurement),
        "prior": prior,
        "max_hu": m["max_hu"],
        "solid_mean_diameter_mm": (None if measurement.solid_mean_diameter_mm is None
                                   else round(measurement.solid_mean_diameter_mm, 1)),
        "juxtapleural": bool(measurement.juxtapleural),
        "kind": getattr(measurement, "kind", "nodule"),
        "source": source,
    }
    if provenance:
        record["provenance"] = provenance
    return record


def detection_record(detection, id: str, tracking_uid: str | None = None, prior: dict | None = None) -> dict:
    """NODULE dict of an AI detection (viewer.analysis.detection.Detection: .measurement, .score,
    .method, .models of ModelRef, .class_probabilities name -> probability)."""
    scores = {"detection": round(float(detection.score), 4)}
    probabilities = getattr(detection, "class_probabilities", None) or {}
    if isinstance(probabilities, dict):
        scores.update({str(k): round(float(v), 4) for k, v in probabilities.items()})
    provenance = {"method": detection.method,
                  "models": [{"id": r.id, "version": r.version, **({"name": r.name} if r.name else {})}
                             for r in detection.models]}
    return nodule_record(detection.measurement, id, tracking_uid=tracking_uid, source="ai", scores=scores,
                         provenance=provenance, prior=prior)
