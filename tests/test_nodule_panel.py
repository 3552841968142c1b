"""The lung-nodule plugin's panel in the desktop viewer (Xvfb): click-to-measure against the demo
generator's ground truth, the table driving all views, the reader's decisions kept in the store,
contour correction by erasing, and the growth chart written as PNG and SVG.

Tolerance: a measured volume within 10% of the true volume (the measurement's own tolerance,
tests/test_nodule_measure.py), here on the coarse 2.6 mm "small" preset.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from viewer.analysis.nodules import MeasurementError, measure_at  # noqa: E402
from viewer.demo import generate_demo  # noqa: E402
from tests.viewer_window import shown_window  # noqa: E402
from viewer.qt.main_window import MainWindow  # noqa: E402
from viewer.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    result = generate_demo(tmp_path_factory.mktemp("nodule-panel"), preset="small", n_visits=1, seed=5)
    nodules = [n for n in result.ground_truth()["visits"][0]["nodules"]
               if n["present"] and not n["juxtapleural"] and not n["juxtavascular"] and n["kind"] != "part-solid"]
    return result.visits[0].study_dir, max(nodules, key=lambda n: n["volume_mm3"])


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "db.sqlite3"


@pytest.fixture
def window(qtbot, demo, db_path):
    with shown_window(qtbot, demo[0], db_path) as win:
        yield win


@pytest.fixture
def panel(window):
    widget = window.open_panel("nodules")
    assert widget is not None, window.plugin_problem_lines()
    return widget


def click(qtbot, view, point):
    """A left click at the widget pixel that shows the LPS point (on the view's current plane)."""
    x, y = view.lps_to_display(point)
    qtbot.mouseClick(view.widget, Qt.LeftButton, pos=QPoint(round(x), round(y)))
    return view.display_to_lps(round(x), round(y))


def measure(qtbot, window, panel, point):
    window.state.set_crosshair(point)
    before = panel.table.rowCount()
    panel.measure_at(point)
    qtbot.waitUntil(lambda: panel.table.rowCount() == before + 1 and not window.jobs, timeout=20000)
    return panel.nodules.items[-1]


@pytest.mark.slow
def test_click_measures_a_nodule_and_its_row_moves_every_view(window, panel, qtbot, demo):
    _, truth = demo
    centre = np.asarray(truth["centre_lps_mm"])
    window.state.set_crosshair(centre)  # the axial view shows the nodule's slice
    qtbot.keyClick(panel.measure_button, Qt.Key_Space)
    assert window.state.tool == "nodule-measure" and panel.measure_button.isChecked()
    click(qtbot, window.views["axial"], centre)
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and not window.jobs, timeout=20000)
    item = panel.nodules.items[0]
    shown = float(panel.cell_text(item.id, "Volume (mm³)"))
    assert shown == pytest.approx(truth["volume_mm3"], rel=0.10), (shown, truth["volume_mm3"])
    assert panel.cell_text(item.id, "Type") == truth["kind"]
    assert panel.cell_text(item.id, "Source") == "measured"
    assert np.linalg.norm(item.centre - centre) < 2.0

    window.state.set_tool("")
    window.state.set_crosshair(centre + (30.0, 20.0, -25.0))
    panel.table.clearSelection()
    rect = panel.table.visualItemRect(panel.table.item(panel.row_of(item.id), 0))
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert np.allclose(window.state.crosshair, item.centre, atol=1e-6)
    for name in ("axial", "coronal", "sagittal"):
        scene = window.views[name].scene
        assert scene.position @ scene.normal == pytest.approx(item.centre @ scene.normal, abs=1e-6)
    overlay = [o for o in window.state.overlays if o.name.startswith("Nodule ")]
    assert len(overlay) == 1 and overlay[0].volume.voxels.sum() == item.mask.voxels.sum() > 0
    assert panel.figure.axes, "no growth chart drawn for the selected nodule"


