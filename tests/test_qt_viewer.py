"""The desktop viewer under a (virtual) X display: views follow the shared state, keys and
workers behave, and a capture of the whole window shows the image with its overlay."""

from __future__ import annotations

import os

import numpy as np
import pytest

from viewer.core.volume import Volume

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from viewer.core.presets import find_preset  # noqa: E402
from viewer.qt.main_window import MainWindow  # noqa: E402


@pytest.fixture
def volume():
    z, y, x = np.mgrid[:30, :40, :50]
    voxels = np.where((x - 25) ** 2 / 400 + (y - 20) ** 2 / 225 < 1, 40, -1000).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = (-20, -16, -30)
    return Volume(voxels, affine, unit="[hnsf'U]")


@pytest.fixture
def window(qtbot, volume, tmp_path):
    from viewer.store import Store

    store = Store(tmp_path / "db.sqlite3")
    win = MainWindow(store=store)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.state.set_volume(volume)
    yield win
    win.close()
    store.close()


def test_views_follow_the_crosshair_and_window(window, volume):
    point = volume.index_to_lps([10, 12, 7])
    window.state.set_crosshair(point)
    for name in ("axial", "coronal", "sagittal"):
        scene = window.views[name].scene
        assert scene.position @ scene.normal == pytest.approx(point @ scene.normal, abs=1e-6)
    window.state.set_window(1500, -600)
    assert all(window.views[n].scene.window == (1500, -600) for n in ("axial", "coronal", "sagittal"))


def test_keys_scroll_and_apply_presets(window, qtbot, volume):
    axial = window.views["axial"]
    before = window.state.crosshair.copy()
    qtbot.keyClick(axial.widget, Qt.Key_Up)
    moved = window.state.crosshair - before
    assert moved[2] == pytest.approx(axial.scene.slice_step, abs=1e-6)  # Up goes superior (+z in LPS)
    qtbot.keyClick(axial.widget, Qt.Key_PageDown)
    assert (window.state.crosshair - before)[2] == pytest.approx(-9 * axial.scene.slice_step, abs=1e-6)
    qtbot.keyClicks(axial.widget, "1")
    lung = find_preset("lung")
    assert window.state.window == (lung.width, lung.level)


def test_layouts(window):
    window.set_layout("1x1")
    assert window.views["axial"].isVisible() and not window.views["coronal"].isVisible()
    window.set_layout("2x2")
    assert all(window.views[n].isVisible() for n in ("axial", "coronal", "sagittal", "3d"))
    assert not window.views["prior-axial"].isVisible()
    window.set_layout("compare")  # no prior loaded: stays on 2x2
    assert window.layout_name == "2x2"


def test_background_open_with_progress_and_cancel(window, qtbot, tmp_path):
    from tests.dicom_factory import write_series

    write_series(tmp_path / "series", shape_zyx=(6, 16, 16))
    job = window.open_path(tmp_path / "series")
    qtbot.waitUntil(lambda: window.state.volume is not None and window.state.volume.shape == (6, 16, 16), timeout=20000)
    assert job not in window.jobs
    assert window.browser.topLevelItemCount() == 1  # indexed and listed

    def slow(progress, cancelled):
        import time

        for n in range(200):
            if cancelled():
                from viewer.core.errors import RadSightError

                raise RadSightError("cancelled by the user")
            progress(n, 200, "waiting")
            time.sleep(0.01)
        return None

    messages = []
    job = window.run_job(slow, "Slow job", lambda r: messages.append("done"))
    job.failed.connect(messages.append)
    window.cancel_jobs()
    qtbot.waitUntil(lambda: bool(messages), timeout=10000)
    assert "cancelled" in messages[0]


def test_window_capture_shows_image_and_overlay(window, qtbot, volume):
    labels = volume.with_voxels((np.abs(np.mgrid[:30, :40, :50][2] - 25) < 6).astype(np.uint8) * (volume.voxels > 0))
    window.state.set_labels(labels, "test overlay")
    window.state.set_window(400, 40)
    qtbot.wait(200)
    for view in window.views.values():
        view.render_window.Render()
    screen = window.screen()
    image = screen.grabWindow(window.winId()).toImage().convertToFormat(screen.grabWindow(0).toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    arr = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes()).reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3)
    assert arr.std() > 10, "window capture is blank"
    reddish = (arr[..., 0] > 150) & (arr[..., 1] < 120) & (arr[..., 2] < 120)
    assert reddish.sum() > 200, "overlay colour not visible in the window"
    os.makedirs("/tmp/radsight-test-captures", exist_ok=True)
    image.save("/tmp/radsight-test-captures/main_window.png")


