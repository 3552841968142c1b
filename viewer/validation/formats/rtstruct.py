"""DICOM RT Structure Set: each lesion-like ROI (interpreted type GTV, or a name such as GTV,
tumour, nodule, lesion, mass) is one lesion. Its closed planar contours (LPS mm, (3006,0050)
Contour Data) are rasterised onto the series grid slice by slice with scikit-image's polygon
fill; contours on one slice combine by exclusive or, so an inner contour is a hole (the usual
RTSTRUCT reading). rt-utils would do the same but only from a folder of the DICOM series; here
the series is already loaded and its geometry checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, Target, mask_lesion

FORMAT = "RTSTRUCT"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
LESION_TYPES = {"GTV", "CTV", "ITV"}
LESION_NAME = re.compile(r"gtv|tumou?r|nodule|lesion|mass|cancer|carcinoma|metast", re.IGNORECASE)


@dataclass(frozen=True)
class RtRoi:
    number: int
    name: str
    interpreted_type: str
    contours: tuple[np.ndarray, ...]  # (N, 3) LPS mm, closed planar


@dataclass(frozen=True)
class RtStruct:
    path: str
    series_uids: tuple[str, ...]
    sop_uids: frozenset[str]
    frame_of_reference_uids: tuple[str, ...]
    rois: tuple[RtRoi, ...]
    skipped: tuple[str, ...]
    format: str = FORMAT

    @classmethod
    def from_file(cls, path: Path | str) -> "RtStruct":
        path = Path(path)
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            raise ReferenceError(f"{path}: not a readable DICOM file ({exc})") from None
        if str(ds.get("SOPClassUID", "")) != RTSTRUCT_CLASS:
            raise ReferenceError(f"{path}: SOP Class {ds.get('SOPClassUID', '(none)')} is not RT Structure Set")
        names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])}
        kinds = {int(o.ReferencedROINumber): str(o.get("RTROIInterpretedType", "") or "")
                 for o in ds.get("RTROIObservationsSequence", [])}
        series, sops, frames = [], set(), []
        for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
            frames.append(str(ref.get("FrameOfReferenceUID", "")))
            for study in ref.get("RTReferencedStudySequence", []):
                for s in study.get("RTReferencedSeriesSequence", []):
                    series.append(str(s.SeriesInstanceUID))
                    sops.update(str(i.ReferencedSOPInstanceUID) for i in s.get("ContourImageSequence", []))
        rois, skipped = [], []
        for roi in ds.get("ROIContourSequence", []):
            number = int(roi.ReferencedROINumber)
            name, kind = names.get(number, f"ROI {number}"), kinds.get(number, "")
            if kind.upper() not in LESION_TYPES and not LESION_NAME.search(name):
                skipped.append(f"{name} ({kind or 'no type'})")
                continue
            contours = []
            for n, contour in enumerate(roi.get("ContourSequence", []), 1):
                data = np.asarray([float(v) for v in contour.get("ContourData", [])])
                if data.size < 9 or data.size % 3:
                    raise ReferenceError(f"{path}: ROI {name!r} contour {n} has {data.size} coordinates; "
                                         "a closed planar contour needs x, y, z triplets of at least 3 points")
                for ref in contour.get("ContourImageSequence", []):
                    sops.add(str(ref.ReferencedSOPInstanceUID))
                contours.append(data.reshape(-1, 3))
            if contours:
                rois.append(RtRoi(number, name, kind, tuple(contours)))
        if not rois:
            raise ReferenceError(f"{path}: no lesion ROI (GTV, tumour, nodule, lesion or mass) with contours; "
                                 f"ROIs: {', '.join(skipped) or 'none'}")
        return cls(str(path), tuple(series), frozenset(sops), tuple(frames), tuple(rois), tuple(skipped))

    def refers_to(self) -> str:
        return (f"Series Instance UID {', '.join(self.series_uids) or '(none)'}, Frame of Reference "
                f"{', '.join(self.frame_of_reference_uids) or '(none)'}")

    def attach(self, target: Target) -> Attachment | None:
        if target.series_uid in self.series_uids:
            how = "Series Instance UID"
        elif self.sop_uids & target.sop_slices.keys():
            how = "SOP Instance UID"
        elif target.frame_of_reference_uid and target.frame_of_reference_uid in self.frame_of_reference_uids:
            how = "Frame of Reference"
        else:
            return None
        out = Attachment(matched_by=how)
        for roi in self.rois:
            mask, off = rasterise(roi.contours, target)
            if off:
                out.notes.append(f"{self.path}: ROI {roi.name!r}: {off} contour(s) lie off the series' slices; left out")
            if not mask.any():
                out.notes.append(f"{self.path}: ROI {roi.name!r} covers no voxel of the series; left out")
                continue
            out.lesions.append(mask_lesion(f"R{roi.number}", mask, target, source=self.path, format=FORMAT,
                                           matched_by=how, label=roi.name))
        return out


def rasterise(contours, target: Target) -> tuple[np.ndarray, int]:
    """Bool mask on the target grid and the number of contours that lie on no slice."""
    from skimage.draw import polygon

    volume = target.volume
    mask = np.zeros(volume.shape, bool)
    off = 0
    for points in contours:
        ijk = volume.lps_to_index(points)
        k = float(np.median(ijk[:, 2]))
        if abs(k - round(k)) > 0.25 or not 0 <= round(k) < volume.shape[0]:
            off += 1
            continue
        rr, cc = polygon(ijk[:, 1], ijk[:, 0], volume.shape[1:])
        plane = np.zeros(volume.shape[1:], bool)
        plane[rr, cc] = True
        mask[int(round(k))] ^= plane
    return mask, off
