"""Report templates (the checked YAML format) and prefill from results with provenance.

Prefill is a translation: each report value must equal what the NODULE records say, so those are
compared exactly; the records themselves are measured with measure_at on a synthetic study
(DICOM written and read back) at the ground truth's centres, and each finding must lie on its
ground-truth nodule (within one 2.6 mm voxel of the small preset).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from viewer.analysis.guidelines import CATEGORY_ORDER, LUNG_RADS_MANAGEMENT
from viewer.analysis.nodules import MeasurementError, measure_at
from viewer.demo import generate_demo
from viewer.dicom import load, open_path
from viewer.report.drafts import reject_finding
from viewer.report.model import ReportError
from viewer.report.prefill import FILLERS, prefill, refill
from viewer.report.templates import (
    CT_CHEST,
    LUNG_SCREENING,
    PREFILL_SOURCES,
    TEMPLATE_DIR,
    Template,
    available_templates,
    find_template,
)
from viewer.store import Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "radsight-lung-nodules"))
from radsight_lung_nodules.records import nodule_record

SEG_MODEL = {"id": "radsight-demo-lung-nodule-seg", "version": "1.0.0"}
CLASSIFIER = {"id": "radsight-demo-nodule-classifier", "version": "1.0.0"}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A one-visit small demo study and NODULE records of its measurable nodules; every other one
    is marked as found by the AI (with models and a detection score), the rest as measured."""
    demo = generate_demo(tmp_path_factory.mktemp("report-prefill"), preset="small", n_visits=1, seed=31)
    study_dir = demo.visits[0].study_dir
    volume = load(study_dir)
    truth = {n["id"]: n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"]}
    records = []
    for n in truth.values():
        try:
            m = measure_at(volume, n["centre_lps_mm"])
        except MeasurementError:
            continue
        ai = len(records) % 2 == 0
        records.append(nodule_record(m, n["id"], tracking_uid=f"2.25.{100 + len(records)}",
                                     source="ai" if ai else "measured",
                                     scores={"detection": 0.5 + 0.05 * len(records)} if ai else {},
                                     provenance={"method": "test", "models": [SEG_MODEL, CLASSIFIER]} if ai else None))
    assert len(records) >= 4, "the study needs a few measurable nodules"
    series, _ = open_path(study_dir)
    first = series[0].first
    analysis = {"study_uid": first.study_uid, "series_uid": first.series_uid, "series_key": series[0].key,
                "models": [SEG_MODEL], "nodules": records, "outputs": {"seg": ["/nowhere/seg.dcm"]}}
    return {"analysis": analysis, "truth": truth, "study_date": first.study_date, "study_dir": study_dir,
            "series_key": series[0].key}


def test_bundled_templates_load_and_every_prefill_source_has_a_filler():
    templates = available_templates([TEMPLATE_DIR])
    assert {LUNG_SCREENING, CT_CHEST} <= set(templates)
    lung = templates[LUNG_SCREENING]
    assert lung.title == "Lung cancer screening LDCT (Lung-RADS v2022)"
    assert templates[CT_CHEST].title == "CT chest, general"
    assert lung.field("lung_rads_category").choices == CATEGORY_ORDER
    assert lung.field("largest_nodule_diameter").unit == "mm"
    assert [f.id for f in lung.fields if f.type == "findings"] == ["nodules"]
    for t in templates.values():
        for f in t.fields:
            assert (f.type == "number") == (f.unit is not None), f"{t.id} {f.id}"
            assert f.prefill is None or f.type in PREFILL_SOURCES[f.prefill]
    assert set(FILLERS) == set(PREFILL_SOURCES)


GOOD = {"id": "t", "title": "T", "version": "1",
        "sections": [{"id": "s", "title": "S", "fields": [
            {"id": "size", "label": "Size", "type": "number", "unit": "mm"},
            {"id": "kind", "label": "Kind", "type": "choice", "choices": ["a", "b"]}]}]}


def _broken(path: str, value):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is None:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


@pytest.mark.parametrize("path, value, expected", [
    ("sections.0.fields.0.unit", None, "field 'size': a number field needs its unit"),
    ("sections.0.fields.0.type", "colour", "field 'size': type must be one of text, choice, number, date, findings"),
    ("sections.0.fields.1.choices", ["a"], "field 'kind': a choice field needs a list of two or more"),
    ("sections.0.fields.1.prefill", "nodules.colour", "field 'kind': prefill 'nodules.colour' is not one of"),
    ("sections.0.fields.0.prefill", "lung_rads.rule", "field 'size': prefill 'lung_rads.rule' fills text fields"),
    ("sections.0.fields.1.id", "size", "field 'size': the id is used twice"),
    ("sections.0.fields.0.default", "big", "field 'size': default: field 'size' takes a number in mm; got 'big'"),
    ("sections.0.fields.0.colour", "red", "field 'size': unknown keys colour"),
    ("sections.0.fields.1.concept", {"scheme": "DCM", "value": "121071"}, "field 'kind': concept needs exactly"),
    ("sections.0.fields.0.id", "free_text", "'free_text' is reserved"),
    ("title", None, "'title' is required"),
])
def test_broken_template_errors_name_the_file_and_field(tmp_path, path, value, expected):
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(_broken(path, value)))
    with pytest.raises(ReportError) as info:
        Template.from_file(file)
    assert str(file) in str(info.value) and expected in str(info.value)


