"""The AI panel shows the domain flag: the bundled (synthetic-only) segmentation model run on a real
chest CT (the shared LIDC-IDRI slab) is listed as outside its validated domain, in red, with the
reasons in its tooltip and under the list, and so is the stored result when the study is opened
again."""

from __future__ import annotations

import os

import pytest

if not os.environ.get("DISPLAY"):
    if os.environ.get("CI"):
        pytest.fail("CI runs the tests under xvfb-run; DISPLAY is missing", pytrace=False)
    pytest.skip("needs an X display (the README's test command runs under xvfb-run)", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from tests.viewer_window import shown_window  # noqa: E402
from viewer.inference.domain import OUTSIDE  # noqa: E402

SEG_ID = "radsight-demo-lung-nodule-seg"


@pytest.mark.slow
def test_ai_panel_marks_a_real_ct_result_outside_the_validated_domain(qtbot, shared_testdata, tmp_path):
    with shown_window(qtbot, shared_testdata / "real_ct/lidc_idri_0003_slab", tmp_path / "db.sqlite3") as window:
        panel = window.ai_panel
        rows = [panel.models.item(n).data(Qt.UserRole) for n in range(panel.models.count())]
        panel.models.setCurrentRow(rows.index(SEG_ID))
        panel.provider.setCurrentText("cpu")
        panel.run_selected()
        qtbot.waitUntil(lambda: panel.results.count() == 1, timeout=120000)
        item = panel.results.item(0)
        assert item.text().startswith(f"{SEG_ID} 1.1.0 [CPUExecutionProvider]")
        assert item.text().endswith(f" - {OUTSIDE.upper()}")
        assert item.foreground().color().name() == "#b00020"
        assert "synthetic data only" in item.toolTip() and "Pixel spacing 0.82 mm" in item.toolTip()
        assert panel.status.text().startswith(f"AI results {OUTSIDE}:") and "0.82 mm" in panel.status.text()
        assert window.state.overlays[-1].source.endswith(OUTSIDE.upper())
        # The check is stored with the result: opening the study again shows the flag without a re-run.
        window.state.set_volume(window.state.volume, window.state.series_key)
        panel.refresh()
        assert panel.results.count() == 1 and panel.results.item(0).text().endswith(OUTSIDE.upper())


def test_a_report_drafted_in_the_viewer_carries_the_stored_check(tmp_path):
    """The report panel drafts from what the store keeps of the analysis: the SEG result's input
    check becomes the draft's ai_cautions, which the SR and PDF print."""
    from viewer.qt.report_panel import stored_analysis
    from viewer.report.prefill import prefill
    from viewer.report.templates import find_template
    from viewer.store import Store

    check = {"model": SEG_ID, "version": "1.1.0", "within": False, "status": OUTSIDE,
             "reasons": ["Pixel spacing 0.50 mm is outside the training range 0.9-2.6 mm."]}
    with Store(tmp_path / "db.sqlite3") as store:
        store.add_result("2.25.7", "seg", SEG_ID, "1.1.0", tmp_path / "seg.dcm", "cpu", {"labels": {}, "domain": check})
        analysis = stored_analysis(store, "2.25.7")
    report = prefill(find_template("lung-screening-ldct-lungrads-2022"), analysis, study={"study_uid": "2.25.8"})
    assert report.ai_cautions == (f"AI results {OUTSIDE}. {SEG_ID} 1.1.0: {check['reasons'][0]}",)
