"""Rendered pixels (VTK offscreen): overlays land where the voxel is, letters match the anatomy,
window/level gives the computed grey values.

Expected pixel positions are derived from the radiological conventions alone: axial seen from
the feet (patient left on screen right, anterior up), coronal from the front (left on the right,
superior up), sagittal from the patient's left (posterior on the right, superior up).
"""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.volume import Volume
from viewer.render.snapshot import render_slice

SPACING = (0.5, 0.75, 1.0)  # x, y, z mm; the renders sample at the finest, 0.5 mm
ORIGIN = (-20.0, 30.0, -50.0)
SHAPE = (16, 24, 32)  # z, y, x
MARKER = (24, 5, 12)  # i, j, k: patient left (high x), anterior (low y), superior (high z)


@pytest.fixture(scope="module")
def volume():
    voxels = np.full(SHAPE, -1000, np.int16)
    i, j, k = MARKER
    voxels[k, j, i] = 1000
    affine = np.diag(SPACING + (1.0,))
    affine[:3, 3] = ORIGIN
    return Volume(voxels, affine, unit="[hnsf'U]")


@pytest.fixture(scope="module")
def labels(volume):
    lab = np.zeros(SHAPE, np.uint8)
    i, j, k = MARKER
    lab[k, j, i] = 1
    return volume.with_voxels(lab)


def expected_pixel(view: str) -> tuple[float, float]:
    """(column, row) of the marker in a render at one pixel per 0.5 mm, row 0 at the top."""
    s = min(SPACING)
    x, y, z = (ORIGIN[a] + MARKER[a] * SPACING[a] for a in range(3))
    xmin, ymin, zmin = ORIGIN
    zmax = ORIGIN[2] + (SHAPE[0] - 1) * SPACING[2]
    if view == "axial":
        return (x - xmin) / s, (y - ymin) / s
    if view == "coronal":
        return (x - xmin) / s, (zmax - z) / s
    return (y - ymin) / s, (zmax - z) / s


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_label_overlay_lands_on_its_voxel(volume, labels, view):
    marker_lps = volume.index_to_lps(MARKER)
    rgb = render_slice(volume, view, at=marker_lps, window=(2000, 0), labels=labels, letters=False)
    reddish = (rgb[..., 0] > rgb[..., 1] + 40) & (rgb[..., 0] > 100)
    rows, cols = np.nonzero(reddish)
    assert len(rows) > 0, "overlay colour not found"
    col, row = expected_pixel(view)
    assert abs(cols.mean() - col) <= 1.0 and abs(rows.mean() - row) <= 1.0, (view, cols.mean(), rows.mean(), col, row)
    # Nothing else is coloured: the label does not leak to other pixels.
    assert len(rows) <= 4


def test_outline_mode_draws_only_the_boundary():
    voxels = np.zeros((3, 20, 20), np.int16)
    lab = np.zeros((3, 20, 20), np.uint8)
    lab[:, 5:15, 5:15] = 1
    vol = Volume(voxels, np.eye(4))
    filled = render_slice(vol, "axial", window=(100, 50), labels=vol.with_voxels(lab), letters=False)
    outline = render_slice(vol, "axial", window=(100, 50), labels=vol.with_voxels(lab), outline=True, letters=False)
    red = lambda rgb: rgb[..., 0] > 60  # noqa: E731
    assert red(filled)[10, 10] and red(filled).sum() == 100
    assert not red(outline)[10, 10] and red(outline)[5, 10] and red(outline)[10, 14]
    assert 30 <= red(outline).sum() <= 40