def test_user_templates_join_and_a_broken_one_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({**GOOD, "id": "my-template"}))
    (tmp_path / "bad.yaml").write_text("id: [unclosed")
    with caplog.at_level(logging.WARNING):
        templates = available_templates([TEMPLATE_DIR, tmp_path])
    assert "my-template" in templates and LUNG_SCREENING in templates
    assert "bad.yaml" in caplog.text
    with pytest.raises(ReportError, match="no report template 'nope'; available: .*my-template"):
        find_template("nope", [TEMPLATE_DIR, tmp_path])


def test_values_are_checked_against_their_field():
    lung = find_template(LUNG_SCREENING)
    assert lung.field("lung_rads_category").check("4b") == "4B"
    with pytest.raises(ReportError, match=r"field 'lung_rads_category' takes one of 0, 1, 2, 3, 4A, 4B, 4X; got '5'"):
        lung.field("lung_rads_category").check("5")
    assert lung.field("largest_nodule_diameter").check("7.25") == 7.25
    with pytest.raises(ReportError, match=r"takes a number from 0 to any mm; got -1"):
        lung.field("largest_nodule_diameter").check(-1)
    with pytest.raises(ReportError, match="takes a number in mm; got 'nan'"):
        lung.field("largest_nodule_diameter").check("nan")
    assert lung.field("study_date").check("20260115") == "2026-01-15"
    with pytest.raises(ReportError, match="takes a date as YYYY-MM-DD; got '15/01/2026'"):
        lung.field("study_date").check("15/01/2026")
    with pytest.raises(ReportError, match="takes text"):
        lung.field("impression").check(3)
    with pytest.raises(ReportError, match="list of findings"):
        lung.field("nodules").check("N1")


def test_prefill_from_analysis_keeps_provenance_and_waits_for_the_reader(measured):
    analysis, records = measured["analysis"], measured["analysis"]["nodules"]
    report = prefill(find_template(LUNG_SCREENING), analysis, study={"study_date": measured["study_date"]})
    assert report.study_uid == analysis["study_uid"] and report.status == "draft"
    assert report.seg_paths == ("/nowhere/seg.dcm",) and report.template_version == "1.0"
    assert [f.record["id"] for f in report.findings] == sorted((r["id"] for r in records), key=lambda i: int(i[1:]))
    spacing = 2.6
    for f in report.findings:
        truth = measured["truth"][f.record["id"]]
        assert np.linalg.norm(np.subtract(f.record["centre_lps_mm"], truth["centre_lps_mm"])) <= spacing
        assert not f.confirmed and f.include
        if f.record["source"] == "ai":
            assert (f.provenance.source, f.provenance.model_id, f.provenance.model_version) == \
                ("ai", SEG_MODEL["id"], SEG_MODEL["version"])
            assert f.provenance.confidence == pytest.approx(f.record["scores"]["detection"])
        else:
            assert f.provenance.source == "measured" and f.provenance.model_id is None
        assert f.provenance.tracking_uid == f.record["tracking_uid"] and f.provenance.decision is None
    values = report.values
    assert values["nodule_count"].value == len(records) and values["nodule_count"].unit == "{nodules}"
    largest = max(records, key=lambda r: r["mean_diameter_mm"])
    assert values["largest_nodule_diameter"].value == largest["mean_diameter_mm"]
    assert values["largest_nodule_diameter"].unit == "mm"
    assert values["largest_nodule_diameter"].provenance.tracking_uid == largest["tracking_uid"]
    rated = [r for r in records if r["lung_rads"]]
    worst = max(rated, key=lambda r: CATEGORY_ORDER.index(r["lung_rads"]["category"]))
    assert values["lung_rads_category"].value == worst["lung_rads"]["category"]
    assert values["management"].value == LUNG_RADS_MANAGEMENT[worst["lung_rads"]["category"]]
    assert values["lung_rads_category"].provenance.source == worst["source"]
    d = measured["study_date"]
    assert values["study_date"].value == f"{d[:4]}-{d[4:6]}-{d[6:]}" and values["study_date"].provenance.source == "dicom"
    assert "radsight-demo-nodule-classifier 1.0.0" in values["ai_models"].value
    for name in ("nodule_count", "largest_nodule_diameter", "lung_rads_category", "management", "study_date"):
        assert not values[name].confirmed and name in report.unconfirmed
    assert values["technique"].confirmed and values["technique"].provenance.source == "reader"  # boilerplate
    assert len(report.unconfirmed) == len([v for v in values.values() if not v.confirmed]) + len(records)


