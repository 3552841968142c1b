"""Captions pointing at structures in the 3-D view: text in a box with a leader line to an LPS point.

Captions are 2-D overlays (vtkCaptionActor2D): they stay upright and readable at every camera
angle, and are drawn over the volume. Before each picture `AnnotationLayer.place` puts every box
on the side of its anchor away from the picture's centre, inside the picture and clear of the
other boxes, so a turntable keeps its captions at the margins while the anchors move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import vtk

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume

_ANNOTATION = re.compile(r"^\s*([^:]+):(.*)$")


@dataclass(frozen=True)
class Annotation:
    """A caption `text` anchored at `point_lps` (mm)."""

    point_lps: tuple[float, float, float]
    text: str

    @classmethod
    def parse(cls, spec: str, option: str = "--annotate") -> Annotation:
        """ "X,Y,Z:Text" as typed on the command line (LPS mm; the text may hold colons)."""
        match = _ANNOTATION.match(spec)
        numbers = match.group(1).split(",") if match else []
        try:
            point = tuple(float(v) for v in numbers)
        except ValueError:
            point = ()
        text = match.group(2).strip() if match else ""
        if len(point) != 3 or not all(np.isfinite(point)) or not text:
            raise RadSightError(f"{option} needs X,Y,Z:Text (three numbers in LPS mm, a colon, then the "
                                f"caption); got {spec!r}")
        return cls(point, text)


def surface_anchor(mask: np.ndarray, volume: Volume, away_from_lps=None) -> tuple[float, float, float]:
    """An LPS point on the surface of `mask` (z, y, x) where a caption's leader can land.

    It is where a ray from the mask's centroid, pointing away from `away_from_lps` (default the
    volume's centre), leaves the mask: the left lung gets its lateral wall, the heart its anterior
    surface. For a mask whose centroid is the volume centre, the ray points anterior (-y).
    """
    from scipy import ndimage  # erosion and bounding boxes; no need to hand-roll them

    if not mask.any():
        raise ValueError("empty mask has no surface")
    (box,) = ndimage.find_objects(mask.astype(np.uint8))
    sub = np.pad(mask[box], 1)
    surface = sub & ~ndimage.binary_erosion(sub)
    kji = np.argwhere(surface) - 1 + np.array([s.start for s in box])
    points = volume.index_to_lps(kji[:, ::-1].astype(float))
    centroid = volume.index_to_lps(np.argwhere(mask).mean(axis=0)[::-1])
    if away_from_lps is None:
        away_from_lps = volume.index_to_lps((np.array(volume.shape[::-1], float) - 1) / 2)
    direction = centroid - np.asarray(away_from_lps, float)
    if np.linalg.norm(direction) < 1e-6 * max(float(np.ptp(points, axis=0).max()), 1.0):
        direction = np.array([0.0, -1.0, 0.0])
    direction /= np.linalg.norm(direction)
    rel = points - centroid
    along = rel @ direction
    off_ray = np.linalg.norm(rel - np.outer(along, direction), axis=1)
    ahead = np.flatnonzero(along > 0)
    if ahead.size == 0:  # a shell around its own centroid's ray origin: take any surface point
        ahead = np.arange(len(points))
    near = ahead[off_ray[ahead] <= off_ray[ahead].min() + 1.5 * max(volume.spacing)]
    best = near[np.argmax(along[near])]  # the last exit for a concave shape
    return tuple(float(v) for v in points[best])


def label_annotations(labels: Volume, names: dict[int, str], values=None) -> list[Annotation]:
    """One caption per named label present in `labels` (all named ones, or those in `values`),
    anchored on its surface (see surface_anchor)."""
    present = {int(v) for v in np.unique(labels.voxels)} - {0}
    wanted = sorted(present & set(names)) if values is None else list(values)
    out = []
    for value in wanted:
        if value not in present:
            raise RadSightError(f"label {value} is not in the label volume; values present: "
                                f"{', '.join(map(str, sorted(present))) or 'none'}")
        if not names.get(value):
            raise RadSightError(f"label {value} has no name; give names with --label-names")
        out.append(Annotation(surface_anchor(labels.voxels == value, labels), names[value]))
    return out


def default_font_size(height: int) -> int:
    """Readable on a projector and in a small GIF alike: 1/30 of the picture height, at least 12 px."""
    return max(12, int(round(height / 30)))


class AnnotationLayer:
    """The captions of one scene; `place` before each picture."""

    def __init__(self, renderer: vtk.vtkRenderer, annotations: list[Annotation], font_size: int | None = None,
                 color=(1.0, 0.95, 0.6), background=(0.0, 0.0, 0.0), background_opacity: float = 0.75):
        self.renderer = renderer
        self.annotations = list(annotations)
        self.font_size = font_size
        self.captions: list[vtk.vtkCaptionActor2D] = []
        for ann in self.annotations:
            cap = vtk.vtkCaptionActor2D()
            cap.SetCaption(ann.text)
            cap.SetAttachmentPoint(*ann.point_lps)
            cap.BorderOff()  # the text's own framed background is the box (it fits the text exactly)
            cap.LeaderOn()
            cap.ThreeDimensionalLeaderOff()
            cap.SetLeaderGlyphSize(0.0)
            cap.GetTextActor().SetTextScaleModeToNone()  # our font size, not one fitted to the box
            text = cap.GetCaptionTextProperty()
            text.SetColor(*color)
            text.SetBackgroundColor(*background)
            text.SetBackgroundOpacity(background_opacity)  # contrast over bright bone and dark air
            text.BoldOn()
            text.ItalicOff()
            text.ShadowOff()
            text.FrameOn()
            text.SetFrameColor(*color)
            text.SetJustificationToLeft()  # the text starts at the caption's position, its lower left
            text.SetVerticalJustificationToBottom()
            cap.GetProperty().SetColor(*color)
            cap.GetPositionCoordinate().SetCoordinateSystemToDisplay()
            cap.GetPosition2Coordinate().SetCoordinateSystemToDisplay()
            renderer.AddViewProp(cap)
            self.captions.append(cap)

    def place(self, width: int, height: int) -> None:
        """Font, box size and box position for a picture of width x height pixels."""
        size = self.font_size or default_font_size(height)
        gap = max(2, size // 4)
        leader = 0.12 * min(width, height)
        measure = vtk.vtkTextRenderer()
        placed: list[tuple[float, float, float, float]] = []
        for cap in self.captions:
            text = cap.GetCaptionTextProperty()
            text.SetFontSize(size)
            text.SetFrameWidth(max(1, size // 12))
            cap.GetProperty().SetLineWidth(max(1.0, size / 12))
            bbox = [0, 0, 0, 0]
            measure.GetBoundingBox(text, cap.GetCaption(), bbox, 72)
            bw, bh = bbox[1] - bbox[0] + 1, bbox[3] - bbox[2] + 1
            ax, ay = self._display_point(cap.GetAttachmentPoint())
            dx, dy = ax - width / 2, ay - height / 2
            norm = np.hypot(dx, dy)
            dx, dy = (dx / norm, dy / norm) if norm > 1 else (0.7071, 0.7071)
            tx, ty = ax + dx * leader, ay + dy * leader
            x = tx if dx >= 0 else tx - bw
            y = ty if dy >= 0 else ty - bh
            x = float(np.clip(x, 1, max(width - bw - 1, 1)))
            y = float(np.clip(y, 1, max(height - bh - 1, 1)))
            step = bh + gap if dy >= 0 else -(bh + gap)
            for _ in range(len(placed) * 2 + 1):
                if not any(x < px + pw and px < x + bw and y < py + ph and py < y + bh for px, py, pw, ph in placed):
                    break
                y += step
                if not 1 <= y <= height - bh - 1:  # ran off the edge: go the other way from the start
                    step, y = -step, float(np.clip(ty if dy >= 0 else ty - bh, 1, max(height - bh - 1, 1)))
            placed.append((x, y, bw, bh))
            cap.SetPosition(x - ax, y - ay)  # relative to the attachment point
            cap.SetPosition2(bw, bh)

    def _display_point(self, world) -> tuple[float, float]:
        self.renderer.SetWorldPoint(*world, 1.0)
        self.renderer.WorldToDisplay()
        x, y, _ = self.renderer.GetDisplayPoint()
        return x, y
