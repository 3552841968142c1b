"""The viewer's 3-D exports under Xvfb (viewer/qt/export_dialogs.py): File > Export 3D model,
Export turntable and High-resolution snapshot, driven through their dialogs on a small synthetic
demo opened in the main window.

Mesh files are read back with trimesh: each part watertight and enclosing its mask's volume
within 5 % (the mesh module's own stated tolerance, tests/test_cli_mesh.py). Animations are read
back with imageio. Cancel is asked for from the job's first progress report; the export must stop
before the last label (or frame) and write nothing.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

import imageio.v3 as iio  # noqa: E402
import trimesh  # noqa: E402
from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from tests.viewer_window import open_window  # noqa: E402
from viewer.render.meshes import NODULE_COLOR  # noqa: E402

VOLUME_TOLERANCE = 0.05  # mesh volume vs mask volume, relative


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(demo visit, its labels volume, label names from ground_truth.json)."""
    from viewer.demo import generate_demo
    from viewer.dicom.load import load_volume_file

    result = generate_demo(tmp_path_factory.mktemp("exports") / "demo", preset="small", n_visits=1, seed=11)
    visit = result.visits[0]
    names = {int(k): v for k, v in json.loads(result.ground_truth_path.read_text())["labels"].items()}
    return visit, load_volume_file(visit.labels_path), names


@pytest.fixture
def window(qtbot, demo, tmp_path):
    win, store = open_window(qtbot, demo[0].study_dir, tmp_path / "db.sqlite3")
    yield win
    for job in list(win.jobs):
        job.cancel()
        job.wait(30000)
    win.close()
    store.close()


def _mesh_dialog(window, qtbot):
    dialog = window.export_mesh()
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.labels_ready and dialog.job is None, timeout=60000)
    return dialog


def _item(dialog, name: str):
    items = [dialog.labels.item(n) for n in range(dialog.labels.count())]
    return next(i for i in items if i.text().startswith(name + "   "))


@pytest.mark.slow
def test_mesh_export_writes_parts_that_read_back_watertight_with_the_mask_volume(window, qtbot, demo, tmp_path):
    _visit, labels, names = demo
    dialog = _mesh_dialog(window, qtbot)
    # the list holds the demo's labels as export-mesh finds them, nodules bold in the highlight colour
    listed = {int(dialog.labels.item(n).data(Qt.UserRole)) for n in range(dialog.labels.count())}
    assert listed == set(np.unique(labels.voxels).tolist()) - {0}
    nodule_value = next(v for v in sorted(listed) if names[v].startswith("nodule"))
    nodule = _item(dialog, names[nodule_value])
    assert nodule.font().bold() and not _item(dialog, "left lung").font().bold()
    swatch = nodule.icon().pixmap(14, 14).toImage().pixelColor(7, 7)
    assert (swatch.redF(), swatch.greenF(), swatch.blueF()) == pytest.approx(NODULE_COLOR, abs=0.01)

    chosen = {next(v for v, n in names.items() if n == "left lung"), next(v for v, n in names.items() if n == "bone"),
              nodule_value}
    dialog.check_labels(chosen)
    dialog.set_formats(["stl", "glb", "obj"])
    dialog.quality.setCurrentIndex(dialog.quality.findData("draft"))
    out = tmp_path / "model"
    dialog.folder.setText(str(out))
    dialog.run_button.click()
    assert dialog.job is not None and dialog.job in window.jobs
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120000)
    assert not window.jobs

    data = dialog.result
    assert data["quality"] == "draft"
    assert {item["value"] for item in data["labels"]} == chosen
    voxel_mm3 = abs(float(np.linalg.det(labels.affine[:3, :3])))
    for item in data["labels"]:
        assert set(item["files"]) == {"stl", "glb", "obj"}
        solid = trimesh.load(item["files"]["stl"], force="mesh")
        mask_mm3 = float((labels.voxels == item["value"]).sum()) * voxel_mm3
        assert solid.is_watertight, item["name"]
        assert solid.volume == pytest.approx(mask_mm3, rel=VOLUME_TOLERANCE), item["name"]
        assert item["name"] == names[item["value"]]
    scene = trimesh.load(out / "model.glb")
    assert {names[v] for v in chosen} <= set(scene.geometry)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"model-{v:03d}-{names[v].replace(' ', '_')}.stl" for v in chosen] + ["model.glb", "model.mtl", "model.obj"])

    # the summary names each part with its triangles, volume against the mask and state; the files
    assert dialog.summary is not None and dialog.summary.isVisible()
    plain = _summary_text(dialog)
    for item in data["labels"]:
        line = next(row for row in plain.splitlines() if row.lstrip("• ").startswith(item["name"] + ":"))
        assert f"{item['triangles']:,}" in line and f"{item['volume_difference_pct']:+.2f} %" in line
        assert "watertight" in line
    for path in data["files"]:
        assert path in plain


