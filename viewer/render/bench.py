"""Render benchmark: one-slice scroll with a mask overlay vs a bare VTK slice render, same run.

Reference: the classic minimal VTK slice display, a vtkImageActor showing one z extent of a
512x512xN image through window/level, moved one slice per frame. RadSight: a SliceScene
(reslice + window/level + label overlay + letters + crosshair-free) stepped one slice per frame.
Both render offscreen at 512x512; times are medians.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewer.bench.timing import median_seconds
from viewer.core.volume import Volume
from viewer.render.offscreen import vtk  # chooses the EGL window when there is no display
from viewer.render.slice_scene import SliceScene
from viewer.render.vtk_image import to_vtk_image
from viewer.render.volume_scene import VolumeScene


def _window(renderer, size: int):
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(size, size)
    window.AddRenderer(renderer)
    window.Render()
    return window


def _median_ms(frame: Callable[[int], None], frames: int) -> float:
    """Median frame time in ms; `frame` gets the frame number."""
    counter = iter(range(frames))
    return median_seconds(lambda: frame(next(counter)), frames) * 1000


def synthetic_ct(nx: int, ny: int, nz: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:nz, :ny, :nx]
    body = ((x - nx / 2) / (nx * 0.42)) ** 2 + ((y - ny / 2) / (ny * 0.35)) ** 2 < 1
    voxels = np.where(body, 40, -1000).astype(np.int16) + rng.integers(-20, 20, (nz, ny, nx), dtype=np.int16)
    mask = (((x - nx * 0.35) ** 2 + (y - ny / 2) ** 2 + (z - nz / 2) ** 2 * 4) < (nx * 0.08) ** 2).astype(np.uint8)
    volume = Volume(voxels, np.diag([0.7, 0.7, 1.25, 1.0]), unit="[hnsf'U]")
    return volume, volume.with_voxels(mask)


def run_render_benchmark(frames: int = 60, slices: int = 64, log: Callable[[str], None] = print) -> dict:
    volume, mask = synthetic_ct(512, 512, slices)
    # Reference: bare vtkImageActor slice display.
    image = to_vtk_image(volume)
    wl = vtk.vtkImageMapToWindowLevelColors()
    wl.SetInputData(image)
    wl.SetWindow(400)
    wl.SetLevel(40)
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputConnection(wl.GetOutputPort())
    bare = vtk.vtkRenderer()
    bare.AddActor(actor)
    actor.SetDisplayExtent(0, 511, 0, 511, 0, 0)
    bare.ResetCamera()
    bare_window = _window(bare, 512)

    def bare_frame(n: int) -> None:
        k = n % slices
        actor.SetDisplayExtent(0, 511, 0, 511, k, k)
        bare_window.Render()

    log(f"bare VTK slice display, {frames} frames ...")
    bare_ms = _median_ms(bare_frame, frames)

    scene = SliceScene(volume, "axial")
    scene.set_window(400, 40)
    scene.add_labels(mask)
    scene.fit_camera(512, 512)
    scene_window = _window(scene.renderer, 512)
    lo, _ = scene.normal_range
    scene.set_position(scene.position + (lo - scene.position @ scene.normal) * scene.normal)

    def scene_frame(n: int) -> None:
        scene.step(1 if (n // (slices - 1)) % 2 == 0 else -1)
        scene_window.Render()

    log(f"RadSight slice view with mask overlay, {frames} frames ...")
    scene_ms = _median_ms(scene_frame, frames)

    log("3D: 256^3 volume rendering, 9 frames ...")
    v3, _ = synthetic_ct(256, 256, 256)
    vscene = VolumeScene(v3, "ct-bone")
    vwindow = _window(vscene.renderer, 512)
    vscene.adapt_to(vwindow)

    def rotate(n: int) -> None:
        vscene.renderer.GetActiveCamera().Azimuth(10)
        vwindow.Render()

    volume_ms = _median_ms(rotate, 9)
    ratio = scene_ms / bare_ms
    report = {
        "frames": frames, "bare_slice_ms": bare_ms, "radsight_slice_with_overlay_ms": scene_ms,
        "ratio": ratio, "goal_ratio": 1.3, "volume_256_frame_ms": volume_ms,
        "renderer": bare_window.GetClassName(),
    }
    report["text"] = "\n".join([
        f"RadSight render benchmark (512x512 view, {bare_window.GetClassName()}, median of {frames})",
        f"  bare VTK single-slice render         {bare_ms:7.2f} ms",
        f"  RadSight scroll + mask overlay       {scene_ms:7.2f} ms   ratio {ratio:.2f}x (goal <= 1.3x)",
        f"  3D volume rendering 256^3 (ct-bone)  {volume_ms:7.1f} ms per frame",
    ])
    for w in (bare_window, scene_window, vwindow):
        w.Finalize()
    return report
