"""The Report dock in the desktop viewer (Xvfb): a draft prefilled from the study's stored AI
nodules, AI values marked until confirmed, every keystroke on disk (read through a second
database connection after each key event, and after kill -9 of a viewer process mid-typing),
signing refused while values wait, then read-only, and the signed SR verifying.

Data: a small synthetic demo study (viewer.demo) whose two largest isolated nodules are measured
at their ground-truth centres (part-solid ones left out: their volume is
not within the measurement's stated tolerance on this coarse preset) and stored as AI findings, as `radsight analyze` stores them.
Tolerance: a finding's volume within 10% of the true volume (the measurement's own tolerance,
tests/test_nodule_measure.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

from PySide6.QtCore import QDate, Qt

from tests.viewer_window import open_window, shown_window
from viewer.report.templates import LUNG_SCREENING
from viewer.store import Store

MODEL = ("radsight-demo-lung-nodule-seg", "1.0.0")
CONFIDENCE = (0.91, 0.74)
HELPER = Path(__file__).with_name("report_typing_helper.py")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(study folder, database with the two AI nodules stored, their ground truth by id)."""
    from radsight_lung_nodules.records import nodule_record

    from viewer.analysis.nodules import measure_at
    from viewer.demo import generate_demo
    from viewer.dicom import load_series, open_path

    root = tmp_path_factory.mktemp("report-panel")
    result = generate_demo(root / "demo", preset="small", n_visits=1, seed=5)
    truth = [n for n in result.ground_truth()["visits"][0]["nodules"]
             if n["present"] and not n["juxtapleural"] and not n["juxtavascular"] and n["kind"] != "part-solid"]
    truth = sorted(truth, key=lambda n: -n["volume_mm3"])[:2]
    study = result.visits[0].study_dir
    series_list, scanned = open_path(study)
    series = max(series_list, key=lambda s: len(s.records))
    volume = load_series(series)
    database = root / "db.sqlite3"
    with Store(database) as store:
        store.import_scan(series_list, scanned)
        for n, (nodule, confidence) in enumerate(zip(truth, CONFIDENCE), 1):
            m = measure_at(volume, nodule["centre_lps_mm"])
            record = nodule_record(m, f"N{n}", tracking_uid=f"2.25.{4242 + n}", source="ai",
                                   scores={"detection": confidence},
                                   provenance={"method": "test: measured at the true centre, stored as AI",
                                               "models": [{"id": MODEL[0], "version": MODEL[1]}]})
            store.save_nodule(series.key, record, "ai", mask=m.mask, model=MODEL, confidence=confidence)
    return study, database, {f"N{n}": t for n, t in enumerate(truth, 1)}


@pytest.fixture
def db_path(demo, tmp_path):
    path = tmp_path / "db.sqlite3"
    shutil.copy(demo[1], path)  # closed above: the WAL is checkpointed into the file
    return path


@pytest.fixture
def window(qtbot, demo, db_path):
    with shown_window(qtbot, demo[0], db_path) as win:
        yield win


def click(qtbot, panel, widget):
    """A left click where the reader would click: the form scrolled to show the widget first
    (a test click lands on whatever is drawn at that point of the window)."""
    def shown():
        panel.scroll.ensureWidgetVisible(widget)
        return not widget.visibleRegion().isEmpty()

    qtbot.waitUntil(shown, timeout=5000)  # the form is laid out by the event loop
    qtbot.mouseClick(widget, Qt.LeftButton)


def stored(db_path, report_id):
    with Store(db_path) as other:  # a new connection: only what was committed is seen
        return other.report(report_id)