@pytest.mark.parametrize("view,expected", [
    ("axial", {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    ("coronal", {"left": "R", "right": "L", "top": "S", "bottom": "I"}),
    ("sagittal", {"left": "A", "right": "P", "top": "S", "bottom": "I"}),
])
def test_orientation_letters_match_the_asymmetric_marker(volume, view, expected):
    from viewer.render.slice_scene import SliceScene

    scene = SliceScene(volume, view)
    assert scene.orientation_letters == expected
    rgb = render_slice(volume, view, at=volume.index_to_lps(MARKER), window=(2000, 0), letters=False)
    grey = rgb[..., 0].astype(int)
    assert grey.max() > 100  # the marker is visible (interpolated where samples fall between voxels)
    rows, cols = np.nonzero(grey == grey.max())
    h, w = rgb.shape[:2]
    side = {"axial": ("L", "A"), "coronal": ("L", "S"), "sagittal": ("A", "S")}[view]
    # The marker is on the patient's left, anterior, superior: on the screen edge with that letter.
    horizontal = "right" if cols.mean() > w / 2 else "left"
    vertical = "top" if rows.mean() < h / 2 else "bottom"
    assert expected[horizontal] == side[0]
    assert expected[vertical] == side[1]


@pytest.mark.parametrize("width,level", [(350, 40), (1500, -600), (2000, 300)])
def test_window_level_grey_values(width, level):
    hu = np.array([-1000, -600, 0, 40, 200, 1000], np.int16)
    voxels = np.repeat(hu, 8)[None, None, :].repeat(4, axis=1).repeat(3, axis=0)  # stripes along x
    vol = Volume(voxels, np.eye(4))
    rgb = render_slice(vol, "axial", window=(width, level), letters=False)
    for n, h in enumerate(hu):
        grey = rgb[2, n * 8 + 4, 0]
        expected = np.clip((h - (level - width / 2)) / width, 0, 1) * 255
        assert abs(int(grey) - expected) <= 2, (h, grey, expected)


def test_oblique_plane_through_the_marker(volume):
    """Rotating the axial plane 30 degrees about its vertical axis keeps the crosshair's voxel in view
    and turns the letters: the right edge now shows L with some I or S."""
    from viewer.render.offscreen import render_to_array
    from viewer.render.slice_scene import SliceScene

    scene = SliceScene(volume, "axial")
    scene.set_window(2000, 0)
    marker = volume.index_to_lps(MARKER)
    scene.set_position(marker)
    scene.rotate(30, about="up")
    assert scene.position @ scene.normal == pytest.approx(marker @ scene.normal)
    assert abs(np.degrees(np.arccos(abs(scene.normal @ np.array([0, 0, 1.0]))))) == pytest.approx(30, abs=1e-6)
    letters = scene.orientation_letters
    assert letters["right"][0] == "L" and letters["right"][1:] in ("I", "S")
    for actor in list(scene._letters.values()) + [scene.scale_bar]:
        actor.SetVisibility(0)
    nu, nv = scene.output_size()
    scene.fit_camera(nu, nv)
    rgb = render_to_array(scene.renderer, nu, nv)
    rows, cols = np.nonzero(rgb[..., 0] == rgb[..., 0].max())
    u0, _, _, v1 = scene._extent_uv
    expected = ((marker @ scene.right - u0) / scene.sample_mm, (v1 - marker @ scene.up) / scene.sample_mm)
    assert abs(cols.mean() - expected[0]) <= 1.5 and abs(rows.mean() - expected[1]) <= 1.5


def test_monochrome1_is_displayed_inverted():
    from viewer.core.volume import DisplayHints

    vol = Volume(np.array([[[0, 100]]], np.int16).repeat(4, 1).repeat(4, 2), np.eye(4),
                 display=DisplayHints(invert_grey=True))
    rgb = render_slice(vol, "axial", window=(100, 50), letters=False)
    assert rgb[1, 1, 0] > 250 and rgb[1, 6, 0] < 5  # low values white, high values black


def test_cli_render_writes_png(tmp_path, volume):
    import subprocess
    import sys

    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.voxels)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    out = tmp_path / "a.png"
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "render", str(tmp_path / "v.nii.gz"), "--view",
                           "coronal", "--preset", "lung", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "viewer.cli", "render", str(tmp_path / "v.nii.gz"), "--preset",
                          "nope", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown window preset" in bad.stderr


def test_heatmap_colour_threshold_and_colorbar():
    from matplotlib import colormaps

    voxels = np.zeros((3, 20, 40), np.int16)
    heat = np.zeros((3, 20, 40), np.float32)
    heat[:, :, 20:] = np.linspace(0, 1, 20)[None, None, :]  # ramp on the right half
    vol = Volume(voxels, np.eye(4))
    from viewer.render.offscreen import render_to_array
    from viewer.render.slice_scene import SliceScene

    scene = SliceScene(vol, "axial")
    scene.set_window(100, 50)  # grey 0 HU -> black
    for actor in list(scene._letters.values()) + [scene.scale_bar]:
        actor.SetVisibility(0)
    scene.add_heatmap(vol.with_voxels(heat), colormap="inferno", opacity=1.0, threshold=0.5, value_range=(0, 1))
    scene.colorbars[-1].SetVisibility(0)  # hide the colour bar to read the map's pixels
    nu, nv = scene.output_size()
    scene.fit_camera(nu, nv)
    rgb = render_to_array(scene.renderer, nu, nv)
    assert rgb[10, 25].max() == 0  # value 0.26 < threshold: transparent over black
    r, g, b, _ = colormaps["inferno"](heat[0, 10, 37])
    np.testing.assert_allclose(rgb[10, 37], np.array([r, g, b]) * 255, atol=6)
    scene.colorbars[-1].SetVisibility(1)
    with_bar = render_to_array(scene.renderer, 200, 100)
    assert with_bar[:, 170:].max() > 0  # the colour bar is drawn at the right


def test_3d_render_shows_the_object_on_the_expected_side():
    """A bright block on the patient's left appears on the screen's right from the front
    (anterior view) and on the left from behind (azimuth 180)."""
    from viewer.render.snapshot import render_3d

    voxels = np.full((40, 40, 40), -1000, np.int16)
    voxels[10:30, 10:30, 28:36] = 1200  # high x: patient left
    voxels[10:30, 10:30, 4:8] = 300
    vol = Volume(voxels, np.eye(4))
    front = render_3d(vol, "ct-bone", size=(200, 200))
    back = render_3d(vol, "ct-bone", azimuth=180, size=(200, 200))
    bright = lambda rgb: np.nonzero(rgb.sum(axis=2) > 300)[1].mean()  # noqa: E731
    assert front.std() > 5 and back.std() > 5
    assert bright(front) > 100 > bright(back)
