"""The lung-nodule plugin's growth chart from a NODULE record: every visit of its "history" is a
point at its study date, the VDT is said for the last interval and overall, and the PNG is a real
picture. Volumes follow exponential growth with a known doubling time (200 days), so the VDTs the
chart states are checked against that, not against numbers copied from a run."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from matplotlib.image import imread

from radsight_lung_nodules.chart import draw_chart, save_chart, track_from_record, vdt_text

BASELINE = date(2025, 1, 15)
VDT_DAYS = 200.0


def _diameter(volume_mm3: float) -> float:
    return (6.0 * volume_mm3 / math.pi) ** (1 / 3)


def _record(days: list[int]) -> dict:
    history = []
    for day in days:
        volume = 300.0 * 2 ** (day / VDT_DAYS)
        history.append({"study_uid": f"1.2.3.{day}", "date": (BASELINE + timedelta(days=day)).isoformat(), "day": day,
                        "volume_mm3": volume, "mean_diameter_mm": _diameter(volume), "status": "persisting"})
    last, before = history[-1], history[-2]
    prior = {"tracking_uid": "2.25.1", "days": last["day"] - before["day"], "volume_mm3": before["volume_mm3"],
             "mean_diameter_mm": before["mean_diameter_mm"], "volume_change_pct": 0.0, "vdt_days": VDT_DAYS,
             "vdt_interval_days": [150, 300]}
    return {"id": "N1", "tracking_uid": "2.25.1", "volume_mm3": last["volume_mm3"],
            "mean_diameter_mm": last["mean_diameter_mm"], "type": "solid", "prior": prior, "history": history}


def test_a_three_visit_history_is_three_dated_points_with_both_vdts(tmp_path):
    record = _record([0, 91, 365])
    points = track_from_record(record)
    dates = [BASELINE, BASELINE + timedelta(days=91), BASELINE + timedelta(days=365)]
    assert [p.date for p in points] == dates and [p.days for p in points] == [0.0, 91.0, 365.0]

    figure = draw_chart(points, "Nodule N1")
    volume_line = figure.axes[0].lines[0]
    assert list(volume_line.get_xdata()) == dates
    assert list(volume_line.get_ydata()) == pytest.approx([h["volume_mm3"] for h in record["history"]])
    diameter_line = figure.axes[1].lines[0]
    assert list(diameter_line.get_ydata()) == pytest.approx([h["mean_diameter_mm"] for h in record["history"]])

    last, overall = vdt_text(points).splitlines()
    assert last.startswith("Last interval: VDT 200 days") and "in 274 days" in last
    assert overall.startswith("Overall, first to last of 3 time points: VDT 200 days") and "in 365 days" in overall
    shown = " ".join(t.get_text() for t in figure.texts).replace("\n", " ")
    assert "Overall, first to last of 3 time points" in shown

    png = save_chart(points, tmp_path / "growth.png", "Nodule N1")
    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert pixels[..., :3].std() > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.005, "blank chart"


def test_without_a_history_the_prior_and_the_study_date_make_the_points():
    record = _record([0, 120])
    del record["history"]
    points = track_from_record(record, "20250515")
    assert [p.date for p in points] == [date(2025, 1, 15), date(2025, 5, 15)]
    assert points[0].volume_mm3 == pytest.approx(300.0)
    assert vdt_text(points).startswith("VDT 200 days") and "\n" not in vdt_text(points)
    assert len(track_from_record({"volume_mm3": 50.0, "mean_diameter_mm": 4.6, "prior": None})) == 1


class _BrokenFigure:
    plugin, what = "broken", "report figure 'broken'"

    def load(self):
        def figures(records, folder, audience):
            raise RuntimeError("broke on purpose")
        return figures


def test_report_pdfs_get_a_chart_per_persisting_nodule_through_the_plugin_api(tmp_path, monkeypatch):
    import viewer.plugins
    from viewer.plugins.report_figures import report_figures

    grown = _record([0, 91, 365])
    new = {"id": "N2", "volume_mm3": 50.0, "mean_diameter_mm": 4.6, "type": "solid", "prior": None,
           "history": [{"date": "2026-01-15", "day": 0, "volume_mm3": 50.0, "mean_diameter_mm": 4.6}]}
    paths, problems = report_figures([new, grown], tmp_path / "figures")
    assert problems == [] and [p.name for p in paths] == ["growth-N1.png"]  # N2 has one visit: no chart
    pixels = imread(paths[0])
    assert pixels[..., :3].std() > 0.05, "blank chart"

    installed = viewer.plugins.contributions("report_figures")
    assert [c.id for c in installed] == ["growth-charts"]
    monkeypatch.setattr(viewer.plugins, "contributions", lambda kind: [_BrokenFigure(), *installed])
    paths, problems = report_figures([grown], tmp_path / "again")
    assert [p.name for p in paths] == ["growth-N1.png"]
    assert problems == ["plugin broken: report figure 'broken' failed: RuntimeError: broke on purpose"]


def test_a_chart_for_the_patient_has_plain_words_and_no_risk_wording(tmp_path):
    """The report's chart says what the VDT means ("suspicious for malignancy" for fast growth);
    the one consultation mode shows the patient leaves that to the radiologist."""
    from viewer.plugins.report_figures import report_figures

    fast = _record([0, 91, 365])  # VDT 200 days: in the suspicious range
    figure = draw_chart(track_from_record(fast))
    assert any("suspicious for malignancy" in t.get_text() for t in figure.texts)
    assert not draw_chart(track_from_record(fast), note=False).texts
    (report,), _ = report_figures([fast], tmp_path / "report")
    (patient,), _ = report_figures([fast], tmp_path / "patient", audience="patient")
    assert imread(report).shape == imread(patient).shape
    assert abs(imread(report)[..., :3] - imread(patient)[..., :3]).max() > 0.2  # not the same picture
    with pytest.raises(ValueError, match="report, patient"):
        report_figures([fast], tmp_path, audience="press")
