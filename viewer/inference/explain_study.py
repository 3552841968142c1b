"""`radsight explain` and the viewer's Explain action: classify a study (or a crop around a point),
explain the decision, write the map as a DICOM Parametric Map and record it in the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.core.errors import RadSightError
from viewer.core.results import Heatmap
from viewer.dicom import load_series, open_path
from viewer.dicom.pmap import describe, write_parametric_map
from viewer.dicom.series import Series
from viewer.inference.explain import explain
from viewer.inference.registry import Registry, discover


def heatmap_summary(heatmap: Heatmap) -> dict:
    """What the store and the JSON output keep about a map: enough to label it without re-running."""
    return {"method": heatmap.method, "target": heatmap.target.name, "target_value": heatmap.target.value,
            "probability": heatmap.probability, "layer": heatmap.layer, "note": heatmap.note,
            "point_lps_mm": list(heatmap.point_lps) if heatmap.point_lps else None,
            "peak_lps_mm": [round(v, 2) for v in heatmap.peak_lps], "description": describe(heatmap),
            "mass_inside_finding": None if heatmap.mass_inside is None else round(heatmap.mass_inside, 3)}


def measured_finding(volume, point_lps):
    """The nodule at the point as `contains` for explain's `finding`: its measured mask
    (viewer.analysis.nodules.measure_at), or None where nothing measurable is there."""
    if point_lps is None:
        return None
    from viewer.analysis.nodules import MeasurementError, measure_at
    from viewer.inference.explain_quality import in_mask

    try:
        return in_mask(measure_at(volume, point_lps).mask)
    except MeasurementError:
        return None


def same_place(summary: dict):
    """A stored map is replaced by a new one of the same model at the same point (within 0.5 mm)."""
    point = summary.get("point_lps_mm")

    def matches(old: dict) -> bool:
        other = old.get("point_lps_mm")
        if point is None or other is None:
            return point is None and other is None
        return float(np.linalg.norm(np.subtract(point, other))) < 0.5

    return matches


def save_heatmap(heatmap: Heatmap, series: Series, out: Path | str, store=None, palette: str | None = None) -> dict:
    """Write the Parametric Map and record it; returns the summary with the file's path."""
    out = Path(out)
    where = "_".join(f"{a}{v:.0f}" for a, v in zip("xyz", heatmap.point_lps)) if heatmap.point_lps else "whole"
    name = f"pmap-{heatmap.model.id}-{heatmap.model.version}-{heatmap.method.lower().replace('-', '')}-{where}.dcm"
    path = write_parametric_map(heatmap, series, out if out.suffix.lower() == ".dcm" else out / name, palette=palette)
    summary = heatmap_summary(heatmap)
    if store is not None:
        store.add_result(series.key, "heatmap", heatmap.model.id, heatmap.model.version, path, heatmap.provider,
                         summary, replaces=same_place(summary))
    return {**summary, "path": str(path)}


def _largest_series(path: Path | str, store=None):
    series_list, result = open_path(path)
    if not series_list:
        raise RadSightError(f"{path}: no image series to explain ({len(result.problems)} unreadable files)")
    if store is not None:
        store.import_scan(series_list, result)
    series = max(series_list, key=lambda s: len(s.records))
    return series, load_series(series)


def explain_study(path: Path | str, model_id: str, out: Path | str, point_lps=None, method: str | None = None,
                  target: int | None = None, palette: str | None = None, store=None,
                  registry: Registry | None = None, provider: str | None = None) -> dict:
    """JSON-ready result: study, model, the map's method, target class, probability and file."""
    card = (registry or discover()).get(model_id)
    series, volume = _largest_series(path, store)
    heatmap = explain(volume, card, point_lps, method=method, target=target, provider=provider,
                      finding=measured_finding(volume, point_lps))
    saved = save_heatmap(heatmap, series, out, store, palette)
    return {"study_uid": series.first.study_uid, "series_uid": series.first.series_uid, "series_key": series.key,
            "model": {"id": card.id, "version": card.version, "provider": heatmap.provider}, **saved}


def explain_points(path: Path | str, model_id: str, points, out: Path | str, store=None,
                   registry: Registry | None = None, provider: str | None = None) -> list[dict]:
    """One classification with its map per point (the study is loaded once); for the demo and batch use."""
    card = (registry or discover()).get(model_id)
    series, volume = _largest_series(path, store)
    return [save_heatmap(explain(volume, card, point, provider=provider, finding=measured_finding(volume, point)),
                         series, out, store) for point in points]
