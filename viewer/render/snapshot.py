"""A picture of one view of a volume (with overlays) as an RGB array: `radsight render` and tests."""

from __future__ import annotations

import numpy as np

from viewer.core.volume import Volume
from viewer.render.offscreen import render_to_array
from viewer.render.slice_scene import SliceScene


def render_slice(volume: Volume, view: str = "axial", at=None, window: tuple[float, float] | None = None,
                 labels: Volume | None = None, outline: bool = False, scale: float = 1.0,
                 letters: bool = True) -> np.ndarray:
    """RGB image of the plane through `at` (LPS mm; default the volume centre).

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
    for actor in list(scene._letters.values()) + [scene.scale_bar]:
        actor.SetVisibility(int(letters))
    nu, nv = scene.output_size()
    width, height = max(int(round(nu * scale)), 1), max(int(round(nv * scale)), 1)
    scene.fit_camera(width, height)
    return render_to_array(scene.renderer, width, height)
