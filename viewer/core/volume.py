"""The one volume model every part of RadSight shares.

A volume is a voxel array indexed (z, y, x) plus a 4x4 affine that maps the index (i=x, j=y, k=z)
to patient LPS millimetres, the DICOM Frame of Reference it lives in, and the identity of the
series it came from. Masks and heatmaps use the same class, so nothing passes raw arrays without
geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SourceIdentity:
    """Which DICOM series (or file) the voxels came from; UIDs only, no patient identifiers."""

    study_uid: str | None = None
    series_uid: str | None = None
    modality: str | None = None
    series_number: int | None = None
    description: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class GeometryWarning:
    """A geometry problem found on read, kept with the volume so the user sees it.

    `code` is stable for programs (e.g. "nonuniform_spacing", "gantry_tilt"); `message` states
    the numbers and what RadSight did about it.
    """

    code: str
    message: str

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class DisplayHints:
    """How the source asked to be shown; never applied to the voxel values themselves."""

    window_center: float | None = None
    window_width: float | None = None
    # MONOCHROME1: minimum value is white. The data keep their physical meaning; the renderer
    # inverts the grey ramp instead.
    invert_grey: bool = False


@dataclass(frozen=True, eq=False)
class Volume:
    voxels: np.ndarray
    affine: np.ndarray
    frame_of_reference_uid: str | None = None
    source: SourceIdentity = field(default_factory=SourceIdentity)
    warnings: tuple[GeometryWarning, ...] = ()
    display: DisplayHints = field(default_factory=DisplayHints)
    unit: str = ""  # UCUM: "[hnsf'U]" for CT Hounsfield units, "" when unknown

    def __post_init__(self) -> None:
        voxels = np.asarray(self.voxels)
        if voxels.ndim != 3:
            raise ValueError(f"Volume voxels must be 3-D (z, y, x); got shape {voxels.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4; got shape {affine.shape}")
        if not np.all(np.isfinite(affine)):
            raise ValueError("Volume affine contains NaN or infinite values")
        if not np.allclose(affine[3], [0, 0, 0, 1]):
            raise ValueError(f"Volume affine's last row must be 0 0 0 1; got {affine[3].tolist()}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise ValueError("Volume affine is singular: two voxel axes are parallel or a spacing is 0")
        affine = affine.copy()
        affine.setflags(write=False)
        object.__setattr__(self, "voxels", voxels)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x)."""
        return tuple(self.voxels.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm: the lengths of the affine's index columns."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS mm of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of the i, j, k index axes."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    def index_to_lps(self, ijk) -> np.ndarray:
        """Index (i=x, j=y, k=z; N x 3 or 3) to LPS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, xyz) -> np.ndarray:
        """LPS mm (N x 3 or 3) to continuous index (i, j, k)."""
        xyz = np.asarray(xyz, dtype=np.float64)
        return (xyz - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T

    def with_voxels(self, voxels: np.ndarray, unit: str | None = None) -> "Volume":
        """A volume on the same grid with other values (a mask, a heatmap)."""
        if np.shape(voxels) != self.shape:
            raise ValueError(f"voxels of shape {np.shape(voxels)} do not fit grid {self.shape}")
        return Volume(voxels, self.affine, self.frame_of_reference_uid, self.source,
                      self.warnings, self.display, self.unit if unit is None else unit)