@pytest.mark.slow
def test_ai_values_are_marked_until_confirmed_and_each_keystroke_is_on_disk(window, qtbot, demo, db_path):
    _, _, truth = demo
    panel = window.open_report_panel()
    assert window.report_dock.isVisible() and panel.report is None  # the study has no report yet
    report = panel.new_report(LUNG_SCREENING)
    assert report is not None, panel.message.text()

    # the findings table: the stored AI nodules, measured as the ground truth says, pending
    table = panel.findings_table
    assert table.rowCount() == 2
    for row in range(2):
        nodule_id = table.item(row, 2).text()
        assert float(table.item(row, 5).text()) == pytest.approx(truth[nodule_id]["volume_mm3"], rel=0.10)
        assert table.item(row, 7).text() == f"AI {MODEL[0]} {MODEL[1]} ({CONFIDENCE[row]:.2f})"
        assert table.cellWidget(row, 1).text() == "Confirm"
        assert "reader's decision: pending" in table.item(row, 7).toolTip()

    # an AI-prefilled field: badge, colour and tooltip until confirmed
    models = panel.editors["ai_models"]
    assert models.editor.toPlainText() == f"{MODEL[0]} {MODEL[1]}"
    assert models.unconfirmed and models.badge.text() == "AI · confirm"
    assert f"model {MODEL[0]} version {MODEL[1]}" in models.badge.toolTip()
    assert "ai_models" in panel.report.unconfirmed and "to confirm" in panel.pending_label.text()
    click(qtbot, panel, models.confirm_button)
    assert not models.unconfirmed, panel.message.text()
    assert models.badge.text() == "AI · accepted" and models.confirm_button.isHidden()
    value = stored(db_path, report.id).values["ai_models"]
    assert value.confirmed and value.provenance.decision == "accepted" and value.provenance.model_id == MODEL[0]

    # confirming one finding from its row
    click(qtbot, panel, table.cellWidget(0, 1))
    first = stored(db_path, report.id).findings[0]
    assert first.confirmed and first.provenance.decision == "accepted" and table.item(0, 1).text() == "accepted"

    # leaving a finding out (untick Include): kept as rejected, the AI count follows it
    table.item(1, 0).setCheckState(Qt.Unchecked)
    second = stored(db_path, report.id).findings[1]
    assert not second.include and second.provenance.decision == "rejected"
    assert panel.editors["nodule_count"].editor.value() == 1 and table.item(1, 1).text() == "rejected"

    # typed editors: a choice, a number with its unit, a date; each saved as the reader's decision
    category = panel.editors["lung_rads_category"].editor
    category.setCurrentText("3")
    diameter = panel.editors["largest_nodule_diameter"].editor
    assert diameter.suffix() == " mm"
    diameter.setFocus()
    diameter.selectAll()
    qtbot.keyClicks(diameter, "9.5")
    panel.editors["next_examination"].editor.setDate(QDate(2026, 7, 15))
    after = stored(db_path, report.id)
    assert after.values["lung_rads_category"].value == "3"
    assert after.values["lung_rads_category"].provenance.decision == "edited"
    assert after.values["largest_nodule_diameter"].value == 9.5 and after.values["largest_nodule_diameter"].unit == "mm"
    assert after.values["next_examination"].value == "2026-07-15"
    assert after.values["next_examination"].provenance.source == "reader"

    # "not set" clears: the AI's category stays as a rejected empty value, the typed date is gone
    exam = panel.editors["next_examination"].editor
    category.setCurrentIndex(0)
    exam.setDate(exam.minimumDate())
    cleared = stored(db_path, report.id)
    assert cleared.values["lung_rads_category"].value is None
    assert cleared.values["lung_rads_category"].provenance.decision == "rejected"
    assert "next_examination" not in cleared.values
    category.setCurrentText("3")
    exam.setDate(QDate(2026, 7, 15))
    assert stored(db_path, report.id).values["lung_rads_category"].value == "3"

    # free text, one key event at a time: after each, a second connection reads it back
    text = "No pleural effusion."
    for n, char in enumerate(text, 1):
        qtbot.keyClick(panel.free_text, char)
        assert stored(db_path, report.id).free_text == text[:n]
    assert panel.free_text.toPlainText() == text and panel.saved_label.text().startswith("Saved")

    # a typed reader's field is confirmed as typed; an edited AI text keeps its provenance as "edited"
    qtbot.keyClicks(panel.editors["smoking_history"].editor, "30 pack-years")
    rule = panel.editors["lung_rads_rule"]
    assert rule.unconfirmed
    qtbot.keyClick(rule.editor, Qt.Key_End, Qt.ControlModifier)
    qtbot.keyClicks(rule.editor, " (checked)")
    after = stored(db_path, report.id)
    assert after.values["smoking_history"].value == "30 pack-years" and after.values["smoking_history"].confirmed
    assert after.values["lung_rads_rule"].value.endswith(" (checked)")
    assert after.values["lung_rads_rule"].confirmed and after.values["lung_rads_rule"].provenance.decision == "edited"
    assert not rule.unconfirmed and rule.badge.text() == "AI · edited"

    # how long one autosave takes (load, edit, JSON, one committed transaction with fsync)
    times = panel.save_seconds
    print(f"autosave over {len(times)} edits: median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")
    assert statistics.median(times) < 0.1, times

    # reopening: the study's latest draft comes back as it was left
    window.report_dock.widget().report = None
    panel.study_changed()
    assert panel.report.key == report.key and panel.free_text.toPlainText() == text


