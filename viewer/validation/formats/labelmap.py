"""NIfTI / NRRD / MetaImage label maps (SimpleITK, whose physical space is LPS like DICOM's). Each
connected piece of each nonzero label is one lesion. Such files carry no UIDs, so a label map is
matched by geometry to a series in the same top-level folder of the data set (the same grid, or
an extent that overlaps the series' by at least half) and resampled onto it (nearest neighbour)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.core.volume import Volume
from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, Target, components, mask_lesion, resample_onto

FORMAT = "label map"
MAX_LABELS = 255
MIN_OVERLAP = 0.5


def is_label_map(path: Path | str) -> bool:
    """Integer voxels: a label map; floating point: an image. Reads the header only."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return reader.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                   sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)


@dataclass(frozen=True)
class LabelMap:
    path: str
    labels: Volume
    folder_key: str = ""
    format: str = FORMAT

    @classmethod
    def from_file(cls, path: Path | str, folder_key: str = "") -> "LabelMap":
        from viewer.core.errors import DicomReadError
        from viewer.dicom.load import load_volume_file

        path = Path(path)
        try:
            volume = load_volume_file(path)
        except DicomReadError as exc:
            raise ReferenceError(str(exc)) from None
        voxels = np.asarray(volume.voxels)
        if voxels.dtype.kind == "f" and not np.array_equal(voxels, np.rint(voxels)):
            raise ReferenceError(f"{path}: floating-point voxels ({voxels.min():g}..{voxels.max():g}) are an image, "
                                 "not a label map; a label map holds whole numbers")
        values = np.unique(voxels)
        if values.min() < 0 or len(values) > MAX_LABELS + 1:
            raise ReferenceError(f"{path}: {len(values)} distinct values from {values.min():g} to {values.max():g}; "
                                 f"a label map holds 0 (background) and up to {MAX_LABELS} labels")
        if len(values) == 1:
            raise ReferenceError(f"{path}: every voxel is {values[0]:g}: the label map marks no lesion")
        return cls(str(path), volume.with_voxels(voxels.astype(np.uint16), unit=""), folder_key)

    def refers_to(self) -> str:
        return f"no UID (matched by geometry within its folder {self.folder_key or '.'}); extent {_extent(self.labels)}"

    def attach(self, target: Target) -> Attachment | None:
        if self.folder_key != target.folder_key:
            return None
        same = (self.labels.shape == target.volume.shape
                and np.allclose(self.labels.affine, target.volume.affine, atol=1e-3))
        if not same and _overlap(self.labels, target.volume) < MIN_OVERLAP:
            return None
        how = "geometry (same grid)" if same else "geometry (overlapping extent; resampled)"
        values = self.labels.voxels if same else resample_onto(self.labels, target.volume)
        out = Attachment(matched_by=how)
        for value in (v for v in np.unique(values) if v):
            for n, piece in enumerate(components(values == value), 1):
                out.lesions.append(mask_lesion(f"M{value}.{n}", piece, target, source=self.path, format=FORMAT,
                                               matched_by=how, label=f"label {value}"))
        if not out.lesions:
            out.notes.append(f"{self.path}: no labelled voxel falls on the series' grid")
        return out


def _box(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    n = np.array(volume.shape[::-1]) - 1
    corners = np.array([[i, j, k] for i in (-0.5, n[0] + 0.5) for j in (-0.5, n[1] + 0.5) for k in (-0.5, n[2] + 0.5)])
    points = volume.index_to_lps(corners)
    return points.min(axis=0), points.max(axis=0)


def _overlap(a: Volume, b: Volume) -> float:
    """Shared part of two volumes' LPS boxes, relative to the smaller box."""
    (alo, ahi), (blo, bhi) = _box(a), _box(b)
    shared = np.prod(np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None))
    return float(shared / min(np.prod(ahi - alo), np.prod(bhi - blo)))


def _extent(volume: Volume) -> str:
    lo, hi = _box(volume)
    return ", ".join(f"{a} {l:.0f}..{h:.0f}" for a, l, h in zip("xyz", lo, hi)) + " mm"
