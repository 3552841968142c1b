"""Consultation mode (Xvfb): the full-screen page shows the selected nodule outlined on its slice,
its growth chart, the 3-D model with it highlighted and the approved patient summary; no patient
details unless chosen; Esc returns to the normal window.

Data: a small synthetic demo with two visits; its two largest isolated solid nodules are measured
at their true centres at both visits (real measurements of the written DICOM), stored for the
latest visit as AI findings with their two-visit history (as `radsight analyze --prior` stores
them), put in a Lung-RADS report that is confirmed and signed with a demo identity; the patient
summary is approved through the Report panel, as the reader approves it.
Pixel checks look for the highlight colour (yellow, viewer.render.consult_pictures.HIGHLIGHT)
within a stated distance of the finding's position in the grabbed widgets.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QLabel

from tests.viewer_window import open_window
from viewer.store import Store

MODEL = ("radsight-demo-lung-nodule-seg", "1.0.0")
APPROVED = ("This is a short summary of your lung CT scan, written in everyday words.\n\n"
            "We found two small spots. Your nurse will call you about the next scan.")


def _highlight(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the highlight yellow (255, 217, 0), shaded or smoothed: red high, green a little
    below it, little blue."""
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    return (r > 140) & (g > 0.6 * r) & (g < 0.98 * r) & (b < 0.3 * r)


