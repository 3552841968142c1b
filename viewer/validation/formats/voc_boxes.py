"""Per-slice boxes in PASCAL VOC XML, one file per annotated slice keyed by its SOP Instance UID
(as Lung-PET-CT-Dx publishes them: the file is named `<SOP Instance UID>.xml`; a <filename> that
is a UID takes precedence). The boxes of one object name over consecutive slices that overlap in
the plane make one lesion; a detection hits it when its centre lies in the box of its slice."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from viewer.validation.formats import Attachment
from viewer.validation.lesion import Box, ReferenceError, ReferenceLesion, Target

FORMAT = "PASCAL VOC boxes"
UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


@dataclass(frozen=True)
class VocObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class VocSlice:
    """One VOC file: the boxes drawn on one image."""

    path: str
    sop_uid: str
    objects: tuple[VocObject, ...]

    @classmethod
    def from_file(cls, path: Path | str) -> "VocSlice":
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise ReferenceError(f"{path}: not readable XML ({exc})") from None
        if root.tag != "annotation":
            raise ReferenceError(f"{path}: root element <{root.tag}>, not a PASCAL VOC <annotation>")
        filename = (root.findtext("filename") or "").strip()
        stem = Path(filename).stem if filename.lower().endswith((".dcm", ".xml")) else filename
        sop = stem if UID.match(stem) else path.stem
        if not UID.match(sop):
            raise ReferenceError(f"{path}: neither <filename> ({filename!r}) nor the file name is a SOP Instance "
                                 "UID, so the boxes cannot be placed on a slice; name the file <SOP Instance UID>.xml")
        objects = []
        for n, obj in enumerate(root.iter("object"), 1):
            box = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                raise ReferenceError(f"{path}: object {n} has no complete <bndbox> (xmin, ymin, xmax, ymax)") from None
            if xmax < xmin or ymax < ymin:
                raise ReferenceError(f"{path}: object {n}: box x {xmin}..{xmax}, y {ymin}..{ymax} is inverted")
            objects.append(VocObject((obj.findtext("name") or "").strip(), xmin, ymin, xmax, ymax))
        return cls(str(path), sop, tuple(objects))


@dataclass(frozen=True)
class VocBoxes:
    """The VOC files of one folder, read together so that boxes on consecutive slices join."""

    path: str                       # the folder
    slices: tuple[VocSlice, ...]
    format: str = FORMAT

    @classmethod
    def from_files(cls, folder: Path | str, slices: list[VocSlice]) -> "VocBoxes":
        if not slices:
            raise ReferenceError(f"{folder}: no PASCAL VOC files")
        return cls(str(folder), tuple(slices))

    def refers_to(self) -> str:
        return f"{len(self.slices)} slices by SOP Instance UID (e.g. {self.slices[0].sop_uid})"

    def attach(self, target: Target) -> Attachment | None:
        boxes = [Box(target.sop_slices[s.sop_uid], o.xmin, o.ymin, o.xmax, o.ymax, o.name)
                 for s in self.slices if s.sop_uid in target.sop_slices for o in s.objects]
        if not boxes:
            return None
        out = Attachment(matched_by="SOP Instance UID")
        missing = sum(1 for s in self.slices if s.sop_uid not in target.sop_slices)
        if missing and len(boxes) < sum(len(s.objects) for s in self.slices):
            out.notes.append(f"{self.path}: {missing} of {len(self.slices)} VOC files name slices of another series")
        groups = DisjointSet(range(len(boxes)))
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                if _joined(boxes[a], boxes[b]):
                    groups.merge(a, b)
        for n, members in enumerate(sorted(groups.subsets(), key=lambda g: min(boxes[i].k for i in g)), 1):
            stack = tuple(sorted((boxes[i] for i in members), key=lambda b: b.k))
            out.lesions.append(_lesion(f"B{n}", stack, target, self.path))
        return out


def _joined(a: Box, b: Box) -> bool:
    """Same object on adjacent slices, overlapping in the plane."""
    return (a.name == b.name and abs(a.k - b.k) <= 1
            and a.i0 <= b.i1 and b.i0 <= a.i1 and a.j0 <= b.j1 and b.j0 <= a.j1)


def _lesion(lesion_id: str, stack: tuple[Box, ...], target: Target, source: str) -> ReferenceLesion:
    volume = target.volume
    sx, sy = volume.spacing[0], volume.spacing[1]
    areas = np.array([(b.i1 - b.i0) * (b.j1 - b.j0) for b in stack], float)
    centres = volume.index_to_lps(np.array([[(b.i0 + b.i1) / 2, (b.j0 + b.j1) / 2, b.k] for b in stack]))
    weights = areas if areas.sum() > 0 else np.ones(len(stack))
    centre = tuple(float(v) for v in (centres * weights[:, None]).sum(axis=0) / weights.sum())
    largest = stack[int(np.argmax(areas))]
    diameter = ((largest.i1 - largest.i0) * sx + (largest.j1 - largest.j0) * sy) / 2
    return ReferenceLesion(id=lesion_id, source=source, format=FORMAT, matched_by="SOP Instance UID",
                           centre_lps_mm=centre, diameter_mm=float(diameter),
                           diameter_basis="mean of the width and height of the largest box",
                           boxes=stack, box_grid=volume, label=stack[0].name)