def test_about_lists_versions(window):
    import vtk

    text = window.about_text()
    assert "RadSight" in text and vtk.vtkVersion.GetVTKVersion() in text


def _drag(qtbot, widget, start, end):
    from PySide6.QtCore import QPoint

    qtbot.mousePress(widget, Qt.LeftButton, pos=QPoint(*start))
    qtbot.mouseMove(widget, QPoint(*end))
    qtbot.mouseRelease(widget, Qt.LeftButton, pos=QPoint(*end))


def test_measure_edit_reload_and_delete(window, qtbot, volume):
    window.state.series_key = "test-series"
    axial = window.views["axial"]
    window.set_layout("1x1")
    qtbot.wait(100)
    window.state.set_tool("line")
    a, b = (200, 200), (300, 260)
    _drag(qtbot, axial.widget, a, b)
    assert len(window.state.measurements) == 1
    m = window.state.measurements[0]
    expected = np.linalg.norm(axial.display_to_lps(*b) - axial.display_to_lps(*a))
    assert m.values()[0].value == pytest.approx(expected, rel=1e-6) and expected > 5
    assert window.measurement_panel.list.count() == 1
    assert "mm" in window.measurement_panel.list.item(0).text()
    # Edit: without a tool, drag the second end point elsewhere.
    window.state.set_tool("")
    _drag(qtbot, axial.widget, b, (350, 200))
    edited = window.state.measurements[0]
    assert edited.id == m.id
    assert np.linalg.norm(edited.array[1] - axial.display_to_lps(350, 200)) < 1e-6
    # Stored per series: a fresh state on the same store sees the edited measurement.
    assert window.store.measurements("test-series")[0].points == edited.points
    # An ellipse ROI by drag gives area and HU statistics.
    window.state.set_tool("ellipse")
    _drag(qtbot, axial.widget, (250, 250), (290, 280))
    roi = window.state.measurements[-1]
    names = {v.name for v in roi.values(volume)}
    assert {"area_mm2", "mean", "sd"} <= names
    window.state.set_tool("")
    axial.selected_id = roi.id
    qtbot.keyClick(axial.widget, Qt.Key_Delete)
    assert [x.id for x in window.state.measurements] == [m.id]
    assert [x.id for x in window.store.measurements("test-series")] == [m.id]


def test_overlay_legend_toggles_and_heatmap(window, qtbot, volume):
    from viewer.qt.state import Overlay

    labels = volume.with_voxels((volume.voxels > 0).astype(np.uint8))
    window.state.set_labels(labels, "unit-test labels")
    heat = volume.with_voxels(np.linspace(0, 1, volume.voxels.size, dtype=np.float32).reshape(volume.shape))
    window.state.add_overlay(Overlay("Grad-CAM", "heatmap", heat, "test-model 1.0 (Grad-CAM)", threshold=0.2))
    panel = window.overlay_panel
    assert panel.list.count() == 2
    assert "test-model 1.0" in panel.list.item(1).text()
    axial = window.views["axial"].scene
    assert len(axial.overlay_layers) == 2 and len(axial.colorbars) == 1  # labels + heatmap, one colour bar
    panel.list.item(0).setCheckState(Qt.Unchecked)
    assert window.state.overlays[0].visible is False
    assert len(axial.overlay_layers) == 1
    panel.list.setCurrentRow(1)
    panel.opacity.setValue(30)
    assert window.state.overlays[1].opacity == pytest.approx(0.3)


def test_prior_comparison_follows_scrolling_and_window(window, qtbot, volume):
    shifted = np.array(volume.affine)
    shifted[:3, 3] += (3.0, -2.0, 10.0)  # the prior was scanned at another table position
    prior = Volume(volume.voxels.copy(), shifted, unit="[hnsf'U]")
    window.set_prior(prior)
    assert window.layout_name == "compare" and window.views["prior-axial"].isVisible()
    # Default: same patient coordinates.
    point = volume.index_to_lps([20, 15, 10])
    window.state.set_crosshair(point)
    np.testing.assert_allclose(window.prior_state.crosshair, point, atol=1e-6)
    # The reader unlinks, lines both up on the same anatomy, and links them again.
    window.toggle_link()
    window.prior_state.set_crosshair(prior.index_to_lps([20, 15, 10]))
    np.testing.assert_allclose(window.state.crosshair, point, atol=1e-6)  # unlinked: current stays
    window.toggle_link()
    qtbot.keyClick(window.views["axial"].widget, Qt.Key_Up)  # scroll the current study
    k_current = window.state.volume.lps_to_index(window.state.crosshair)[2]
    k_prior = prior.lps_to_index(window.prior_state.crosshair)[2]
    assert k_current == pytest.approx(11) and k_prior == pytest.approx(11)
    window.state.set_window(1500, -600)
    assert window.prior_state.window == (1500, -600)


