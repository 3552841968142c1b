"""A reference lesion and the series it belongs to.

Every reader turns its format into `ReferenceLesion`s on one `Target` (a loaded series). A lesion
answers `contains(points_lps)` from the richest geometry it has: a mask on the series grid (SEG,
RTSTRUCT, label maps, the union of LIDC readers' contours), a stack of per-slice boxes (PASCAL
VOC), else a ball of the reference diameter around its centre (LUNA16 CSV, TID 1500 SR points),
which is LUNA16's hit rule for centre references.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.dicom.series import Series


class ReferenceError(RadSightError):  # noqa: A001 - a reference file problem, not Python's builtin
    """A reference file that cannot be read or used; the message names the file and what is wrong."""


@dataclass(frozen=True, eq=False)
class Target:
    """A loaded series that references are attached to: its grid and its identities."""

    volume: Volume
    sop_slices: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> slice index k
    folder_key: str = ""  # the top-level folder of DATA it lies in: geometry matches stay inside it

    @classmethod
    def from_series(cls, series: Series, volume: Volume, folder_key: str = "") -> "Target":
        """Slice indices from each frame's (0020,0032) Image Position (Patient), so resampled or
        reordered stacks map SOP Instance UIDs to the right slice."""
        sops: dict[str, int] = {}
        for n, record in enumerate(series.plan.records):
            k = n if record.position is None else int(round(float(volume.lps_to_index(record.position)[2])))
            if 0 <= k < volume.shape[0] and record.sop_instance_uid:
                sops[record.sop_instance_uid] = k
        return cls(volume, sops, folder_key)

    @property
    def series_uid(self) -> str:
        return self.volume.source.series_uid or ""

    @property
    def frame_of_reference_uid(self) -> str:
        return self.volume.frame_of_reference_uid or ""

    def inside(self, point_lps, margin_voxels: float = 0.5) -> bool:
        """Whether an LPS point lies within the series' voxels (half a voxel beyond the centres)."""
        ijk = self.volume.lps_to_index(np.asarray(point_lps, float))
        upper = np.array(self.volume.shape[::-1]) - 1
        return bool(np.all(ijk >= -margin_voxels) and np.all(ijk <= upper + margin_voxels))

    def extent_text(self) -> str:
        corners = self.volume.index_to_lps(np.array([[0, 0, 0], np.array(self.volume.shape[::-1]) - 1]))
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        return ", ".join(f"{a} {l:.1f}..{h:.1f}" for a, l, h in zip("xyz", lo, hi)) + " mm"


@dataclass(frozen=True)
class Box:
    """One axial box on slice k of the target grid: columns i0..i1 and rows j0..j1 inclusive."""

    k: int
    i0: float
    j0: float
    i1: float
    j1: float
    name: str = ""


@dataclass(frozen=True, eq=False)
class ReferenceLesion:
    """One annotated lesion on a target series, with the file it came from and how it was matched."""

    id: str
    source: str                      # the reference file
    format: str                      # "DICOM SEG", "RTSTRUCT", "LUNA16 CSV", ...
    matched_by: str                  # "Series Instance UID", "SOP Instance UID", "Frame of Reference", "geometry"
    centre_lps_mm: tuple[float, float, float]
    diameter_mm: float | None = None
    diameter_basis: str = ""
    mask: Volume | None = None       # bool on the target grid: volume, Dice
    region: Volume | None = None     # bool on the target grid for `contains` when wider than mask (LIDC union)
    boxes: tuple[Box, ...] = ()
    box_grid: Volume | None = None   # the target grid the boxes' indices refer to
    label: str = ""
    readers: int | None = None       # LIDC: readers whose contours make this lesion
    readers_total: int | None = None
    counts: bool = True              # False: an excluded finding (LUNA16): neither a hit nor a false positive
    excluded_because: str = ""
    also_in: tuple[str, ...] = ()    # other reference files that describe the same lesion

    @property
    def volume_mm3(self) -> float | None:
        if self.mask is None:
            return None
        return float(np.count_nonzero(self.mask.voxels) * np.prod(self.mask.spacing))

    @property
    def geometry(self) -> str:
        if self.mask is not None:
            return "mask"
        return "boxes" if self.boxes else "centre and diameter"

    def contains(self, points_lps) -> np.ndarray:
        """One bool per LPS point (N, 3): inside the mask (nearest voxel), the box stack, or the
        ball of the reference radius around the centre."""
        points = np.atleast_2d(np.asarray(points_lps, float))
        grid = self.region if self.region is not None else self.mask
        if grid is not None:
            return _in_grid(grid, points)
        if self.boxes and self.box_grid is not None:
            return self._in_boxes(points)
        if self.diameter_mm is None:
            return np.zeros(len(points), bool)
        return np.linalg.norm(points - np.asarray(self.centre_lps_mm), axis=1) <= self.diameter_mm / 2

    def _in_boxes(self, points: np.ndarray) -> np.ndarray:
        ijk = self.box_grid.lps_to_index(points)
        k = np.rint(ijk[:, 2]).astype(int)
        out = np.zeros(len(points), bool)
        for box in self.boxes:
            on = (k == box.k) & (ijk[:, 0] >= box.i0 - 0.5) & (ijk[:, 0] <= box.i1 + 0.5) \
                & (ijk[:, 1] >= box.j0 - 0.5) & (ijk[:, 1] <= box.j1 + 0.5)
            out |= on
        return out

    def to_json(self) -> dict:
        out = {"id": self.id, "source": self.source, "format": self.format, "matched_by": self.matched_by,
               "label": self.label, "centre_lps_mm": [round(v, 2) for v in self.centre_lps_mm],
               "diameter_mm": None if self.diameter_mm is None else round(self.diameter_mm, 2),
               "diameter_basis": self.diameter_basis, "geometry": self.geometry,
               "volume_mm3": None if self.volume_mm3 is None else round(self.volume_mm3, 1),
               "counts": self.counts}
        if self.readers is not None:
            out.update(readers=self.readers, readers_total=self.readers_total)
        if not self.counts:
            out["excluded_because"] = self.excluded_because
        if self.also_in:
            out["also_in"] = list(self.also_in)
        return out


