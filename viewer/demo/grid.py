"""Scanner grids (presets) and the patient's rigid motion between visits.

Coordinates are DICOM patient LPS millimetres. The "anatomy frame" is where the phantom is
defined; it coincides with the baseline visit's scanner frame, and each later visit sees the
anatomy through a small rigid motion p_scanner = R @ p_anatomy + t (the patient lay slightly
differently on the table). The grid itself is the same kind of axial grid every visit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from viewer.demo.shapes import rotation_matrix

# Grid centre in LPS mm. z = -15 puts the carina near the top third and the lung bases and the
# dome of the liver in view in both presets.
GRID_CENTRE_LPS = (0.0, 0.0, -15.0)


@dataclass(frozen=True)
class ScanGrid:
    """An axial CT grid: columns along +x (L), rows along +y (P), slices along +z (S).

    Voxel (i, j, k) (column, row, slice; k ascending in z) has its centre at
    origin + (i * col_spacing, j * row_spacing, k * slice_spacing): ImageOrientationPatient
    1\\0\\0\\0\\1\\0, and ImagePositionPatient of slice k is the centre of its first pixel.
    """

    rows: int
    cols: int
    n_slices: int
    row_spacing: float  # mm between rows (PixelSpacing[0])
    col_spacing: float  # mm between columns (PixelSpacing[1])
    slice_spacing: float
    slice_thickness: float

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "n_slices"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"grid {name} must be a positive integer; got {value!r}")
        for name in ("row_spacing", "col_spacing", "slice_spacing", "slice_thickness"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"grid {name} must be a positive number of mm; got {value!r}")
        if self.rows > 4096 or self.cols > 4096 or self.n_slices > 4000:
            raise ValueError(f"grid {self.cols}x{self.rows}x{self.n_slices} is larger than the "
                             "generator supports (4096 x 4096 x 4000)")

    @property
    def origin(self) -> np.ndarray:
        """LPS mm of the centre of voxel (0, 0, 0), chosen so the grid is centred on
        GRID_CENTRE_LPS."""
        cx, cy, cz = GRID_CENTRE_LPS
        return np.array([cx - (self.cols - 1) / 2 * self.col_spacing,
                         cy - (self.rows - 1) / 2 * self.row_spacing,
                         cz - (self.n_slices - 1) / 2 * self.slice_spacing])

    @property
    def spacing_xyz(self) -> np.ndarray:
        return np.array([self.col_spacing, self.row_spacing, self.slice_spacing])

    @property
    def affine(self) -> np.ndarray:
        """4x4 index (i, j, k) -> LPS mm, the convention of viewer.core.Volume."""
        out = np.diag([*self.spacing_xyz, 1.0])
        out[:3, 3] = self.origin
        return out

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_xyz))

    @property
    def ramp_width_mm(self) -> float:
        """Width of the partial-volume ramp: the voxel's geometric mean size."""
        return float(np.prod(self.spacing_xyz) ** (1.0 / 3.0))

    def axis_mm(self, axis: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Voxel-centre coordinates along axis 0=x (columns), 1=y (rows), 2=z (slices)."""
        n = (self.cols, self.rows, self.n_slices)[axis]
        idx = np.arange(start, n if stop is None else stop)
        return self.origin[axis] + idx * self.spacing_xyz[axis]

    def index_range(self, axis: int, low_mm: float, high_mm: float) -> tuple[int, int]:
        """Half-open voxel index range whose centres may fall in [low_mm, high_mm]."""
        n = (self.cols, self.rows, self.n_slices)[axis]
        lo = int(np.floor((low_mm - self.origin[axis]) / self.spacing_xyz[axis]))
        hi = int(np.ceil((high_mm - self.origin[axis]) / self.spacing_xyz[axis])) + 1
        return max(lo, 0), min(hi, n)

    def index_ranges(self, axis: int, low_mm: np.ndarray,
                     high_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised index_range for many intervals at once."""
        n = (self.cols, self.rows, self.n_slices)[axis]
        lo = np.floor((low_mm - self.origin[axis]) / self.spacing_xyz[axis]).astype(int)
        hi = np.ceil((high_mm - self.origin[axis]) / self.spacing_xyz[axis]).astype(int) + 1
        return np.clip(lo, 0, n), np.clip(hi, 0, n)

    def to_json(self) -> dict:
        out = asdict(self)
        out["origin_lps_mm"] = self.origin.tolist()
        out["index_to_lps"] = self.affine.tolist()
        return out


PRESETS: dict[str, ScanGrid] = {
    # A realistic thin-slice chest CT: 346 mm field of view, 250 mm of z.
    "demo": ScanGrid(rows=384, cols=384, n_slices=200, row_spacing=0.9, col_spacing=0.9,
                     slice_spacing=1.25, slice_thickness=1.25),
    # For tests: the same anatomy on a coarse grid (333 mm field of view, 200 mm of z).
    "small": ScanGrid(rows=128, cols=128, n_slices=80, row_spacing=2.6, col_spacing=2.6,
                      slice_spacing=2.5, slice_thickness=2.5),
}


def make_grid(preset: str = "demo", rows: int | None = None, cols: int | None = None,
              n_slices: int | None = None, pixel_spacing: float | None = None,
              slice_spacing: float | None = None) -> ScanGrid:
    """A preset grid with optional overrides (slice thickness follows the slice spacing)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown grid preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    spacing = base.slice_spacing if slice_spacing is None else float(slice_spacing)
    return ScanGrid(
        rows=base.rows if rows is None else int(rows),
        cols=base.cols if cols is None else int(cols),
        n_slices=base.n_slices if n_slices is None else int(n_slices),
        row_spacing=base.row_spacing if pixel_spacing is None else float(pixel_spacing),
        col_spacing=base.col_spacing if pixel_spacing is None else float(pixel_spacing),
        slice_spacing=spacing,
        slice_thickness=spacing if slice_spacing is not None else base.slice_thickness,
    )


@dataclass(frozen=True)
class RigidMotion:
    """p_scanner = R @ p_anatomy + t, with R = Rz @ Ry @ Rx from the three angles (degrees)."""

    about_x_deg: float = 0.0
    about_y_deg: float = 0.0
    about_z_deg: float = 0.0
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.about_x_deg, self.about_y_deg, self.about_z_deg)

    @property
    def translation(self) -> np.ndarray:
        return np.asarray(self.translation_mm, dtype=np.float64)

    @property
    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.translation
        return out

    def apply(self, points) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    @staticmethod
    def sample(rng: np.random.Generator) -> "RigidMotion":
        """A plausible repositioning: 1-3 degrees of yaw (in the axial plane), up to 1 degree of
        pitch and roll, and 2-4 mm of translation in each direction with random signs."""
        sign = rng.choice([-1.0, 1.0], size=4)
        yaw = float(sign[0] * rng.uniform(1.0, 3.0))
        pitch, roll = (float(v) for v in rng.uniform(-1.0, 1.0, size=2))
        shift = sign[1:] * rng.uniform(2.0, 4.0, size=3)
        return RigidMotion(pitch, roll, yaw, tuple(float(v) for v in shift))

    def to_json(self) -> dict:
        return {
            "anatomy_to_scanner": self.matrix.tolist(),
            "rotation_deg": {"about_x": self.about_x_deg, "about_y": self.about_y_deg,
                             "about_z": self.about_z_deg},
            "translation_mm": list(self.translation_mm),
        }