def _summary_text(dialog) -> str:
    from PySide6.QtWidgets import QTextBrowser

    return dialog.summary.findChild(QTextBrowser).toPlainText()


@pytest.mark.slow
def test_cancel_stops_between_labels_and_writes_nothing(window, qtbot, tmp_path):
    dialog = _mesh_dialog(window, qtbot)
    total = dialog.labels.count()
    assert total >= 4
    dialog.set_formats(["stl"])
    dialog.quality.setCurrentIndex(dialog.quality.findData("draft"))
    out = tmp_path / "cancelled"
    dialog.folder.setText(str(out))
    reports = []
    dialog.run_button.click()
    job = dialog.job

    def first(done, total_, message):
        reports.append((done, total_, message))
        if len(reports) == 1:
            dialog.close_button.click()  # "Cancel export" while a job runs

    job.progress.connect(first)
    assert dialog.close_button.text() == "Cancel export"
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120000)
    stop = dialog.result["cancelled"]
    assert reports[0][0] == 1 and reports[0][2].startswith("meshing ")
    assert 1 <= stop.done < stop.total == total
    assert len(reports) == stop.done  # no label meshed after the cancel took effect
    assert sorted(p.name for p in out.iterdir()) == []  # fewer files than labels: none
    assert "cancelled" in _summary_text(dialog).lower()
    assert dialog.close_button.text() == "Close" and dialog.run_button.isEnabled()


@pytest.mark.slow
def test_unwritable_folder_and_nothing_ticked_are_one_clear_message(window, qtbot, tmp_path):
    dialog = _mesh_dialog(window, qtbot)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dialog.folder.setText(str(blocker / "model"))
    dialog.run_button.click()
    assert dialog.job is None and not window.jobs
    assert dialog.message is not None and dialog.message.icon() == QMessageBox.Warning
    assert dialog.message.text().startswith(f"Cannot write into {blocker / 'model'}")
    assert "\n" not in dialog.message.text()
    dialog.message.accept()

    dialog.folder.setText(str(tmp_path / "ok"))
    dialog.check_labels(set())
    dialog.run_button.click()
    assert dialog.job is None and "nothing to mesh" in dialog.message.text()
    dialog.message.accept()
    # the viewer keeps working: the crosshair moves, the dialog exports once fixed
    point = window.state.volume.index_to_lps([5, 6, 3])
    window.state.set_crosshair(point)
    assert np.allclose(window.state.crosshair, point)
    dialog.check_labels({dialog.label_values(checked_only=False)[0]})
    dialog.set_formats(["ply"])
    dialog.run_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120000)
    assert (tmp_path / "ok" / "model.ply").is_file()


def test_export_without_a_study_says_so(qtbot, tmp_path):
    from viewer.qt.main_window import MainWindow
    from viewer.store import Store

    with Store(tmp_path / "db.sqlite3") as store:
        win = MainWindow(store=store)
        qtbot.addWidget(win)
        messages = []
        win.state.message.connect(messages.append)
        assert win.export_mesh() is None and win.export_render("turntable") is None
        assert messages and all("Open a study first" in m for m in messages)
        win.close()


