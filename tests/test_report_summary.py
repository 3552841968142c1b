"""The plain-language patient summary, from nodules measured on a small synthetic study written
as DICOM and read back: the measured size in whole millimetres (within one 2.6 mm pixel of the
small preset of the generator's truth), the side
the label map puts the nodule in, the change since the prior, the follow-up in plain words; never
from an unsigned report, never naming a model, and the radiologist's approval before release."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from radsight_lung_nodules.records import nodule_record

from viewer.analysis.guidelines import LUNG_RADS_MANAGEMENT, lung_rads_v2022
from viewer.analysis.nodules import measure_at
from viewer.demo import generate_demo
from viewer.dicom import load
from viewer.report.model import FieldValue, Finding, Provenance, Report, ReportError
from viewer.report.summary import (
    NOT_A_DIAGNOSIS,
    SummaryApproval,
    approve_summary,
    draft_summary,
    nodule_side,
    patient_summary,
    plain_follow_up,
)

MODEL = ("radsight-demo-lung-nodule-seg", "1.0.0")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Two free-lying nodules of a small demo study, measured at their true centres, with the
    lung (left/right) the generator's label map puts around each."""
    demo = generate_demo(tmp_path_factory.mktemp("summary"), preset="small", n_visits=1, seed=5)
    truth = demo.ground_truth()["visits"][0]
    volume, labels = load(demo.visits[0].study_dir), load(demo.visits[0].labels_path)
    names = demo.ground_truth()["labels"]
    # Part-solid halos are not resolved on the small preset's 2.6 mm pixels (measured as solid
    # cores): the two largest free solid or ground-glass nodules are measured as they are.
    free = sorted((n for n in truth["nodules"] if n["present"] and not n["juxtapleural"] and not n["juxtavascular"]
                   and n["kind"] != "part-solid"), key=lambda n: -n["mean_diameter_mm"])
    out = []
    for n in free[:2]:
        m = measure_at(volume, n["centre_lps_mm"])
        record = nodule_record(m, n["id"], source="ai", scores={"detection": 0.9},
                               provenance={"method": "test", "models": [{"id": MODEL[0], "version": MODEL[1]}]})
        out.append((n, record, _lung_around(labels, names, n["centre_lps_mm"])))
    return truth["study_date"], out


def _lung_around(labels, names, centre) -> str:
    """The lung label most common within 15 mm of a point (the nodule's own label excluded)."""
    k, j, i = np.round(labels.lps_to_index(centre)[::-1]).astype(int)
    r = 12
    patch = labels.voxels[max(k - r, 0):k + r, max(j - r, 0):j + r, max(i - r, 0):i + r]
    lungs = {int(v): int((patch == int(v)).sum()) for v, name in names.items() if name in ("left lung", "right lung")}
    return names[str(max(lungs, key=lungs.get))]


def signed(report: Report) -> Report:
    return replace(report, status="signed", signer="Dr Summary Reader", signed_at="2026-02-03T10:00:00+00:00")


def build(study_date: str, records: list[dict], **values: FieldValue) -> Report:
    findings = tuple(Finding(r, Provenance("ai", *MODEL, 0.9, "accepted"), confirmed=True) for r in records)
    return Report("r-sum", "lung-screening-ldct-lungrads-2022", "1.2.3", findings=findings,
                  values={"study_date": FieldValue(study_date), **values})


def with_lung_rads(record: dict, **kw) -> dict:
    a = lung_rads_v2022(record["type"], record["mean_diameter_mm"], record.get("solid_mean_diameter_mm"), **kw)
    return {**record, "lung_rads": {"category": a.category, "management": a.management, "rule": a.rule}}


def test_summary_of_measured_nodules_says_size_side_and_follow_up(measured):
    study_date, items = measured
    records = [with_lung_rads(r) for _, r, _ in items]
    text = patient_summary(signed(build(study_date, records)))
    order = ["0", "1", "2", "3", "4A", "4B", "4X"]
    worst = max(records, key=lambda r: (order.index(r["lung_rads"]["category"]), r["mean_diameter_mm"]))
    for (truth, record, lung), graded in zip(items, records):
        assert nodule_side(record) == lung, truth["id"]
        mm = int(round(record["mean_diameter_mm"]))
        assert abs(record["mean_diameter_mm"] - truth["mean_diameter_mm"]) <= 2.6, truth["id"]
        sentence = f"about {mm} mm across in the {lung}"
        if graded is worst:
            assert f"The most important finding is a {'small ' if mm < 10 else ''}spot (nodule) {sentence}." in text
        elif order.index(graded["lung_rads"]["category"]) >= order.index("3"):
            assert sentence in text, (truth["id"], text)
        else:                                    # a Lung-RADS 1-2 spot is counted, not described
            assert sentence not in text and "We also saw 1 other small spot that looks less important." in text
    assert plain_follow_up(worst["lung_rads"]["management"]) in text
    day = study_date[:10].split("-")
    assert f"{int(day[2])} " in text and day[0] in text          # the scan's date, in words
    assert NOT_A_DIAGNOSIS in text
    assert "radsight" not in text.lower() and "model" not in text.lower() and "AI" not in text.split()


