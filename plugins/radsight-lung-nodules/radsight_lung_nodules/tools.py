"""The panel's tools in the slice views: click-to-measure and the contour brush (paint / erase).

Both are slice_view.ToolHandler objects registered with the main window; they only gather the
point and hand it to the panel, which runs the measuring in a background job. The brush edits a
copy of the nodule mask in memory (fast enough to follow the mouse; the mask is a small
sub-grid) and asks for new numbers when the stroke ends.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewer.core.volume import Volume

MEASURE_TOOL = "nodule-measure"
BRUSH_TOOL = "nodule-brush"
EDIT_MARGIN_VOXELS = 4  # room around the nodule's box so that painting can grow the contour


class MeasureTool:
    """A left click measures the nodule under it."""

    def __init__(self, on_point: Callable[[np.ndarray], None]):
        self.on_point = on_point

    def press(self, view, point: np.ndarray) -> None:
        self.on_point(np.asarray(point, float))

    def move(self, view, point: np.ndarray) -> None:
        pass

    def release(self, view, point: np.ndarray) -> None:
        pass


def padded_mask(mask: Volume, study: Volume, margin: int = EDIT_MARGIN_VOXELS) -> Volume:
    """The mask on a sub-grid grown by `margin` voxels each way (clipped to the study)."""
    start = np.rint(study.lps_to_index(mask.affine[:3, 3])).astype(int)
    lo = np.maximum(start - margin, 0)
    hi = np.minimum(start + np.array(mask.shape[::-1]) + margin, np.array(study.shape[::-1]))
    voxels = np.zeros(tuple((hi - lo)[::-1]), np.uint8)
    a, b = start - lo, start - lo + np.array(mask.shape[::-1])
    src_lo = np.maximum(-a, 0)
    a = np.maximum(a, 0)
    b = np.minimum(b, hi - lo)
    src_hi = src_lo + (b - a)
    voxels[a[2]:b[2], a[1]:b[1], a[0]:b[0]] = mask.voxels[src_lo[2]:src_hi[2], src_lo[1]:src_hi[1], src_lo[0]:src_hi[0]] > 0
    affine = np.array(mask.affine)
    affine[:3, 3] = study.index_to_lps(lo)
    return Volume(voxels, affine, mask.frame_of_reference_uid or study.frame_of_reference_uid)


def brush(mask: np.ndarray, grid: Volume, start, end, normal, radius_mm: float, half_depth_mm: float,
          value: int) -> int:
    """Set the voxels of `mask` (on `grid`) within `radius_mm` of the stroke from `start` to `end`
    in the plane with `normal` (and within `half_depth_mm` of it) to `value`; returns how many
    changed. The whole segment is covered, so a fast mouse leaves no gaps between its events."""
    nz, ny, nx = mask.shape
    k, j, i = np.mgrid[:nz, :ny, :nx]
    centres = grid.index_to_lps(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    a, b, n = (np.asarray(v, float) for v in (start, end, normal))
    d = centres - a
    along = d @ n
    in_plane = d - np.outer(along, n)
    segment = (b - a) - ((b - a) @ n) * n
    length2 = float(segment @ segment)
    t = np.clip(in_plane @ segment / length2, 0, 1) if length2 > 0 else np.zeros(len(d))
    across = np.linalg.norm(in_plane - np.outer(t, segment), axis=1)
    hit = ((np.abs(along) <= half_depth_mm) & (across <= radius_mm)).reshape(mask.shape)
    changed = int(np.count_nonzero(mask[hit] != value))
    mask[hit] = value
    return changed


class BrushTool:
    """Drag to paint (value 1) or erase (value 0) the edited mask in the view's plane."""

    def __init__(self, edited: Callable[[], "tuple[np.ndarray, Volume] | None"], on_change: Callable[[], None],
                 on_stroke_end: Callable[[], None]):
        self.edited, self.on_change, self.on_stroke_end = edited, on_change, on_stroke_end
        self.radius_mm = 3.0
        self.erase = True
        self._last: np.ndarray | None = None  # where the stroke was at the previous mouse event

    def _apply(self, view, point) -> None:
        target = self.edited()
        if target is None or view.scene is None:
            return
        mask, grid = target
        start = self._last if self._last is not None else point
        self._last = np.asarray(point, float)
        if brush(mask, grid, start, point, view.scene.normal, self.radius_mm, view.scene.slice_step / 2,
                 0 if self.erase else 1):
            self.on_change()

    def press(self, view, point: np.ndarray) -> None:
        self._last = None
        self._apply(view, point)

    def move(self, view, point: np.ndarray) -> None:
        if self._last is not None:
            self._apply(view, point)

    def release(self, view, point: np.ndarray) -> None:
        if self._last is not None:
            self._apply(view, point)
            self._last = None
            self.on_stroke_end()
