"""LIDC-IDRI reader XML (LidcReadMessage): each readingSession is one radiologist; each
unblindedReadNodule with contoured ROIs (edgeMap pixel outlines on the image named by
imageSOP_UID) is a nodule of >= 3 mm; single-point marks (< 3 mm) and nonNodule marks are left
out, as LUNA16 does.

Readers' nodules whose contours share a voxel are one lesion (the clustering LUNA16 and pylidc
use). LUNA16 counts a lesion marked by at least 3 of the 4 readers; here at least min(3, readers
in the file) must agree, and a lesion fewer readers marked is kept as an excluded finding (a
detection there is neither a hit nor a false positive). The lesion's region for hits is the
union of the readers' contours; its mask for volume and Dice is the 50% consensus.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, ReferenceLesion, Target, crop, mask_lesion

FORMAT = "LIDC XML"
LUNA16_READERS = 3


@dataclass(frozen=True)
class LidcRoi:
    sop_uid: str
    z_mm: float | None
    inclusion: bool
    xy: np.ndarray  # (N, 2) pixel column, row of the outline


@dataclass(frozen=True)
class LidcNodule:
    reader: int
    nodule_id: str
    rois: tuple[LidcRoi, ...]


@dataclass(frozen=True)
class LidcXml:
    path: str
    series_uid: str
    readers: int
    nodules: tuple[LidcNodule, ...]   # contoured (>= 3 mm) nodules only
    format: str = FORMAT

    @classmethod
    def from_file(cls, path: Path | str) -> "LidcXml":
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise ReferenceError(f"{path}: not readable XML ({exc})") from None
        for element in root.iter():
            element.tag = element.tag.rsplit("}", 1)[-1]  # drop the http://www.nih.gov namespace
        if root.tag != "LidcReadMessage":
            raise ReferenceError(f"{path}: root element <{root.tag}>, not an LIDC <LidcReadMessage>")
        sessions = root.findall("readingSession")
        if not sessions:
            raise ReferenceError(f"{path}: no <readingSession>: the file holds no reader's marks")
        nodules = []
        for reader, session in enumerate(sessions, 1):
            for nodule in session.findall("unblindedReadNodule"):
                rois = []
                for n, roi in enumerate(nodule.findall("roi"), 1):
                    try:
                        xy = np.array([[float(e.findtext("xCoord")), float(e.findtext("yCoord"))]
                                       for e in roi.findall("edgeMap")])
                    except (TypeError, ValueError):
                        raise ReferenceError(f"{path}: reader {reader} nodule {nodule.findtext('noduleID')} roi {n}: "
                                             "an edgeMap lacks a numeric xCoord or yCoord") from None
                    z = roi.findtext("imageZposition")
                    rois.append(LidcRoi((roi.findtext("imageSOP_UID") or "").strip(),
                                        float(z) if z and z.strip() else None,
                                        (roi.findtext("inclusion") or "TRUE").strip().upper() == "TRUE", xy))
                if any(len(r.xy) > 1 for r in rois):
                    nodules.append(LidcNodule(reader, (nodule.findtext("noduleID") or "").strip(), tuple(rois)))
        series = (root.findtext("ResponseHeader/SeriesInstanceUid") or "").strip()
        return cls(str(path), series, len(sessions), tuple(nodules))

    def refers_to(self) -> str:
        return f"Series Instance UID {self.series_uid or '(none given)'} and its images' SOP Instance UIDs"

    def attach(self, target: Target) -> Attachment | None:
        placed = [(nodule, _voxels(nodule, target)) for nodule in self.nodules]
        placed = [(nodule, voxels) for nodule, voxels in placed if len(voxels)]
        if not placed:
            return None if self.series_uid != target.series_uid else Attachment(
                matched_by="Series Instance UID",
                notes=[f"{self.path}: none of its {len(self.nodules)} contoured nodules lies on this series' "
                       "images (their imageSOP_UIDs are not among the series' files)"])
        out = Attachment(matched_by="SOP Instance UID")
        outside = len(self.nodules) - len(placed)
        if outside:
            out.notes.append(f"{self.path}: {outside} of {len(self.nodules)} readers' contoured nodules lie on "
                             "images not in this series; left out")
        groups = DisjointSet(range(len(placed)))
        for a in range(len(placed)):
            for b in range(a + 1, len(placed)):
                if np.intersect1d(placed[a][1], placed[b][1], assume_unique=True).size:
                    groups.merge(a, b)
        required = min(LUNA16_READERS, self.readers)
        shape = target.volume.shape
        for n, members in enumerate(sorted(groups.subsets(), key=min), 1):
            readers = sorted({placed[i][0].reader for i in members})
            counts = np.zeros(int(np.prod(shape)), np.uint8)
            for reader in readers:
                mine = np.unique(np.concatenate([placed[i][1] for i in members if placed[i][0].reader == reader]))
                counts[mine] += 1
            union = (counts > 0).reshape(shape)
            consensus = (counts * 2 >= len(readers)).reshape(shape)
            if not consensus.any():  # readers who overlap only pairwise: the union stands in
                consensus = union
            ids = ", ".join(f"reader {placed[i][0].reader} {placed[i][0].nodule_id}" for i in sorted(members))
            lesion = mask_lesion(
                f"N{n}", consensus, target, source=self.path, format=FORMAT, matched_by=out.matched_by,
                region=crop(union, target.volume), label=ids, readers=len(readers), readers_total=self.readers,
                diameter_basis="mean axes of the largest axial section of the readers' 50% consensus",
                counts=len(readers) >= required,
                excluded_because="" if len(readers) >= required else
                f"marked by {len(readers)} of {self.readers} readers; LUNA16 counts lesions at least "
                f"{required} readers marked")
            out.lesions.append(lesion)
        return out


def _voxels(nodule: LidcNodule, target: Target) -> np.ndarray:
    """Flat indices (into the target grid) of a reader's nodule: each ROI's outline filled on
    its image (scikit-image's polygon fill plus the outline pixels), exclusions removed."""
    from skimage.draw import polygon

    _, rows, cols = target.volume.shape
    inside: set[int] = set()
    for include in (True, False):
        for roi in nodule.rois:
            if roi.inclusion != include or roi.sop_uid not in target.sop_slices:
                continue
            k = target.sop_slices[roi.sop_uid]
            rr, cc = polygon(roi.xy[:, 1], roi.xy[:, 0], (rows, cols))
            if include:
                edge = np.rint(roi.xy).astype(int)
                ok = (edge[:, 0] >= 0) & (edge[:, 0] < cols) & (edge[:, 1] >= 0) & (edge[:, 1] < rows)
                rr = np.concatenate([rr, edge[ok, 1]])
                cc = np.concatenate([cc, edge[ok, 0]])
            flat = (k * rows + rr) * cols + cc
            if include:
                inside.update(flat.tolist())
            else:
                inside.difference_update(flat.tolist())
    return np.array(sorted(inside), np.int64)
