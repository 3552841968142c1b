"""Readers of reference annotations, one module per format. Each reader is built by a named
constructor (`from_file`) that checks its input and names the file in any error, and answers
`attach(target)`: the lesions it holds for that series, or None when it does not refer to it.

    seg.py       DICOM SEG (highdicom)              rtstruct.py  RTSTRUCT contours (pydicom, scikit-image)
    sr.py        TID 1500 SR (highdicom)            labelmap.py  NIfTI / NRRD label maps (SimpleITK)
    luna_csv.py  LUNA16 centres and diameters       lidc_xml.py  LIDC reader XML
    voc_boxes.py per-slice PASCAL VOC boxes keyed by SOP Instance UID (Lung-PET-CT-Dx)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from viewer.validation.lesion import ReferenceLesion, Target


@dataclass
class Attachment:
    """What one reference file holds for one series, how it was matched, and what was left out."""

    lesions: list[ReferenceLesion] = field(default_factory=list)
    matched_by: str = ""
    notes: list[str] = field(default_factory=list)


class ReferenceFile(Protocol):
    path: str
    format: str

    def attach(self, target: Target) -> Attachment | None: ...

    def refers_to(self) -> str: ...
