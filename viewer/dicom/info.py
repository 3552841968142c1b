"""`radsight info` content: every series found, its geometry and warnings, and skipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.core.errors import GeometryError, RadSightError
from viewer.dicom.load import load_volume_file
from viewer.dicom.scan import ScanResult
from viewer.dicom.series import Series


def _round(values, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def series_info(series: Series) -> dict:
    first = series.first
    entry = {
        "series_key": series.key,
        "study_uid": first.study_uid or None,
        "series_uid": first.series_uid or None,
        "modality": first.modality or None,
        "series_number": first.series_number,
        "description": first.series_description,
        "study_date": first.study_date or None,
        "frame_of_reference_uid": first.frame_of_reference_uid,
        "file_count": series.file_count,
        "frame_count": len(series.records),
        "transfer_syntaxes": sorted({r.transfer_syntax for r in series.records}),
    }
    try:
        plan = series.plan
    except GeometryError as exc:
        entry.update(loadable=False, error=str(exc), warnings=[w.to_json() for w in series.warnings])
        return entry
    spacing = np.linalg.norm(plan.affine[:3, :3], axis=0)
    entry.update(
        loadable=True,
        shape_zyx=list(plan.shape),
        spacing_xyz=_round(spacing),
        origin_lps=_round(plan.affine[:3, 3]),
        direction=_round((plan.affine[:3, :3] / spacing).flatten()),
        warnings=[w.to_json() for w in series.all_warnings],
    )
    return entry


def volume_file_info(path: Path) -> dict:
    try:
        vol = load_volume_file(path)
    except RadSightError as exc:
        return {"series_key": str(path), "format": "volume-file", "loadable": False, "error": str(exc)}
    return {
        "series_key": str(path), "format": "volume-file", "study_uid": None, "series_uid": None,
        "modality": None, "loadable": True, "shape_zyx": list(vol.shape), "spacing_xyz": _round(vol.spacing),
        "origin_lps": _round(vol.origin), "direction": _round(vol.direction.flatten()),
        "frame_of_reference_uid": None, "file_count": 1, "frame_count": vol.shape[0], "warnings": [],
    }


def info(path: Path | str, series: list[Series], result: ScanResult) -> dict:
    """The JSON object of DESIGN.md's `radsight info` contract.

    `direction` is the 3x3 matrix whose columns are the unit LPS vectors of the i, j, k axes,
    listed row by row: the same 9 numbers, in the same order, as ITK's GetDirection().
    """
    studies: dict[str, dict] = {}
    for s in series:
        first = s.first
        study = studies.setdefault(first.study_uid or "", {
            "study_uid": first.study_uid or None, "patient_id": first.patient_id or None,
            "study_date": first.study_date or None, "description": first.study_description or None,
            "series_keys": []})
        study["series_keys"].append(s.key)
    return {
        "path": str(path),
        "files_seen": result.files_seen,
        "studies": list(studies.values()),
        "series": [series_info(s) for s in series] + [volume_file_info(p) for p in result.volume_files],
        "unreadable": [p.to_json() for p in result.problems],
        "non_image": [o.to_json() for o in result.non_image],
    }
