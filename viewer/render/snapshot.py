"""A picture of one view of a volume (with overlays) as an RGB array: `radsight render` and tests."""

from __future__ import annotations

import numpy as np

from viewer.core.volume import Volume
from viewer.render.offscreen import render_to_array
from viewer.render.slice_scene import SliceScene


def render_slice(volume: Volume, view: str = "axial", at=None, window: tuple[float, float] | None = None,
                 labels: Volume | None = None, outline: bool = False, scale: float = 1.0,
                 letters: bool = True, heatmap: Volume | None = None, heatmap_title: str = "") -> np.ndarray:
    """RGB image of the plane through `at` (LPS mm; default the volume centre), with a label
    mask and a relevance map in [0, 1] (values under 0.2 transparent, with its colour bar).

    At scale 1 one screen pixel is one output sample (the volume's finest spacing), so pixel
    positions map straight to millimetres; `scale` enlarges the picture. `letters` shows the
    orientation letters and the scale bar.
    """
    scene = SliceScene(volume, view)
    if at is not None:
        scene.set_position(at)
    if window is not None:
        scene.set_window(*window)
    if labels is not None:
        scene.add_labels(labels, outline=outline)
    if heatmap is not None:
        scene.add_heatmap(heatmap, "inferno", 0.6, threshold=0.2, value_range=(0.0, 1.0), colorbar_title=heatmap_title)
    for actor in list(scene._letters.values()) + [scene.scale_bar]:
        actor.SetVisibility(int(letters))
    nu, nv = scene.output_size()
    width, height = max(int(round(nu * scale)), 1), max(int(round(nv * scale)), 1)
    scene.fit_camera(width, height)
    return render_to_array(scene.renderer, width, height)


def render_3d(volume: Volume, preset: str = "ct-bone", labels: Volume | None = None, azimuth: float = 0.0,
              elevation: float = 0.0, size: tuple[int, int] = (800, 800), clip_box=None) -> np.ndarray:
    """RGB image of the 3-D view: volume rendering preset, label surfaces, camera turned from the
    anterior view by `azimuth` (about the patient's long axis) and `elevation` degrees."""
    from viewer.render.volume_scene import VolumeScene

    scene = VolumeScene(volume, preset)
    if labels is not None:
        scene.add_label_surfaces(labels)
    scene.set_clip_box(clip_box)
    camera = scene.renderer.GetActiveCamera()
    camera.Azimuth(azimuth)
    camera.Elevation(elevation)
    camera.OrthogonalizeViewUp()
    scene.renderer.ResetCameraClippingRange()
    return render_to_array(scene.renderer, *size, before_render=scene.adapt_to)