def _grab(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    return np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())[:, :w * 3].reshape(h, w, 3).copy()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(latest study folder, database with the two tracked nodules and a signed report, labels
    volume and names of that visit, the nodules' ground truth)."""
    import json

    from radsight_lung_nodules.records import nodule_record

    from viewer.analysis.nodules import measure_at
    from viewer.demo import generate_demo
    from viewer.dicom import load_series, open_path
    from viewer.dicom.load import load_volume_file
    from viewer.report.drafts import Drafts
    from viewer.report.identity import DEMO_PASSWORD, create_demo_identity, load_identity
    from viewer.report.signing import sign_report
    from viewer.report.templates import LUNG_SCREENING, find_template

    root = tmp_path_factory.mktemp("consultation")
    result = generate_demo(root / "demo", preset="small", n_visits=2, seed=5)
    truth = result.ground_truth()
    first, last = truth["visits"]
    isolated = {n["id"] for n in last["nodules"] if n["present"] and n["kind"] == "solid"
                and not n["juxtapleural"] and not n["juxtavascular"]}
    chosen = sorted((n for n in last["nodules"] if n["id"] in isolated), key=lambda n: -n["volume_mm3"])[:2]
    database = root / "db.sqlite3"
    with Store(database) as store:
        volumes, keys = [], []
        for visit in result.visits:
            series_list, scanned = open_path(visit.study_dir)
            series = max(series_list, key=lambda s: len(s.records))
            store.import_scan(series_list, scanned)
            volumes.append(load_series(series))
            keys.append(series.key)
        for n, nodule in enumerate(chosen, 1):
            before = next(x for x in first["nodules"] if x["id"] == nodule["id"])
            m0 = measure_at(volumes[0], before["centre_lps_mm"])
            m1 = measure_at(volumes[1], nodule["centre_lps_mm"])
            record = nodule_record(m1, nodule["id"], tracking_uid=f"2.25.{777 + n}", source="ai",
                                   scores={"detection": 0.9},
                                   provenance={"method": "test: measured at the true centre, stored as AI",
                                               "models": [{"id": MODEL[0], "version": MODEL[1]}]})
            record["history"] = [{"study_uid": v["study_instance_uid"], "date": str(v["study_date"]),
                                  "day": v["day"], "volume_mm3": round(m.volume_mm3, 1),
                                  "mean_diameter_mm": round(m.mean_diameter_mm, 1)}
                                 for v, m in ((first, m0), (last, m1))]
            store.save_nodule(keys[1], record, "ai", mask=m1.mask, model=MODEL, confidence=0.9)
        drafts = Drafts(store, user="test-reader")
        study = {"study_uid": volumes[1].source.study_uid, "series_uid": volumes[1].source.series_uid,
                 "source_paths": [str(result.visits[1].study_dir)]}
        report = drafts.create(find_template(LUNG_SCREENING), None, nodule_rows=store.nodules(keys[1]), study=study)
        report = drafts.confirm(report.id)
        identity = load_identity(create_demo_identity(root / "reader.p12"), DEMO_PASSWORD)
        store.store_signed(sign_report(report, identity))
    labels = load_volume_file(root / "demo" / last["labels_path"])
    names = {int(k): v for k, v in json.loads(result.ground_truth_path.read_text())["labels"].items()}
    return result.visits[1].study_dir, database, labels, names, chosen


@pytest.fixture
def db_path(demo, tmp_path):
    path = tmp_path / "db.sqlite3"
    shutil.copy(demo[1], path)
    return path


@pytest.fixture
def window(qtbot, demo, db_path):
    win, store = open_window(qtbot, demo[0], db_path)
    win.state.set_labels(demo[2], "synthetic phantom labels", demo[3])
    yield win
    page = getattr(win, "consultation", None)
    if page is not None:
        page.close()
    win.close()
    store.close()


def _texts(page) -> list[str]:
    """Every text the page holds: labels (shown or not), buttons, check boxes, and the title."""
    return ([w.text() for w in page.findChildren(QLabel)] + [w.text() for w in page.findChildren(QAbstractButton)]
            + [page.windowTitle()])


def _open(window, qtbot):
    page = window.open_consultation()
    assert page is not None
    qtbot.waitExposed(page)
    qtbot.waitUntil(lambda: 0 in page.pictures and page.slice_picture.pixmap() is not None
                    and not page.slice_picture.pixmap().isNull(), timeout=120000)
    qtbot.wait(50)
    return page


@pytest.mark.slow
def test_consultation_shows_the_finding_outlined_its_chart_model_and_approved_summary(window, qtbot, demo):
    from viewer.qt.consultation import BODY_PT, PLUGIN_MISSING
    from viewer.render.consult_pictures import HIGHLIGHT

    panel = window.open_report_panel()
    assert panel.report is not None and panel.report.status == "signed"
    assert panel.approve_summary(APPROVED) is not None, panel.message.text()

    page = _open(window, qtbot)
    assert page.isFullScreen() and page.isVisible() and not window.isVisible()
    assert page.font().pointSize() >= 18 and page.caption.font().pointSize() >= 24
    assert page.summary_text.font().pointSize() >= BODY_PT >= 18

    # the finding: caption in plain words, the largest first (the signed report's order)
    chosen = demo[4]
    assert page.counter.text() == "Finding 1 of 2"
    record = page.finding.record
    side = "left" if record["centre_lps_mm"][0] > 0 else "right"   # LPS: +x is the patient's left
    assert page.caption.text() == f"Spot in the {side} lung, about {round(record['mean_diameter_mm'])} mm across"
    assert record["id"] == max(chosen, key=lambda n: n["volume_mm3"])["id"]

    # the slice: yellow outline pixels close to the centre of the picture (where the finding is),
    # within the nodule's radius plus 30% and one voxel (the mask's steps) in picture pixels, and
    # not at the centre itself (an outline, not a filled blob); none far away from it
    rgb = _grab(page.slice_picture)
    h, w, _ = rgb.shape
    pixmap = page.slice_picture.pixmap()
    mm_per_px = 140.0 / pixmap.height()   # finding_slice shows 140 mm top to bottom
    radius = (record["mean_diameter_mm"] / 2 * 1.3 + max(window.state.volume.spacing)) / mm_per_px
    yy, xx = np.mgrid[:h, :w]
    near = np.hypot(yy - h / 2, xx - w / 2) <= radius
    yellow = _highlight(rgb)
    assert yellow[near].sum() >= 20, f"{yellow[near].sum()} outline pixels within {radius:.0f} px of the finding"
    assert yellow[~near].sum() < 0.05 * yellow[near].sum(), "the outline is drawn away from the finding"
    centre = np.hypot(yy - h / 2, xx - w / 2) <= 0.25 * record["mean_diameter_mm"] / mm_per_px
    assert yellow[centre].mean() < 0.2, "the finding is filled, not outlined"
    assert tuple(round(c * 255) for c in HIGHLIGHT) == (255, 217, 0)

    # the growth chart of the tracked nodule: two visits, the plugin's chart drawn
    assert page.pictures[0]["chart"] is not None and page.pictures[0]["chart_note"] == "2 scans"
    assert page.chart_picture.text() != PLUGIN_MISSING
    chart = _grab(page.chart_picture)
    blue = (np.abs(chart[..., 0].astype(int) - 31) < 30) & (np.abs(chart[..., 1].astype(int) - 119) < 30) \
        & (np.abs(chart[..., 2].astype(int) - 180) < 30)   # matplotlib tab:blue, the volume line
    assert blue.sum() > 50

    # the 3-D model: mostly not background, the finding in yellow
    model = page.pictures[0]["model"]
    background = np.array([0.05, 0.05, 0.08]) * 255
    assert (np.abs(model.astype(float) - background).sum(axis=2) > 30).mean() > 0.05
    assert _highlight(model).sum() >= 20

    # the approved summary, exactly as approved
    assert page.summary_text.text() == APPROVED
    assert page.summary.approver == "RadSight Demo Reader"
    os.makedirs("/tmp/radsight-test-captures", exist_ok=True)  # for people to look at
    page.grab().save("/tmp/radsight-test-captures/consultation.png")

    # no patient details until chosen; then name and ID on screen
    info = window.store.study_for_series(window.state.series_key)
    family = info["patient_name"].split("^")[0]
    assert family and info["patient_id"]
    assert not any(family in t or info["patient_id"] in t for t in _texts(page)), _texts(page)
    page.details_box.setChecked(True)
    shown = page.details.text()
    assert page.details.isVisible() and family in shown.upper() and info["patient_id"] in shown
    assert family not in page.windowTitle() and info["patient_id"] not in page.windowTitle()
    page.details_box.setChecked(False)
    assert not any(family in t or info["patient_id"] in t for t in _texts(page))

    # next / previous finding
    first_caption = page.caption.text()
    qtbot.mouseClick(page.next_button, Qt.LeftButton)
    assert page.counter.text() == "Finding 2 of 2" and page.index == 1
    assert page.caption.text() != first_caption
    assert page.finding.label in {n["id"] for n in chosen}
    qtbot.waitUntil(lambda: 1 in page.pictures, timeout=120000)
    assert not page.next_button.isEnabled()
    qtbot.keyClick(page, Qt.Key_Left)
    assert page.index == 0 and page.caption.text() == first_caption

    # Esc leaves: the normal window is back
    qtbot.keyClick(page, Qt.Key_Escape)
    qtbot.waitUntil(lambda: window.isVisible(), timeout=5000)
    assert not page.isVisible() and window.consultation is None


@pytest.mark.slow
def test_no_approved_summary_says_so_and_a_draft_amendment_hides_the_old_one(window, qtbot, db_path):
    from viewer.report.consultation import NO_SUMMARY

    page = _open(window, qtbot)   # signed, never approved
    assert page.summary_text.text() == NO_SUMMARY and page.summary is None
    page.close()
    qtbot.waitUntil(lambda: window.isVisible(), timeout=5000)

    panel = window.open_report_panel()
    assert panel.approve_summary(APPROVED) is not None, panel.message.text()
    page = _open(window, qtbot)
    assert page.summary_text.text() == APPROVED
    page.close()
    qtbot.waitUntil(lambda: window.isVisible(), timeout=5000)

    assert panel.amend("Smoking history added") is not None   # a new draft version
    page = _open(window, qtbot)
    assert page.summary_text.text() == NO_SUMMARY, "the summary of the amended version was shown"
    assert len(page.findings) == 2   # the findings of the signed version stay on screen
    page.close()


def test_growth_chart_from_the_plugin_and_without_it(monkeypatch):
    from viewer.qt.consultation import ONE_SCAN, PLUGIN_MISSING, growth_chart

    record = {"id": "N1", "volume_mm3": 268.0, "mean_diameter_mm": 8.0,
              "history": [{"date": "2025-01-15", "volume_mm3": 268.0, "mean_diameter_mm": 8.0},
                          {"date": "2025-07-16", "volume_mm3": 504.0, "mean_diameter_mm": 9.9}]}
    image, note = growth_chart(record)
    assert image is not None and image.ndim == 3 and note == "2 scans"
    assert growth_chart({**record, "history": record["history"][:1]}) == (None, ONE_SCAN)
    image, note = growth_chart({k: v for k, v in record.items() if k != "id"})   # the plugin fails on it
    assert image is None and note.startswith("plugin lung-nodules: "), note
    import viewer.plugins

    every = viewer.plugins.contributions   # no plugin contributes report figures
    monkeypatch.setattr(viewer.plugins, "contributions", lambda kind: [] if kind == "report_figures" else every(kind))
    assert growth_chart(record) == (None, PLUGIN_MISSING)


def test_pending_ai_nodules_are_left_out_without_a_signed_report(tmp_path):
    from viewer.report.consultation import caption, consultation_findings

    with Store(tmp_path / "db.sqlite3") as store:
        base = {"centre_lps_mm": [-60.0, 10.0, 5.0], "volume_mm3": 300.0, "mean_diameter_mm": 8.4}
        pending = store.save_nodule("s1", {**base, "id": "A1"}, "ai", model=MODEL)
        kept = store.save_nodule("s1", {**base, "id": "A2"}, "ai", model=MODEL)
        store.decide_nodule(kept, "accepted")
        rejected = store.save_nodule("s1", {**base, "id": "A3"}, "ai", model=MODEL)
        store.decide_nodule(rejected, "rejected")
        store.save_nodule("s1", {**base, "id": "M1", "centre_lps_mm": [70.0, 0.0, 0.0]}, "measured")
        findings, left_out = consultation_findings(store, "s1", None)
    assert [f.label for f in findings] == ["A2", "M1"] and left_out == 1 and pending
    assert [f.caption for f in findings] == ["Spot in the right lung, about 8 mm across",
                                             "Spot in the left lung, about 8 mm across"]
    assert caption({"centre_lps_mm": [0.5, 0, 0]}) == "Spot in the left lung"