def test_prefill_from_store_rows_carries_the_readers_decisions(measured, tmp_path):
    records = measured["analysis"]["nodules"]
    with Store(tmp_path / "db.sqlite3") as store:
        ids = [store.save_nodule("s1", r, r["source"], model=SEG_MODEL if r["source"] == "ai" else None,
                                 confidence=r["scores"].get("detection"), study_uid="1.2.3") for r in records]
        store.decide_nodule(ids[0], "accepted")
        edited = dict(records[1], mean_diameter_mm=records[1]["mean_diameter_mm"] + 3.0)
        store.decide_nodule(ids[1], "edited", record=edited)
        store.decide_nodule(ids[2], "rejected")
        rows = store.nodules("s1")
    report = prefill(find_template(CT_CHEST), None, nodule_rows=rows, study={"study_uid": "1.2.3"})
    by_id = {f.provenance.nodule_id: f for f in report.findings}
    assert by_id[ids[0]].provenance.decision == "accepted" and by_id[ids[0]].include
    assert by_id[ids[1]].provenance.decision == "edited"
    assert by_id[ids[1]].record["mean_diameter_mm"] == edited["mean_diameter_mm"]
    assert by_id[ids[2]].provenance.decision == "rejected" and not by_id[ids[2]].include
    assert f"finding {records[2]['id']}" not in report.unconfirmed
    assert report.values["nodule_count"].value == len(records) - 1  # the rejected one is not counted
    included = [edited if i == 1 else r for i, r in enumerate(records) if i != 2]
    expected = max((r["lung_rads"]["category"] for r in included if r["lung_rads"]), key=CATEGORY_ORDER.index)
    assert report.values["guideline"].value == "Lung-RADS v2022"
    assert report.values["nodule_category"].value == expected


def test_rejecting_a_finding_rederives_unconfirmed_counts(measured):
    template = find_template(LUNG_SCREENING)
    report = prefill(template, measured["analysis"])
    largest = max(report.findings, key=lambda f: f.record["mean_diameter_mm"])
    after = refill(reject_finding(report, largest.record["id"]), template)
    assert after.values["nodule_count"].value == report.values["nodule_count"].value - 1
    rest = [f.record["mean_diameter_mm"] for f in after.findings if f.include]
    assert after.values["largest_nodule_diameter"].value == max(rest)
    assert not after.values["nodule_count"].confirmed


def test_an_analysis_without_nodules_prefills_lung_rads_1_from_the_model():
    analysis = {"study_uid": "1.2.3", "models": [SEG_MODEL], "nodules": []}
    report = prefill(find_template(LUNG_SCREENING), analysis)
    category = report.values["lung_rads_category"]
    assert category.value == "1" and category.provenance.model_id == SEG_MODEL["id"] and not category.confirmed
    assert report.values["nodule_count"].value == 0 and report.findings == ()
    with pytest.raises(ReportError, match="without the study's UID"):
        prefill(find_template(LUNG_SCREENING), {"nodules": []})