@pytest.mark.slow
def test_signing_waits_for_every_value_then_freezes_and_the_sr_verifies(window, qtbot, demo, db_path, tmp_path,
                                                                        monkeypatch):
    from PySide6.QtWidgets import QDialog

    from viewer.report.identity import DEMO_PASSWORD, create_demo_identity
    from viewer.report.pdf_signature import verify_pdf
    from viewer.report.sr import verify_sr

    data = tmp_path / "data"
    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(data))
    panel = window.open_report_panel()
    report = panel.new_report(LUNG_SCREENING)
    identity = create_demo_identity(tmp_path / "reader.p12")
    assert not panel.summary_button.isEnabled()  # a draft has no patient summary
    assert panel.summary_dialog() is None and panel.approve_summary() is None

    pending = list(report.unconfirmed)
    assert panel.sign(identity, DEMO_PASSWORD) is None  # refused, with the list
    assert "cannot be signed yet" in panel.message.text()
    assert all(name in panel.message.text() for name in pending)
    assert stored(db_path, report.id).status == "draft"

    qtbot.mouseClick(panel.confirm_all_button, Qt.LeftButton)
    assert panel.report.unconfirmed == [] and not any(e.unconfirmed for e in panel.editors.values())

    # a key image: the axial view as shown, with the crosshair point and the source image there
    window.state.set_crosshair(demo[2]["N1"]["centre_lps_mm"])
    qtbot.mouseClick(panel.key_image_button, Qt.LeftButton)
    (key,) = stored(db_path, report.id).key_images
    assert np.allclose(key.point_lps_mm, window.state.crosshair)
    from matplotlib.image import imread

    pixels = imread(key.png_path)
    view = window.views["axial"].widget
    assert pixels.shape[:2] == (view.height() * view.devicePixelRatio(), view.width() * view.devicePixelRatio())
    assert pixels[..., :3].std() > 0.05, "a blank key image"
    series = window.store.indexed_series(window.state.series_key)
    z = {r.sop_instance_uid: r.position[2] for r in series.records}
    assert abs(z[key.sop_instance_uid] - key.point_lps_mm[2]) <= window.state.volume.spacing[2] / 2 + 1e-6
    assert panel.key_images.count() == 1

    assert panel.sign(identity, "not the password") is None
    assert "wrong password" in panel.message.text() and stored(db_path, report.id).status == "draft"

    signed = panel.sign(identity, DEMO_PASSWORD)
    assert signed is not None, panel.message.text()
    assert stored(db_path, report.id).status == "signed"
    assert panel.read_only() and not panel.sign_button.isEnabled() and panel.amend_button.isEnabled()
    assert f"signed by RadSight Demo Reader at {signed.signed_at}" in panel.title.text()

    # signing writes the signed SR and PDF where `radsight report sign` does, and shows their paths
    qtbot.waitUntil(lambda: not panel.jobs, timeout=60000)
    signed_sr = data / "reports" / f"report-{signed.id}-v{signed.version}-sr.dcm"
    signed_pdf = data / "reports" / f"report-{signed.id}-v{signed.version}.pdf"
    assert panel.signed_outputs == {"sr": signed_sr, "pdf": signed_pdf}, panel.message.text()
    assert str(signed_sr) in panel.outputs_label.text() and str(signed_pdf) in panel.outputs_label.text()
    result = verify_sr(signed_sr)
    assert result["valid"] and result["signer"] == "RadSight Demo Reader", result["problems"]
    checked = verify_pdf(signed_pdf)
    assert checked["valid"] and checked["signer"] == "RadSight Demo Reader", checked["problems"]
    qtbot.keyClicks(panel.free_text, "late words")
    assert panel.free_text.toPlainText() == "" and stored(db_path, report.id).free_text == ""

    sr, pdf = tmp_path / "report-sr.dcm", tmp_path / "report.pdf"
    panel.export("sr", sr)
    qtbot.waitUntil(lambda: not panel.jobs, timeout=60000)
    panel.export("pdf", pdf)
    qtbot.waitUntil(lambda: not panel.jobs, timeout=60000)
    assert "PDF written to" in panel.message.text(), panel.message.text()
    result = verify_sr(sr)
    assert result["valid"] and result["signer"] == "RadSight Demo Reader", result["problems"]
    assert verify_pdf(pdf)["valid"], verify_pdf(pdf)["problems"]

    dialog = panel.show_audit_log()
    actions = [dialog.table.item(r, 2).text() for r in range(dialog.table.rowCount())]
    assert actions[0] == "created" and "confirmed" in actions and "signed" in actions
    assert actions.count("exported") == 4  # the SR and PDF written on signing, then the two exports
    dialog.close()

    # the patient summary: drafted from the signed findings, edited and approved in the dialog
    assert panel.summary_button.isEnabled()
    shown = []

    def reader_edits_and_approves(dialog):
        shown.append(dialog.editor.toPlainText())
        dialog.editor.appendPlainText("Your nurse will call you.")
        return QDialog.Accepted

    monkeypatch.setattr(QDialog, "exec", reader_edits_and_approves)
    qtbot.mouseClick(panel.summary_button, Qt.LeftButton)
    summary = signed_pdf.with_name(f"{signed_pdf.stem}-summary.txt")
    assert summary.is_file(), panel.message.text()
    text = summary.read_text(encoding="utf-8")
    assert len(shown) == 1 and text.startswith(shown[0]) and text.rstrip().endswith("Your nurse will call you.")
    assert "not a diagnosis" in text and "approved by RadSight Demo Reader" in panel.message.text()
    log = window.store.audit_log(report_id=report.id)
    assert log[-1]["action"] == "exported"
    assert log[-1]["detail"] == f"patient summary {summary.name}, approved by RadSight Demo Reader"
    kept = window.store.approved_summary(report.id, report.version)
    assert kept.text + "\n" == text and kept.approver == "RadSight Demo Reader"  # what consultation mode shows

    amendment = panel.amend("Smoking history added")
    assert amendment.version == 2 and amendment.predecessor_id == report.key
    assert not panel.read_only() and panel.sign_button.isEnabled() and not panel.summary_button.isEnabled()
    qtbot.keyClicks(panel.editors["smoking_history"].editor, "20 pack-years")
    assert stored(db_path, report.id).values["smoking_history"].value == "20 pack-years"
    with Store(db_path) as other:
        assert other.report(report.id, 1).free_text == "" and "smoking_history" not in other.report(report.id, 1).values