@pytest.mark.slow
def test_turntable_gif_has_the_chosen_frames_and_the_ui_stays_responsive(window, qtbot, demo, tmp_path):
    _visit, labels, names = demo
    window.state.set_labels(labels, "synthetic phantom labels", names)
    dialog = window.export_render("turntable")
    assert dialog.surfaces.isEnabled() and dialog.captions.isEnabled()
    dialog.preset.setCurrentText("ct-bone")
    dialog.frames.setValue(8)
    dialog.fps.setValue(10.0)
    dialog.elevation.setValue(15.0)
    dialog.width_px.setValue(120)
    dialog.height_px.setValue(96)
    dialog.format.setCurrentIndex(dialog.format.findData("gif"))
    dialog.surfaces.setChecked(True)
    dialog.captions.setChecked(True)
    out = tmp_path / "turn" / "spin.gif"
    dialog.out.setText(str(out))
    frames_seen, ticks = [], []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    dialog.run_button.click()
    dialog.job.progress.connect(lambda done, total, message: frames_seen.append((done, total, time.monotonic())))
    started = time.monotonic()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=180000)
    timer.stop()
    assert dialog.result["out"] == str(out) and out.is_file()
    stack = iio.imread(out, index=None, extension=".gif")
    assert stack.shape[:3] == (8, 96, 120)
    assert [d for d, t, _ in frames_seen] == list(range(1, 9)) and all(t == 8 for _, t, _ in frames_seen)
    # the event loop ran while the frames were rendered: the timer ticked between the first and
    # the last frame report, and never stalled for more than a few seconds
    during = [t for t in ticks if frames_seen[0][2] <= t <= frames_seen[-1][2]]
    assert len(during) >= 3, f"{len(during)} timer ticks while {len(frames_seen)} frames were rendered"
    gaps = np.diff([started] + ticks)
    assert gaps.max() < 5.0
    assert str(out) in dialog.message.text() and "8 frames" in dialog.message.text()
    assert str(out) in window.statusBar().currentMessage()
    # the camera turned: a quarter turn apart, the frames differ
    assert np.abs(stack[0].astype(int) - stack[4].astype(int)).mean() > 1.0


@pytest.mark.slow
def test_turntable_cancel_leaves_no_file_and_snapshot_has_its_size(window, qtbot, tmp_path):
    dialog = window.export_render("turntable")
    dialog.frames.setValue(30)
    dialog.width_px.setValue(64)
    dialog.height_px.setValue(64)
    out = tmp_path / "cancel" / "spin.gif"
    dialog.out.setText(str(out))
    dialog.format.setCurrentIndex(dialog.format.findData("mp4"))
    assert dialog.out.text().endswith("spin.mp4")  # the extension follows the format
    dialog.run_button.click()
    dialog.job.progress.connect(lambda done, total, message: done == 1 and dialog.close_button.click())
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120000)
    stop = dialog.result["cancelled"]
    assert stop.done < stop.total == 30
    assert list((tmp_path / "cancel").iterdir()) == []
    assert "cancelled" in dialog.message.text()

    window.views["3d"].scene.set_view(90.0, 20.0)  # the 3-D view turned to look from the patient's left
    snap = window.export_render("snapshot")
    assert (snap.azimuth.value(), snap.elevation.value()) == pytest.approx((90.0, 20.0), abs=0.1)
    assert not snap.frames.isVisible()  # no animation options for a still
    snap.width_px.setValue(300)
    snap.height_px.setValue(200)
    png = tmp_path / "snap" / "hires.png"
    snap.out.setText(str(png))
    snap.run_button.click()
    qtbot.waitUntil(lambda: snap.result is not None, timeout=120000)
    picture = iio.imread(png)
    assert picture.shape[:2] == (200, 300)
    background = np.array([0.05, 0.05, 0.08]) * 255
    assert (np.abs(picture[..., :3].astype(float) - background).sum(axis=2) > 30).mean() > 0.02  # the body is drawn
    assert str(png) in snap.message.text()
    # the still is the 3-D view's picture from where the view looked (same renderer as
    # `radsight render --view 3d --azimuth 90 --elevation 20`), not the default anterior one
    from viewer.render.snapshot import render_3d

    volume = window.state.volume
    same = render_3d(volume, "ct-bone", azimuth=90.0, elevation=20.0, size=(300, 200))
    front = render_3d(volume, "ct-bone", azimuth=0.0, elevation=0.0, size=(300, 200))
    error = np.abs(picture[..., :3].astype(float) - same).mean()
    assert error < 2.0 < np.abs(picture[..., :3].astype(float) - front).mean()


def test_export_shortcuts_are_listed_and_bound(window):
    from PySide6.QtGui import QKeySequence

    from viewer.qt.main_window import SHORTCUTS

    keys = dict(SHORTCUTS)
    bound = {a.shortcut().toString(): a.text().replace("&", "") for menu in window.menuBar().actions()
             for a in menu.menu().actions() if not a.shortcut().isEmpty()}
    for key, text in (("Ctrl+Shift+M", "Export 3D model..."), ("Ctrl+Shift+T", "Export turntable..."),
                      ("Ctrl+Shift+S", "High-resolution snapshot...")):
        assert key in keys
        assert bound[QKeySequence(key).toString()] == text
