"""Stack geometry: how a set of 2-D frames becomes one regular 3-D grid in LPS millimetres.

Frames are sorted by their position projected on the slice normal (row x column direction),
never by file name or Instance Number. The output grid is always orthogonal and uniform, as
3D Slicer's acquisition-geometry regularisation and dcm2niix do, because every later stage
(SimpleITK resampling, ONNX models, VTK reslicing) assumes it:

- gantry tilt (positions sheared along the column direction): each acquired slice is shifted
  in-plane onto the orthogonal grid (linear interpolation), and the tilt angle is reported;
- non-uniform spacing or missing slices: the stack is resampled along the normal to the median
  gap by linear interpolation between the two nearest acquired slices, and where the gaps were
  is reported.
Either way a `GeometryWarning` states the numbers and what was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from viewer.core.errors import GeometryError
from viewer.core.volume import GeometryWarning
from viewer.dicom.header import SliceRecord

# Positions are written with limited precision (often 0.001-0.01 mm); differences below this
# are rounding, not geometry.
POSITION_TOLERANCE_MM = 0.01
RELATIVE_SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class StackPlan:
    """The sorted acquired frames and the grid they are mapped onto."""

    records: tuple[SliceRecord, ...]
    affine: np.ndarray  # output index (i, j, k) -> LPS mm
    shape: tuple[int, int, int]  # output (z, y, x)
    inplane_shift: np.ndarray | None  # (N, 2) per acquired frame: shift (di, dj) in voxels
    resample: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (lower, upper, weight) per output slice
    warnings: tuple[GeometryWarning, ...]

    @property
    def is_direct(self) -> bool:
        """True when output slice k is acquired frame k unchanged."""
        return self.inplane_shift is None and self.resample is None


def orthonormal_axes(orientation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Row, column and normal unit vectors from (0020,0037); repairs slightly skewed cosines."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    problem = None
    dot = float(row @ col)
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(dot) > 1e-3:
        problem = (f"Image Orientation (Patient) is not orthonormal (|row|={np.linalg.norm(row):.4f}, "
                   f"|col|={np.linalg.norm(col):.4f}, row.col={dot:.4f}); re-orthonormalised")
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col), problem


def slice_distances(records: list[SliceRecord], normal: np.ndarray) -> np.ndarray:
    return np.array([np.dot(r.position, normal) for r in records], dtype=np.float64)


def _describe_position(distance: float) -> str:
    return f"{distance:.2f} mm"


def plan_stack(records: list[SliceRecord], label: str) -> StackPlan:
    """Sort frames along the normal and plan the regular grid; `label` names the series in messages."""
    first = records[0]
    warnings: list[GeometryWarning] = []
    rows, cols = first.rows, first.cols
    sy, sx = first.pixel_spacing or (1.0, 1.0)
    if first.pixel_spacing is None:
        warnings.append(GeometryWarning("no_pixel_spacing", f"{label}: no Pixel Spacing; 1 mm assumed, measurements are not in mm"))
    elif first.spacing_is_detector:
        warnings.append(GeometryWarning("detector_spacing", (
            f"{label}: spacing from Imager Pixel Spacing ({sy:g} x {sx:g} mm) is at the detector, "
            "not the patient; distances are magnified by the projection geometry")))
    if first.position is None or first.orientation is None:
        return _plan_without_geometry(records, label, sx, sy, warnings)

    row, col, normal, problem = orthonormal_axes(first.orientation)
    if problem:
        warnings.append(GeometryWarning("skewed_orientation", f"{label}: {problem}"))
    dist = slice_distances(records, normal)
    order = np.argsort(dist, kind="stable")
    records = [records[i] for i in order]
    dist = dist[order]
    n = len(records)
    positions = np.array([r.position for r in records], dtype=np.float64)

    affine = np.eye(4)
    affine[:3, 0] = row * sx
    affine[:3, 1] = col * sy
    affine[:3, 3] = positions[0]

    if n == 1:
        step = first.slice_thickness or 1.0
        affine[:3, 2] = normal * step
        return StackPlan(tuple(records), affine, (1, rows, cols), None, None, tuple(warnings))

    gaps = np.diff(dist)
    tol = max(POSITION_TOLERANCE_MM, RELATIVE_SPACING_TOLERANCE * float(np.median(gaps)))

    # In-plane offset of each frame from the line through the first frame along the normal.
    rel = positions - positions[0]
    inplane = rel - np.outer(rel @ normal, normal)
    shift = np.stack([inplane @ row / sx, inplane @ col / sy], axis=1)
    inplane_shift = None
    if np.max(np.linalg.norm(inplane, axis=1)) > POSITION_TOLERANCE_MM:
        span = dist[-1] - dist[0]
        drift = float(np.linalg.norm(inplane[-1]))
        angle = math.degrees(math.atan2(drift, span)) if span > 0 else 0.0
        warnings.append(GeometryWarning("gantry_tilt", (
            f"{label}: slices are sheared by {angle:.2f} degrees (gantry tilt: {drift:.1f} mm in-plane "
            f"drift over {span:.1f} mm); resampled onto an orthogonal grid so that positions stay "
            "correct in patient space")))
        inplane_shift = shift  # move each frame by its offset: where it was acquired, on the orthogonal grid

    median_gap = float(np.median(gaps))
    resample = None
    if median_gap <= POSITION_TOLERANCE_MM:
        raise GeometryError(f"{label}: slices do not advance along the normal "
                            f"(median gap {median_gap:.4f} mm); positions are duplicated")
    if float(np.max(np.abs(gaps - median_gap))) > tol:
        resample, message = _plan_resample(dist, gaps, median_gap, tol, label)
        warnings.append(GeometryWarning("nonuniform_spacing", message))
        step = median_gap
        nz = len(resample[0])
    else:
        step = float((dist[-1] - dist[0]) / (n - 1))
        nz = n
    affine[:3, 2] = normal * step
    return StackPlan(tuple(records), affine, (nz, rows, cols), inplane_shift, resample, tuple(warnings))


def _plan_resample(dist, gaps, step, tol, label):
    """Output slices every `step` mm from the first to the last acquired frame; interpolation weights."""
    rel = dist - dist[0]
    nz = int(round(rel[-1] / step)) + 1
    out = np.arange(nz) * step
    upper = np.clip(np.searchsorted(rel, out, side="left"), 1, len(rel) - 1)
    lower = upper - 1
    width = rel[upper] - rel[lower]
    weight = np.clip((out - rel[lower]) / width, 0.0, 1.0)

    ratios = gaps / step
    missing = [(i, int(round(r)) - 1) for i, r in enumerate(ratios)
               if abs(r - round(r)) * step <= tol and round(r) >= 2]
    odd = [i for i, g in enumerate(gaps) if abs(g - step) > tol and not any(i == m[0] for m in missing)]
    parts = [f"{label}: slice spacing varies from {gaps.min():.2f} to {gaps.max():.2f} mm (median {step:.2f} mm)"]
    if missing:
        count = sum(m[1] for m in missing)
        where = ", ".join(f"between {_describe_position(dist[i])} and {_describe_position(dist[i + 1])}"
                          for i, _ in missing[:3])
        parts.append(f"{count} slice(s) may be missing ({where}{', ...' if len(missing) > 3 else ''})")
    if odd:
        parts.append(f"{len(odd)} irregular gap(s), first after {_describe_position(dist[odd[0]])}")
    parts.append(f"volume resampled to {step:.2f} mm by linear interpolation ({len(dist)} acquired -> {nz} slices)")
    return (lower, upper, weight), "; ".join(parts)


def _plan_without_geometry(records, label, sx, sy, warnings) -> StackPlan:
    """Projection images and objects without (0020,0032)/(0020,0037): an index grid in mm."""
    records = sorted(records, key=lambda r: (r.instance_number is None, r.instance_number or 0, str(r.path), r.frame or 0))
    first = records[0]
    step = first.slice_thickness or 1.0
    affine = np.diag([sx, sy, step, 1.0])
    if len(records) > 1:
        message = (f"{label}: no Image Position/Orientation (Patient); {len(records)} frames ordered by "
                   f"Instance Number with {step:g} mm assumed between them; not in patient coordinates")
    else:
        message = f"{label}: projection or 2-D image without patient position; shown in image coordinates"
    warnings.append(GeometryWarning("no_patient_geometry", message))
    return StackPlan(tuple(records), affine, (len(records), first.rows, first.cols), None, None, tuple(warnings))
