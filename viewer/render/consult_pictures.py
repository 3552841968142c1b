"""The consultation screen's pictures of one finding: the slice through it with its outline, and
the 3-D model with it highlighted, as RGB arrays (offscreen, so a worker thread can make them).

One bright highlight colour for the finding in both pictures, so the patient sees that the
yellow ring on the slice and the yellow ball in the model are the same spot.
"""

from __future__ import annotations

import numpy as np
import vtk

from viewer.core.label_style import LabelStyle
from viewer.core.volume import Volume
from viewer.render.offscreen import render_to_array
from viewer.render.slice_scene import SliceScene
from viewer.render.volume_scene import VolumeScene

OUTLINE_SAMPLES = 200
HIGHLIGHT = (1.0, 0.85, 0.0)     # the finding, on the slice and in the model
ANATOMY = (0.65, 0.75, 0.9)      # lungs and other organs, one calm colour (no alarming red) ...
ANATOMY_OPACITY = 0.15           # ... seen through, the finding inside them


def _binary(mask: Volume) -> Volume:
    return mask.with_voxels((np.asarray(mask.voxels) > 0).astype(np.uint8))


def finding_slice(volume: Volume, centre, mask: Volume | None, view: str = "axial",
                  window: tuple[float, float] | None = None, size: tuple[int, int] = (720, 720),
                  field_mm: float = 140.0) -> np.ndarray:
    """The `view` plane through `centre` (LPS mm), `field_mm` tall and centred on it (so the
    finding is at the middle pixel), the mask's outline in the highlight colour; orientation
    letters kept (in white), the ruler left out (a patient reads the caption's millimetres instead)."""
    scene = SliceScene(volume, view)
    centre = np.asarray(centre, float)
    # Resliced finer than the voxels (200 samples top to bottom): the grey image smoother, and the
    # outline (one to two samples wide) a line around the finding rather than a block of its few
    # voxels, still thick enough to see when the picture is shown smaller.
    scene.sample_mm = field_mm / OUTLINE_SAMPLES
    scene.set_position(centre)
    if window is not None:
        scene.set_window(*window)
    if mask is not None:
        scene.add_labels(_binary(mask), {1: LabelStyle(HIGHLIGHT, 1.0)}, outline=True)
    scene.scale_bar.SetVisibility(0)
    for actor in scene._letters.values():  # white: yellow is the finding's alone
        actor.GetTextProperty().SetFontSize(max(16, size[1] // 28))
        actor.GetTextProperty().SetColor(1.0, 1.0, 1.0)
    width, height = size
    scene.fit_camera(width, height)
    camera = scene.renderer.GetActiveCamera()
    u, v = float(centre @ scene.right), float(centre @ scene.up)
    camera.SetFocalPoint(u, v, 0)
    camera.SetPosition(u, v, 1000)
    camera.SetParallelScale(field_mm / 2)
    scene.renderer.ResetCameraClippingRange()
    return render_to_array(scene.renderer, width, height)


def finding_model(volume: Volume, mask: Volume | None, anatomy: Volume | None = None,
                  size: tuple[int, int] = (720, 720), zoom: float = 1.5) -> np.ndarray:
    """The body from the front: the anatomy labels as see-through surfaces in one calm colour
    (the bone volume rendering instead when there are none), the finding as an opaque surface in
    the highlight colour inside a faint halo of it, so a spot a few millimetres across is found."""
    scene = VolumeScene(volume, "ct-bone")
    if anatomy is not None and np.any(anatomy.voxels):
        scene.actor.SetVisibility(0)  # ribs in front would hide the finding
        values = [int(v) for v in np.unique(anatomy.voxels) if v != 0]
        scene.add_label_surfaces(anatomy, {v: LabelStyle(ANATOMY, ANATOMY_OPACITY) for v in values})
    if mask is not None:
        binary = _binary(mask)
        (surface,) = [a for a in scene.add_label_surfaces(binary, {1: LabelStyle(HIGHLIGHT, 1.0)},
                                                          smoothing_iterations=10) if a.label_value == 1][-1:]
        surface.GetProperty().SetAmbient(0.5)   # lit from the front or not, it stays bright
        scene.renderer.AddActor(_halo(binary))
    camera = scene.renderer.GetActiveCamera()
    camera.Zoom(zoom)
    scene.renderer.ResetCameraClippingRange()
    return render_to_array(scene.renderer, *size, before_render=scene.adapt_to)


def _halo(mask: Volume) -> vtk.vtkActor:
    """A translucent sphere of the highlight colour around the mask, three times its radius."""
    k, j, i = np.nonzero(mask.voxels)
    points = np.array([mask.index_to_lps(p) for p in zip(i, j, k)])
    centre = points.mean(axis=0)
    radius = max(3.0 * float(np.linalg.norm(points - centre, axis=1).max()), 8.0)
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*centre)
    sphere.SetRadius(radius)
    sphere.SetThetaResolution(32)
    sphere.SetPhiResolution(32)
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputConnection(sphere.GetOutputPort())
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*HIGHLIGHT)
    actor.GetProperty().SetOpacity(0.3)
    actor.GetProperty().SetAmbient(0.6)
    return actor


__all__ = ["ANATOMY", "ANATOMY_OPACITY", "HIGHLIGHT", "finding_model", "finding_slice"]