@pytest.mark.slow
def test_a_click_outside_the_lung_says_why_and_adds_no_row(window, panel, qtbot):
    volume = window.state.volume
    nz, ny, nx = volume.shape
    mediastinum = volume.index_to_lps([(nx - 1) / 2, (ny - 1) / 2 + 0.5 * (ny / 8), (nz - 1) / 2])
    window.state.set_crosshair(mediastinum)
    window.state.set_tool("nodule-measure")
    point = click(qtbot, window.views["axial"], mediastinum)
    with pytest.raises(MeasurementError) as expected:
        measure_at(volume, point)
    qtbot.waitUntil(lambda: str(expected.value) in panel.status.text() and not window.jobs, timeout=20000)
    assert panel.table.rowCount() == 0 and window.store.nodules(window.state.series_key) == []


@pytest.mark.slow
def test_decisions_are_stored_with_who_and_when(window, panel, qtbot, demo, db_path):
    import getpass

    measured = measure(qtbot, window, panel, demo[1]["centre_lps_mm"])
    ai = panel.nodules.add(dict(measured.record, id="A1", source="ai", provenance={"method": "test", "models": []}),
                           "ai", mask=measured.mask, model={"id": "radsight-demo-lung-nodule-seg", "version": "1.2"},
                           confidence=0.87)
    assert panel.cell_text(ai.id, "Decision") == "pending"
    assert panel.cell_text(ai.id, "Source") == "AI: radsight-demo-lung-nodule-seg 1.2 (0.87)"
    panel.select(ai.id)
    qtbot.mouseClick(panel.accept_button, Qt.LeftButton)
    panel.select(measured.id)
    qtbot.mouseClick(panel.reject_button, Qt.LeftButton)
    assert panel.cell_text(ai.id, "Decision") == "accepted" and panel.cell_text(measured.id, "Decision") == "rejected"
    with Store(db_path) as other:  # a new connection to the same file: the decisions are there
        rows = {r["id"]: r for r in other.nodules(window.state.series_key)}
        assert rows[ai.id]["decision"]["decision"] == "accepted" and rows[ai.id]["confidence"] == pytest.approx(0.87)
        assert rows[ai.id]["decision"]["user"] == getpass.getuser() and rows[ai.id]["decision"]["at"]
        assert rows[measured.id]["decision"]["decision"] == "rejected"
    panel.nodules.load(window.store, window.state.series_key)  # as when the study is opened again
    assert panel.cell_text(ai.id, "Decision") == "accepted"


@pytest.mark.slow
def test_erasing_half_the_nodule_lowers_the_shown_volume(window, panel, qtbot, demo):
    item = measure(qtbot, window, panel, demo[1]["centre_lps_mm"])
    before = float(panel.cell_text(item.id, "Volume (mm³)"))
    panel.select(item.id)
    qtbot.mouseClick(panel.edit_button, Qt.LeftButton)
    assert window.state.tool == "nodule-brush"
    view = window.views["axial"]
    centre = item.centre
    reach = demo[1]["long_axis_mm"] / 2 + 3.0
    panel.radius.setValue(reach / 2)
    step = view.scene.slice_step
    for dz in np.arange(-reach, reach + step, step):  # every slice through the nodule
        window.state.set_crosshair(centre + (0, 0, dz))
        # The right half (patient's right is -x in LPS): one stroke down a line `radius` right of
        # the centre erases a band from 1 mm right of the centre to beyond the nodule's edge.
        x = -1.0 - reach / 2
        start = view.lps_to_display(window.state.crosshair + (x, -reach, 0))
        end = view.lps_to_display(window.state.crosshair + (x, reach, 0))
        qtbot.mousePress(view.widget, Qt.LeftButton, pos=QPoint(round(start[0]), round(start[1])))
        qtbot.mouseMove(view.widget, QPoint(round(end[0]), round(end[1])))
        qtbot.mouseRelease(view.widget, Qt.LeftButton, pos=QPoint(round(end[0]), round(end[1])))
        qtbot.waitUntil(lambda: not window.jobs, timeout=20000)
    edited = panel.nodules.get(item.id)
    after = float(panel.cell_text(item.id, "Volume (mm³)"))
    assert edited.status == "edited"
    assert 0.2 * before < after < 0.75 * before, (before, after)
    left = edited.mask.index_to_lps(np.argwhere(edited.mask.voxels > 0)[:, ::-1])[:, 0]
    pixel = window.state.volume.spacing[0]
    assert left.min() > centre[0] - 1.0 - pixel  # nothing is left right of the erased band (within a pixel)
    assert window.store.nodules(window.state.series_key)[-1]["decision"]["decision"] == "edited"