def _in_grid(grid: Volume, points: np.ndarray) -> np.ndarray:
    ijk = np.rint(grid.lps_to_index(points)).astype(int)
    shape = np.array(grid.shape[::-1])
    ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
    out = np.zeros(len(points), bool)
    out[ok] = grid.voxels[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] > 0
    return out


def mask_centre(mask: Volume) -> tuple[float, float, float]:
    """LPS mm of a mask's centre of mass."""
    k, j, i = ndimage.center_of_mass(mask.voxels > 0)
    return tuple(float(v) for v in mask.index_to_lps([i, j, k]))


def axial_diameter_mm(mask: Volume) -> float | None:
    """Mean of the long and short axes of the mask's largest axial section (the ellipse with the
    same second moments, scikit-image's regionprops): the Lung-RADS mean diameter of a mask."""
    from skimage.measure import regionprops

    voxels = mask.voxels > 0
    areas = voxels.reshape(voxels.shape[0], -1).sum(axis=1)
    if not areas.any():
        return None
    k = int(np.argmax(areas))
    props = regionprops(voxels[k].astype(np.uint8))
    if not props:
        return None
    pixel = float(np.sqrt(mask.spacing[0] * mask.spacing[1]))
    p = props[0]
    return float((p.axis_major_length + p.axis_minor_length) / 2 * pixel)


def crop(mask: np.ndarray, grid: Volume, margin: int = 1) -> Volume:
    """A bool mask on `grid` as a Volume on the sub-grid of its bounding box (plus `margin`
    voxels), so that many lesion masks of a 512 x 512 x 300 series stay small."""
    where = np.argwhere(mask)
    if len(where) == 0:
        raise ValueError("empty mask")
    lo = np.maximum(where.min(axis=0) - margin, 0)
    hi = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    affine = np.array(grid.affine)
    affine[:3, 3] = grid.index_to_lps(lo[::-1].astype(float))
    return Volume(np.ascontiguousarray(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]).astype(bool), affine,
                  grid.frame_of_reference_uid, grid.source)


def mask_lesion(lesion_id: str, mask: np.ndarray, target: Target, **fields) -> ReferenceLesion:
    """A lesion from a bool mask on the target grid: centre of mass, axial mean diameter."""
    volume = crop(mask.astype(bool), target.volume)
    fields.setdefault("diameter_basis", "mean axes of the largest axial section of the mask")
    return ReferenceLesion(id=lesion_id, centre_lps_mm=mask_centre(volume), diameter_mm=axial_diameter_mm(volume),
                           mask=volume, **fields)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 26-connected pieces of a bool mask, largest first."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    return [labels == n + 1 for n in np.argsort(-sizes)]


def resample_onto(source: Volume, target: Volume) -> np.ndarray:
    """`source`'s values on `target`'s grid, nearest neighbour (SimpleITK), 0 outside."""
    import SimpleITK as sitk

    from viewer.inference.transforms import to_sitk

    image = to_sitk(source.with_voxels(np.asarray(source.voxels).astype(np.uint16)))
    reference = to_sitk(target.with_voxels(np.zeros(target.shape, np.uint8)))
    moved = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return sitk.GetArrayFromImage(moved)