def test_oblique_cine_patient_info_and_thumbnails(window, qtbot, tmp_path):
    axial = window.views["axial"]
    normal = axial.scene.normal.copy()
    qtbot.keyClicks(axial.widget, "]")
    assert np.degrees(np.arccos(np.clip(axial.scene.normal @ normal, -1, 1))) == pytest.approx(5.0, abs=1e-6)
    assert "oblique" in axial._corner.GetText(1)
    qtbot.keyClick(axial.widget, Qt.Key_O)
    np.testing.assert_allclose(axial.scene.normal, normal, atol=1e-9)
    before = window.state.crosshair.copy()
    qtbot.keyClick(axial.widget, Qt.Key_C)
    qtbot.waitUntil(lambda: not np.allclose(window.state.crosshair, before), timeout=3000)
    qtbot.keyClick(axial.widget, Qt.Key_C)
    assert not axial.cine.isActive()
    window.state.set_study_info({"patient_name": "SYNTHETIC^TEST", "patient_id": "RS-1", "study_date": "20250115"})
    assert "SYNTHETIC^TEST" in axial._corner.GetText(2)
    window._toggle_patient_info(False)
    assert axial._corner.GetText(2) == ""
    # Thumbnails come from the index.
    from tests.dicom_factory import write_series
    from viewer.dicom import open_path

    write_series(tmp_path / "s", shape_zyx=(4, 16, 16), marker_ijk=(2, 2, 2))
    window.store.import_scan(*open_path(tmp_path / "s"))
    window.refresh_browser()
    child = window.browser.topLevelItem(0).child(0)
    assert not child.icon(0).isNull()


def test_per_label_visibility_and_colour(window, volume):
    lab = np.zeros(volume.shape, np.uint8)
    lab[:, :20, :] = 1
    lab[:, 20:, :] = 2
    window.state.set_labels(volume.with_voxels(lab), "two labels", {1: "anterior", 2: "posterior"})
    panel = window.overlay_panel
    panel.list.setCurrentRow(0)
    assert panel.labels.count() == 2 and "anterior" in panel.labels.item(0).text()
    panel.labels.item(1).setCheckState(Qt.Unchecked)
    assert window.state.overlays[0].label_styles[2].visible is False
    window.state.update_label(0, 1, color=(0.0, 0.0, 1.0))
    styles = window.state.overlays[0].styles()
    assert styles[1].color == (0.0, 0.0, 1.0) and styles[2].visible is False
    # The 3D view shows only the visible label as a surface, in its colour.
    surfaces = window.views["3d"].scene.surfaces
    assert [a.label_value for a in surfaces] == [1]
    assert surfaces[0].GetProperty().GetColor() == pytest.approx((0.0, 0.0, 1.0))


def test_user_window_preset_persists_and_gets_a_key(window, qtbot):
    from viewer.core.presets import window_presets

    window.state.set_window(600, 100)
    window.save_preset("Liver")
    liver = [p for p in window_presets() if p.name == "Liver"]
    assert liver and liver[0].key == "6"
    window.state.set_window(400, 40)
    qtbot.keyClicks(window.views["axial"].widget, "6")
    assert window.state.window == (600, 100)


def test_ai_panel_runs_a_model_and_reopens_stored_results(window, qtbot, tmp_path, monkeypatch):
    import torch

    from tests.dicom_factory import write_series
    from tests.onnx_factory import Threshold3D, export
    from viewer.inference import registry as reg

    model_dir = tmp_path / "models"
    export(Threshold3D(), torch.zeros(1, 1, 8, 8, 8), model_dir / "bright-test",
           {"task": "segmentation", "preprocessing": [{"name": "window", "low": -1000, "high": 2000}],  # > 500 HU
            "inference": {"patch_size": [8, 16, 16]}, "output": {"name": "scores", "labels": [{"value": 1, "name": "bright"}]}})
    monkeypatch.setattr(reg, "BUNDLED", model_dir)
    (tmp_path / "user-models").mkdir()
    monkeypatch.setattr(reg, "user_models_dir", lambda: tmp_path / "user-models")
    write_series(tmp_path / "s", shape_zyx=(8, 16, 16), marker_ijk=(3, 3, 3))
    window.open_path(tmp_path / "s")
    qtbot.waitUntil(lambda: window.state.volume is not None and window.state.volume.shape == (8, 16, 16), timeout=20000)
    panel = window.ai_panel
    assert panel.models.count() == 1
    panel.provider.setCurrentText("cpu")
    panel.run_selected()
    qtbot.waitUntil(lambda: panel.results.count() == 1, timeout=30000)
    overlay = window.state.overlays[-1]
    assert "bright-test 0.1 on CPUExecutionProvider" in overlay.source and "confidence" in overlay.source
    assert int((overlay.volume.voxels == 1).sum()) == 1  # the marker voxel, the only one above 0 HU
    # Re-opening shows the stored result without running the model.
    window.state.set_volume(window.state.volume, window.state.series_key)
    panel.refresh()
    assert panel.results.count() == 1 and window.state.overlays[-1].name == "AI bright-test", panel.status.text()
    assert int((window.state.overlays[-1].volume.voxels == 1).sum()) == 1