def test_growth_and_the_readers_follow_up_in_plain_words(measured):
    study_date, items = measured
    _, record, lung = items[0]
    prior = {"days": 182, "mean_diameter_mm": record["mean_diameter_mm"] - 2.0, "volume_mm3": record["volume_mm3"] / 1.8,
             "volume_change_pct": 80.0, "vdt_days": 215.0, "growing": True}
    history = [{"study_uid": "1.2.0", "date": "2025-08-05", "day": 0}, {"study_uid": "1.2.3", "date": study_date, "day": 182}]
    grown = with_lung_rads({**record, "prior": prior, "history": history, "status": "persisting"}, baseline=False,
                           growing=True)
    report = signed(build(study_date, [grown], management=FieldValue("3-month LDCT"),
                          lung_rads_category=FieldValue("4A")))
    text = patient_summary(report)
    assert "It has grown since your scan on 5 August 2025" in text
    assert f"(it was about {int(round(prior['mean_diameter_mm']))} mm then)" in text
    assert "another CT scan in 3 months" in text                 # the signed management, not the AI's
    assert "LDCT" not in text and "4A" not in text and "Lung-RADS" not in text


def test_unsigned_report_is_refused(measured):
    study_date, items = measured
    with pytest.raises(ReportError, match="the radiologist must sign before a summary is made"):
        patient_summary(build(study_date, [items[0][1]]))


def test_rejected_findings_are_left_out(measured):
    study_date, items = measured
    (_, first, lung1), (_, second, _) = items
    report = build(study_date, [first, second])
    report = replace(report, findings=(report.findings[0], replace(report.findings[1], include=False)))
    text = patient_summary(signed(report))
    assert f"about {int(round(first['mean_diameter_mm']))} mm across in the {lung1}" in text
    assert f"about {int(round(second['mean_diameter_mm']))} mm" not in text


def test_no_findings_says_so_and_keeps_yearly_screening():
    text = patient_summary(signed(build("2026-01-15", [])))
    assert "No spots (nodules) that need attention were found" in text
    assert "yearly lung screening CT scan in 12 months" in text


@pytest.mark.parametrize("category", sorted(LUNG_RADS_MANAGEMENT))
def test_every_lung_rads_management_has_plain_words(category):
    text = plain_follow_up(LUNG_RADS_MANAGEMENT[category])
    assert text != "Your doctor will talk with you about the next steps.", category
    assert "LDCT" not in text and "clinical evaluation" not in text and ">=" not in text
    if category == "3":
        assert "another CT scan in 6 months" in text
    if category in ("4B", "4X"):
        assert "biopsy" in text and "PET-CT" in text


def test_fleischner_follow_up_in_plain_words():
    assert plain_follow_up("CT at 6-12 months to confirm persistence") == \
        "Your doctor recommends another CT scan in 6 to 12 months."
    assert plain_follow_up("No routine follow-up") == "No more scans are needed for this spot."


def _grade_level(text: str) -> float:
    """Flesch-Kincaid grade with a vowel-group syllable count: rough, but enough to catch a summary
    drifting into clinical prose (no readability library is in the environment)."""
    words = re.findall(r"[A-Za-z']+", text)
    sentences = len(re.findall(r"[.!?](?:\s|$)", text))

    def syllables(word: str) -> int:
        w = word.lower()
        n = len(re.findall(r"[aeiouy]+", w))
        return max(n - (1 if w.endswith("e") and not w.endswith(("le", "ee")) and n > 1 else 0), 1)

    return 0.39 * len(words) / sentences + 11.8 * sum(map(syllables, words)) / len(words) - 15.59


def test_reading_level_is_about_grade_six_to_eight(measured):
    study_date, items = measured
    text = patient_summary(signed(build(study_date, [with_lung_rads(r) for _, r, _ in items])))
    assert _grade_level(text) <= 8.5, text


def test_approval_records_who_and_when_and_the_final_wording(measured):
    study_date, items = measured
    report = signed(build(study_date, [with_lung_rads(items[0][1])]))
    draft = draft_summary(report)
    assert not draft.approved and draft.approver is None
    assert (draft.report_id, draft.report_version) == (report.id, report.version)
    edited = draft.text + " Bring this letter to your next visit."
    approved = approve_summary(draft, "Dr Summary Reader", text=edited)
    assert approved.approved and approved.approver == "Dr Summary Reader" and approved.text == edited
    assert approved.approved_at.endswith("+00:00")
    assert SummaryApproval.from_json(approved.to_json()) == approved
    with pytest.raises(ReportError, match="already approved"):
        approve_summary(approved, "Someone Else")
    with pytest.raises(ReportError, match="approver"):
        approve_summary(draft, "  ")
    with pytest.raises(ReportError, match="needs the approver"):
        SummaryApproval("r", 1, "text", approved=True)