@pytest.mark.slow
def test_kill_9_while_typing_loses_nothing_typed(qtbot, demo, db_path):
    """A viewer process types into the draft's free text and is killed (SIGKILL) right after it
    says the 7th key event was handled: the draft holds those 7 characters (or more, if it got
    further), exactly as typed, and the reopened viewer shows them."""
    study = demo[0]
    text = "Stable right upper lobe nodule, no new findings since the prior examination."
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")  # the same X server (DISPLAY from xvfb-run)
    process = subprocess.Popen([sys.executable, str(HELPER), str(db_path), str(study), text], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HELPER.parents[1])
    report_id, typed = None, 0
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            if line.startswith("ready "):
                report_id = line.split()[1]
            elif line.startswith("typed "):
                typed = int(line.split()[1])
                if typed >= 7:
                    os.kill(process.pid, signal.SIGKILL)
                    break
            elif line.startswith("error") or time.monotonic() > deadline:
                break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
    assert report_id and typed == 7, f"helper stopped early: {process.stderr.read()[-2000:]}"
    assert process.returncode == -signal.SIGKILL

    saved = stored(db_path, report_id).free_text
    assert len(saved) >= 7 and saved == text[:len(saved)], saved

    win, store = open_window(qtbot, study, db_path)
    try:
        panel = win.open_report_panel()
        assert panel.report is not None and panel.report.id == report_id
        assert panel.free_text.toPlainText() == saved
    finally:
        win.close()
        store.close()


@pytest.mark.slow
def test_sign_button_offers_a_demo_identity_when_there_is_none(window, qtbot, monkeypatch, tmp_path):
    """With no identity set up, Sign offers to make the self-signed demo identity in the data
    folder and signs with it; asked nothing while values still wait for confirmation."""
    from PySide6.QtWidgets import QMessageBox

    from viewer.qt import report_panel

    demo = tmp_path / "identities" / "demo-reader.p12"
    monkeypatch.setattr(report_panel, "demo_identity_path", lambda: demo)
    panel = window.open_report_panel()
    panel.settings.remove("report/identity")
    panel.new_report(LUNG_SCREENING)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    qtbot.mouseClick(panel.sign_button, Qt.LeftButton)
    assert asked == [] and "cannot be signed yet" in panel.message.text()
    qtbot.mouseClick(panel.confirm_all_button, Qt.LeftButton)
    qtbot.mouseClick(panel.sign_button, Qt.LeftButton)
    assert len(asked) == 1 and "demo identity" in asked[0]
    assert demo.is_file() and panel.report.status == "signed", panel.message.text()
    assert panel.report.signer == "RadSight Demo Reader" and "not for clinical use" in panel.message.text()
