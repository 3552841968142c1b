"""A picture of one view of a volume (with overlays) as an RGB array: `radsight render` and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


class Scene3D:
    """The 3-D view with everything a teaching picture adds: volume preset, label surfaces (with
    `label_styles`, value -> LabelStyle, or the palette), clipping, captions. Built once; `views`
    renders many camera angles in one offscreen window."""

    def __init__(self, volume: Volume, preset: str = "ct-bone", labels: Volume | None = None, clip_box=None,
                 clip_planes=(), annotations=(), font_size: int | None = None, label_styles=None):
        from viewer.render.annotations import AnnotationLayer
        from viewer.render.volume_scene import VolumeScene

        self.scene = VolumeScene(volume, preset)
        if labels is not None:
            self.scene.add_label_surfaces(labels, label_styles)
        self.scene.set_clip_box(clip_box)
        self.scene.set_clip_planes(list(clip_planes))
        self.captions = AnnotationLayer(self.scene.renderer, list(annotations), font_size) if annotations else None

    def views(self, angles: Iterable[tuple[float, float]], size: tuple[int, int]) -> Iterator[np.ndarray]:
        """RGB pictures for (azimuth, elevation) pairs in degrees (see VolumeScene.set_view)."""
        from viewer.render.offscreen_window import OffscreenWindow

        width, height = size
        with OffscreenWindow(self.scene.renderer, width, height, before_render=self.scene.adapt_to) as window:
            for azimuth, elevation in angles:
                self.scene.set_view(azimuth, elevation)
                if self.captions is not None:
                    self.captions.place(width, height)
                yield window.grab()


def render_3d(volume: Volume, preset: str = "ct-bone", labels: Volume | None = None, azimuth: float = 0.0,
              elevation: float = 0.0, size: tuple[int, int] = (800, 800), clip_box=None, *, clip_planes=(),
              annotations=(), font_size: int | None = None) -> np.ndarray:
    """RGB image of the 3-D view: volume rendering preset, label surfaces, camera turned from the
    anterior view by `azimuth` (about the patient's long axis) and `elevation` degrees; clip
    planes as (origin, normal) pairs keep the side the normal points to; captions
    (viewer.render.annotations.Annotation) with `font_size` px text (default 1/30 of the height)."""
    scene = Scene3D(volume, preset, labels, clip_box, clip_planes, annotations, font_size)
    (rgb,) = scene.views([(azimuth, elevation)], size)
    return rgb
