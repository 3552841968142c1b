"""DICOM Segmentation (highdicom): each finding segment (property category "Morphologically
abnormal structure", or a type or label naming a nodule, mass, tumour or lesion) is read as a
volume, placed onto the series grid, and each connected piece of it is one lesion. Anatomy
segments (a lung, say) are not lesions and are left out with a note."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.core.volume import Volume
from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, Target, components, mask_lesion, resample_onto

FORMAT = "DICOM SEG"
SEG_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
FINDING_CATEGORY = "49755003"  # SCT Morphologically abnormal structure
LESION_WORDS = re.compile(r"nodule|mass|tumou?r|lesion|neoplasm|cancer|carcinoma|gtv", re.IGNORECASE)


@dataclass(frozen=True)
class SegReference:
    path: str
    seg: object                      # highdicom.seg.Segmentation
    series_uids: tuple[str, ...]
    sop_uids: frozenset[str]
    frame_of_reference_uid: str
    segments: tuple[tuple[int, str], ...]   # (number, label) of the finding segments
    skipped: tuple[str, ...]
    format: str = FORMAT

    @classmethod
    def from_file(cls, path: Path | str) -> "SegReference":
        import highdicom as hd
        import pydicom

        path = Path(path)
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise ReferenceError(f"{path}: not a readable DICOM file ({exc})") from None
        if str(ds.get("SOPClassUID", "")) not in SEG_CLASSES:
            raise ReferenceError(f"{path}: SOP Class {ds.get('SOPClassUID', '(none)')} is not a Segmentation")
        try:
            seg = hd.seg.Segmentation.from_dataset(ds)
        except Exception as exc:
            raise ReferenceError(f"{path}: highdicom cannot read this Segmentation: {exc}") from None
        segments, skipped = [], []
        for item in seg.SegmentSequence:
            label = str(item.get("SegmentLabel", ""))
            category = str(item.SegmentedPropertyCategoryCodeSequence[0].CodeValue)
            kind = item.SegmentedPropertyTypeCodeSequence[0]
            words = f"{label} {kind.get('CodeMeaning', '')}"
            if category == FINDING_CATEGORY or LESION_WORDS.search(words):
                segments.append((int(item.SegmentNumber), label or str(kind.get("CodeMeaning", ""))))
            else:
                skipped.append(f"{label or kind.get('CodeMeaning', '')} (segment {int(item.SegmentNumber)})")
        if not segments:
            raise ReferenceError(f"{path}: no finding segment (nodule, mass, tumour, lesion); segments: "
                                 f"{', '.join(skipped) or 'none'}")
        series = tuple(str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []))
        sops = frozenset(str(i.ReferencedSOPInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])
                         for i in s.get("ReferencedInstanceSequence", []))
        return cls(str(path), seg, series, sops, str(ds.get("FrameOfReferenceUID", "")), tuple(segments),
                   tuple(skipped))

    def refers_to(self) -> str:
        return f"Series Instance UID {', '.join(self.series_uids) or '(none)'}, Frame of Reference {self.frame_of_reference_uid}"

    def attach(self, target: Target) -> Attachment | None:
        if target.series_uid in self.series_uids:
            how = "Series Instance UID"
        elif self.sop_uids & target.sop_slices.keys():
            how = "SOP Instance UID"
        elif self.frame_of_reference_uid and self.frame_of_reference_uid == target.frame_of_reference_uid:
            how = "Frame of Reference"
        else:
            return None
        out = Attachment(matched_by=how)
        if self.skipped:
            out.notes.append(f"{self.path}: segments that are not findings left out: {', '.join(self.skipped)}")
        for number, label in self.segments:
            values = resample_onto(self._segment_volume(number), target.volume) > 0
            pieces = components(values)
            if not pieces:
                out.notes.append(f"{self.path}: segment {number} ({label}) covers no voxel of the series")
            for n, piece in enumerate(pieces, 1):
                out.lesions.append(mask_lesion(f"S{number}.{n}", piece, target, source=self.path, format=FORMAT,
                                               matched_by=how, label=label))
        return out

    def _segment_volume(self, number: int) -> Volume:
        """One segment as a RadSight Volume: highdicom's volume affine maps (slice, row, column),
        RadSight's maps (column, row, slice)."""
        try:
            volume = self.seg.get_volume(segment_numbers=[number], combine_segments=True, dtype=np.uint8)
        except Exception as exc:
            raise ReferenceError(f"{self.path}: segment {number} cannot be placed in 3-D ({exc})") from None
        affine = np.array(volume.affine)
        ours = affine.copy()
        ours[:3, 0], ours[:3, 2] = affine[:3, 2], affine[:3, 0]
        array = np.asarray(volume.array)
        return Volume(array.reshape(array.shape[:3]), ours, self.frame_of_reference_uid)