def test_classifier_finding_shows_its_map_and_side_by_side(window, qtbot, tmp_path, monkeypatch):
    """A classifier run at the crosshair lists its finding with model, version, confidence and the
    method of its map; clicking the finding shows that map alone and goes to its point; the
    side-by-side layout shows the plain image beside the overlaid one; re-opening needs no re-run."""
    import torch

    from tests.dicom_factory import write_blob_ct
    from tests.onnx_factory import BlobNet, export
    from viewer.inference import registry as reg

    model_dir = tmp_path / "models"
    export(BlobNet(3), torch.zeros(1, 1, 24, 24, 24), model_dir / "blob-test",
           {"task": "classification", "crop_mm": [24, 24, 24],
            "preprocessing": [{"name": "reorient"}, {"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]},
                              {"name": "window", "low": -1000, "high": 400}],
            "input": {"name": "image", "spatial_size": [24, 24, 24]},
            "output": {"name": "scores", "labels": [{"value": 0, "name": "blob"}, {"value": 1, "name": "none"}]}},
           dynamic=False)
    monkeypatch.setattr(reg, "BUNDLED", model_dir)
    (tmp_path / "user-models").mkdir()
    monkeypatch.setattr(reg, "user_models_dir", lambda: tmp_path / "user-models")
    centre = np.array([5.0, -10.0, 20.0])
    (tmp_path / "blob").mkdir()
    write_blob_ct(tmp_path / "blob", centre, shape=(30, 36, 36), degrees=0.0)
    window.open_path(tmp_path / "blob")
    qtbot.waitUntil(lambda: window.state.volume is not None and window.state.volume.shape == (30, 36, 36), timeout=20000)
    panel = window.ai_panel
    assert [panel.models.item(n).data(Qt.UserRole) for n in range(panel.models.count())] == ["blob-test"]
    panel.provider.setCurrentText("cpu")
    points = [centre + (4.0, 0.0, 0.0), centre - (0.0, 5.0, 0.0)]
    for n, point in enumerate(points, 1):
        window.state.set_crosshair(point)
        panel.run_selected()
        qtbot.waitUntil(lambda: panel.results.count() == n, timeout=30000)
    first, second = panel.results.item(0), panel.results.item(1)
    assert "blob-test 0.1 [CPUExecutionProvider]: blob (confidence" in first.text() and "Grad-CAM map" in first.text()
    assert second.text() != first.text()  # each finding names its own point
    maps = [o for o in window.state.overlays if o.kind == "heatmap"]
    assert len(maps) == 2 and [o.visible for o in maps] == [False, True]
    assert "map by Grad-CAM" in maps[0].source and "blob-test 0.1" in maps[0].source
    # Click the first finding: its map alone, the crosshair on its point.
    panel.show_finding(first)
    assert [o.visible for o in maps] == [True, False]
    assert np.allclose(window.state.crosshair, window.state.volume.index_to_lps(
        np.rint(window.state.volume.lps_to_index(points[0]))), atol=1.0)
    axial = window.views["axial"].scene
    assert len(axial.colorbars) == 1 and len(axial.overlay_layers) == 1
    # Side by side: the same slice with and without the map.
    window.set_layout("side-by-side")
    plain = window.views["plain-axial"]
    assert plain.isVisible() and window.views["axial"].isVisible() and not window.views["coronal"].isVisible()
    assert plain.scene is not None and plain.scene.overlay_layers == [] and len(axial.overlay_layers) == 1
    # Re-open: both maps come back from the stored Parametric Maps, without running the model.
    window.state.set_volume(window.state.volume, window.state.series_key)
    panel.refresh()
    assert panel.results.count() == 2, panel.status.text()
    reread = [o for o in window.state.overlays if o.kind == "heatmap"]
    assert len(reread) == 2 and reread[1].volume.voxels.max() == pytest.approx(1.0, abs=1e-6)
