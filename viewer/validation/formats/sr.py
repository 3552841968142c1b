"""TID 1500 Measurement Report SR (highdicom): each planar or volumetric ROI measurement group is
one lesion, with its centre from the group's region (a 3-D SCOORD3D point or shape in LPS mm, or
a 2-D SCOORD on a referenced image, whose top-left pixel centre is (0.5, 0.5), PS3.3 C.18.6.1.1)
and its diameter from the group's measurements: Diameter (SCT 81827009), else the mean of Long
Axis (SCT 103339001) and Short Axis (SCT 103340004), else the region's own size. A detection hits
it within diameter/2 of the centre, LUNA16's rule for centre references."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, ReferenceLesion, Target

FORMAT = "TID 1500 SR"
DIAMETER, LONG_AXIS, SHORT_AXIS, VOLUME = "81827009", "103339001", "103340004", "118565006"


@dataclass(frozen=True)
class SrFinding:
    name: str
    finding: str
    points: np.ndarray            # (N, 3) LPS mm or (N, 2) pixel (column, row) on `image_uid`
    graphic_type: str
    image_uid: str | None         # None: 3-D coordinates
    frame_of_reference_uid: str
    diameter_mm: float | None
    diameter_basis: str
    volume_mm3: float | None


@dataclass(frozen=True)
class SrReference:
    path: str
    series_uids: tuple[str, ...]
    frame_of_reference_uid: str
    findings: tuple[SrFinding, ...]
    notes: tuple[str, ...]
    format: str = FORMAT

    @classmethod
    def from_file(cls, path: Path | str) -> "SrReference":
        import highdicom as hd

        path = Path(path)
        try:
            sr = hd.sr.srread(path)
        except Exception as exc:
            raise ReferenceError(f"{path}: not an SR that highdicom reads ({exc})") from None
        try:
            report = hd.sr.MeasurementReport.from_sequence(sr.ContentSequence and [sr])
        except Exception as exc:
            raise ReferenceError(f"{path}: not a TID 1500 Measurement Report ({exc})") from None
        findings, notes = [], []
        groups = list(report.get_volumetric_roi_measurement_groups()) + list(report.get_planar_roi_measurement_groups())
        for n, group in enumerate(groups, 1):
            name = group.tracking_identifier or f"group {n}"
            finding = group.finding_type.meaning if group.finding_type is not None else ""
            region = _region(group)
            if region is None:
                notes.append(f"{path}: {name}: its region is not a point or shape in coordinates "
                             "(a referenced segment: give the SEG as the reference); left out")
                continue
            points, graphic_type, image_uid, frame = region
            diameter, basis, volume = _size(group, points, graphic_type, image_uid is None)
            findings.append(SrFinding(str(name), str(finding), points, graphic_type, image_uid, frame,
                                      diameter, basis, volume))
        if not findings and not notes:
            raise ReferenceError(f"{path}: the Measurement Report holds no ROI measurement group")
        series = tuple(sorted({str(e.SeriesInstanceUID) for e in sr.get("CurrentRequestedProcedureEvidenceSequence", [])
                               for e in e.get("ReferencedSeriesSequence", [])}))
        return cls(str(path), series, str(sr.get("FrameOfReferenceUID", "")), tuple(findings), tuple(notes))

    def refers_to(self) -> str:
        images = sorted({f.image_uid for f in self.findings if f.image_uid})
        return (f"images {', '.join(images[:2])}{' ...' if len(images) > 2 else ''}; "
                f"series {', '.join(self.series_uids) or '(none)'}")

    def attach(self, target: Target) -> Attachment | None:
        how = ""
        mine = []
        for f in self.findings:
            if f.image_uid is not None and f.image_uid in target.sop_slices:
                how, ok = "SOP Instance UID", True
            elif f.image_uid is None and target.series_uid in self.series_uids:
                how, ok = how or "Series Instance UID", True
            elif f.image_uid is None and f.frame_of_reference_uid and f.frame_of_reference_uid == target.frame_of_reference_uid:
                how, ok = how or "Frame of Reference", True
            else:
                ok = False
            if ok:
                mine.append(f)
        if not mine:
            return None
        out = Attachment(matched_by=how, notes=list(self.notes))
        for n, f in enumerate(mine, 1):
            if f.image_uid is not None:
                k = target.sop_slices[f.image_uid]
                ijk = np.column_stack([f.points[:, 0] - 0.5, f.points[:, 1] - 0.5, np.full(len(f.points), k)])
                points = target.volume.index_to_lps(ijk)
            else:
                points = f.points
            # A CIRCLE is its centre then a point on it (PS3.3 C.18.6.1.2); other shapes: their points' mean.
            centre = tuple(float(v) for v in (points[0] if f.graphic_type == "CIRCLE" else points.mean(axis=0)))
            diameter, basis = f.diameter_mm, f.diameter_basis
            if diameter is None and f.graphic_type == "CIRCLE" and len(points) >= 2:
                diameter, basis = 2 * float(np.linalg.norm(points[1] - points[0])), "diameter of the SR circle"
            if diameter is None:
                out.notes.append(f"{self.path}: {f.name}: no diameter and no region size; left out")
                continue
            out.lesions.append(ReferenceLesion(
                id=f"G{n}", source=self.path, format=FORMAT, matched_by=how, centre_lps_mm=centre,
                diameter_mm=diameter, diameter_basis=basis, label=f.finding or f.name))
        return out


def _region(group) -> tuple[np.ndarray, str, str | None, str] | None:
    import highdicom as hd

    roi = group.roi
    if roi is None:
        return None
    if isinstance(roi, hd.sr.ImageRegion3D):
        return (np.asarray(roi.value, float).reshape(-1, 3), str(roi.graphic_type.value), None,
                str(roi.frame_of_reference_uid))
    if isinstance(roi, hd.sr.ImageRegion):
        # The image a 2-D region is SELECTED FROM (TID 1410): an IMAGE item in its content.
        image = next((str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                      for item in roi.get("ContentSequence", []) if "ReferencedSOPSequence" in item), None)
        if image is None:
            return None
        return np.asarray(roi.value, float).reshape(-1, 2), str(roi.graphic_type.value), str(image), ""
    return None


def _size(group, points: np.ndarray, graphic_type: str, in_mm: bool) -> tuple[float | None, str, float | None]:
    """Diameter (mm), how it was found, and volume (mm3) of a measurement group."""
    values: dict[str, float] = {}
    for m in group.get_measurements():
        unit = str(m.unit.value) if m.unit is not None else ""
        scale = 1.0 if unit in ("mm", "mm3") else 10.0 if unit == "cm" else 1000.0 if unit == "cm3" else 1.0
        values[str(m.name.value)] = float(m.value) * scale
    volume = values.get(VOLUME)
    if DIAMETER in values:
        return values[DIAMETER], "SR Diameter measurement", volume
    if LONG_AXIS in values and SHORT_AXIS in values:
        return (values[LONG_AXIS] + values[SHORT_AXIS]) / 2, "mean of the SR Long Axis and Short Axis", volume
    if LONG_AXIS in values:
        return values[LONG_AXIS], "SR Long Axis measurement", volume
    if in_mm and graphic_type in ("ELLIPSE", "ELLIPSOID") and len(points) >= 4:
        return (float(np.linalg.norm(points[0] - points[1])) + float(np.linalg.norm(points[2] - points[3]))) / 2, \
            "mean axis of the SR ellipse", volume
    if in_mm and graphic_type == "POLYGON" and len(points) >= 3:
        span = float(max(np.linalg.norm(a - b) for a in points for b in points))
        return span, "largest extent of the SR polygon", volume
    if volume is not None:
        return float((6 * volume / np.pi) ** (1 / 3)), "sphere of the SR volume", volume
    return None, "", volume