@pytest.mark.slow
def test_growth_chart_exports_png_and_svg(window, panel, qtbot, demo, tmp_path):
    from matplotlib.image import imread

    item = measure(qtbot, window, panel, demo[1]["centre_lps_mm"])
    record = dict(item.record, prior={"tracking_uid": "t1", "days": 365, "volume_mm3": item.record["volume_mm3"] / 2,
                                      "volume_change_pct": 100.0, "vdt_days": 365.0, "vdt_interval_days": [300, 450]})
    grown = panel.nodules.add(record, "measured", mask=item.mask)
    panel.select(grown.id)
    assert panel.cell_text(grown.id, "VDT (days)") == "365"
    png = panel.export_chart(tmp_path / "chart.png")
    pixels = imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.005, "blank chart"
    svg = panel.export_chart(tmp_path / "chart.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 5
    assert "VDT 365 days" in svg.read_text()
    with pytest.raises(ValueError, match="must end in .png or .svg"):
        panel.export_chart(tmp_path / "chart.jpg")


def test_a_failing_panel_is_listed_and_the_window_goes_on(window):
    class Broken:
        id, title, plugin = "broken", "Broken", "test-plugin"
        spec = type("Spec", (), {"area": "right"})()

        def load(self):
            def factory(win):
                raise RuntimeError("no widget today")
            return factory

    window.panel_contributions["broken"] = Broken()
    assert window.open_panel("broken") is None
    assert any("panel 'broken'" in line and "no widget today" in line for line in window.plugin_problem_lines())
    assert window.open_panel("nodules") is not None  # the others still open


def test_panel_manifest_field_show_is_checked():
    from viewer.plugins import ManifestError, discover
    from viewer.plugins.manifest import Manifest

    text = ("name: x\nversion: '1'\nradsight_api: 1\ncontributions:\n  panels:\n    - id: p\n      title: P\n"
            "      python_name: a.b:c\n      show: {}\n")
    assert Manifest.from_text(text.format("true")).of_kind("panels")[0].show is True
    assert Manifest.from_text(text.replace("      show: {}\n", "")).of_kind("panels")[0].show is False
    with pytest.raises(ManifestError, match=r"contributions.panels\[0\].show' must be true or false"):
        Manifest.from_text(text.format("'yes'"))
    (nodules,) = [c for c in discover().contributions("panels") if c.id == "nodules"]
    assert nodules.spec.show is True and nodules.spec.to_json()["show"] is True


@pytest.mark.slow
def test_stored_nodules_open_with_the_panel_docked_and_their_rows(qtbot, demo, tmp_path):
    """Nodules kept in the store (as `radsight analyze` keeps them) are listed as soon as their
    series opens, in the Nodules panel docked without any menu: AI rows pending, with model,
    version and confidence; the panel's M key is in Help > Keyboard shortcuts."""
    from radsight_lung_nodules.records import nodule_record
    from viewer.dicom import load_series, open_path

    study, truth = demo
    series_list, scanned = open_path(study)
    series = max(series_list, key=lambda s: len(s.records))
    measurement = measure_at(load_series(series), truth["centre_lps_mm"])
    record = nodule_record(measurement, "N1", tracking_uid="2.25.12345", source="ai", scores={"detection": 0.91},
                           provenance={"method": "test: a measurement stored as an AI finding", "models": []})
    with Store(tmp_path / "db.sqlite3") as store:
        store.import_scan(series_list, scanned)
        nodule_id = store.save_nodule(series.key, record, "ai", mask=measurement.mask,
                                      model=("radsight-demo-lung-nodule-seg", "1.0.0"), confidence=0.91)
    store = Store(tmp_path / "db.sqlite3")
    win = MainWindow(store=store)
    qtbot.addWidget(win)
    win.set_layout("1x1")
    win.show()
    qtbot.waitExposed(win)
    try:
        assert "nodules" in win.plugin_docks, win.plugin_problem_lines()
        dock = win.plugin_docks["nodules"]
        assert dock.isVisible() and not dock.visibleRegion().isEmpty(), "the Nodules tab is not the raised one"
        assert any(key == "M" and "Measure nodule" in what for key, what in win.shortcut_rows())
        win.open_path(study)
        panel = dock.widget()
        qtbot.waitUntil(lambda: win.state.volume is not None and not win.jobs and panel.table.rowCount() == 1,
                        timeout=30000)
        assert win.state.series_key == series.key
        assert panel.cell_text(nodule_id, "ID") == "N1"
        assert panel.table.item(panel.row_of(nodule_id), 0).toolTip() == "tracking UID 2.25.12345"
        assert panel.cell_text(nodule_id, "Decision") == "pending"
        assert panel.cell_text(nodule_id, "Source") == "AI: radsight-demo-lung-nodule-seg 1.0.0 (0.91)"
        shown = float(panel.cell_text(nodule_id, "Volume (mm³)"))
        assert shown == pytest.approx(truth["volume_mm3"], rel=0.10), (shown, truth["volume_mm3"])
        assert panel.nodules.get(nodule_id).mask.voxels.sum() == measurement.mask.voxels.sum() > 0
    finally:
        win.close()
        store.close()


def test_multifocal_opacities_show_as_one_pattern_not_as_rows(window, panel):
    """What the panel shows of a detection run on a pneumonia-like study: the pattern above the
    table with its proposed Lung-RADS 0, pending review, and only the solid nodule >= 8 mm as a
    row (the split is viewer.analysis.patterns', the same as `radsight analyze`)."""
    from viewer.analysis.detection import Detection
    from viewer.analysis.patterns import split_pattern
    from viewer.core.results import ModelRef

    volume = window.state.volume
    centre = volume.index_to_lps(np.array(volume.shape[::-1]) / 2)

    def found(dx: float, diameter: float, kind: str) -> Detection:
        m = measure_like(centre + [dx, 0.0, 0.0], diameter, kind, volume)
        return Detection(m, 0.5, "test", (ModelRef("test-detector", "1.0"),), side="right" if dx < 0 else "left")

    pattern, kept = split_pattern([found(dx, 9.0, "ground-glass") for dx in (-60, -50, -40, 40, 50, 60)]
                                  + [found(-20, 12.0, "solid")])
    panel._detected(kept, None, "sensitivity 100%", volume, pattern)
    assert panel.table.rowCount() == 1
    note = panel.ai_note.text()
    assert "multifocal ground-glass and part-solid opacities in both lungs" in note
    assert "Lung-RADS 0 proposed, pending reader review" in note and "AI found no nodules" not in note


def measure_like(point, diameter: float, kind: str, volume):
    from viewer.analysis.nodules import NoduleMeasurement

    mask = volume.with_voxels(np.zeros(volume.shape, np.uint8), unit="")
    return NoduleMeasurement(tuple(float(v) for v in point), diameter ** 3 * 0.5, diameter, diameter, diameter,
                             -500.0, -300.0, kind, None, False, mask)
