"""The domain flag where a reader meets AI results: `radsight analyze --json` on a real chest CT
(the shared LIDC-IDRI slab) with the synthetic-only bundled models, the SEG it writes (highdicom
read-back, dciodvfy), the report drafted from that analysis as SR (read back, dciodvfy) and PDF
(pdftotext), and the AI panel; and an AI-only negative: "AI found no nodules" with the
detector's measured sensitivity, pending reader review, category 1 only once the reader confirms."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from tests.cli_run import analyze_json
from tests.conftest import need_tool
from viewer.inference.domain import DETECTOR_SENSITIVITY, OUTSIDE
from viewer.inference.registry import discover
from viewer.report.drafts import confirm
from viewer.report.model import ReportError
from viewer.report.pdf import write_pdf
from viewer.report.prefill import prefill
from viewer.report.signing import sign_report
from viewer.report.sr import write_sr
from viewer.report.templates import find_template

SEG_ID = "radsight-demo-lung-nodule-seg"
SLAB = "real_ct/lidc_idri_0003_slab"
LUNG_SCREENING = "lung-screening-ldct-lungrads-2022"


@pytest.fixture(scope="module")
def slab(shared_testdata) -> Path:
    return shared_testdata / SLAB


@pytest.fixture(scope="module")
def analysed(slab, tmp_path_factory):
    return analyze_json(slab, tmp_path_factory.mktemp("analyze-real"))


def _outside(check: dict) -> None:
    assert check["within"] is False and check["status"] == OUTSIDE
    assert any("synthetic data only" in r and "GE MEDICAL SYSTEMS LightSpeed16" in r for r in check["reasons"])
    assert "Pixel spacing 0.82 mm is outside the training range 0.9-2.6 mm." in check["reasons"]


@pytest.mark.slow
def test_analyze_json_marks_every_model_outside(analysed):
    (model,) = [m for m in analysed["models"] if m["id"] == SEG_ID]
    _outside(model["domain"])
    domain = analysed["domain"]
    assert domain["within"] is False and {c["model"] for c in domain["checks"]} >= {SEG_ID, "radsight-demo-nodule-classifier"}
    for check in domain["checks"]:
        _outside(check)
    assert domain["summary"].startswith(f"AI results {OUTSIDE}.") and "0.82 mm" in domain["summary"]
    assessment = analysed["assessment"]
    assert assessment["status"] == "pending reader review" and assessment["source"] == "ai"
    assert assessment["outside_domain"] == domain["summary"]


@pytest.mark.slow
def test_seg_says_outside_and_stays_valid(analysed):
    (path,) = analysed["outputs"]["seg"]
    seg = hd.seg.segread(path)
    assert seg.SeriesDescription.endswith("OUTSIDE VALIDATED DOMAIN") and len(seg.SeriesDescription) <= 64
    assert seg.ContentDescription == f"{SEG_ID} 1.1.0 OUTSIDE VALIDATED DOMAIN"
    for segment in seg.SegmentSequence:
        text = str(segment.SegmentDescription)
        assert text.startswith(f"AI result {OUTSIDE}:") and "Pixel spacing 0.82 mm" in text and len(text) <= 1024
    proc = subprocess.run([need_tool("dciodvfy"), path], capture_output=True, text=True, timeout=120)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def _cautions(sr) -> list[str]:
    return [str(text.TextValue) for item in sr.ContentSequence
            if item.ConceptNameCodeSequence[0].CodeValue == "C0034375"
            for text in item.ContentSequence if text.ConceptNameCodeSequence[0].CodeValue == "121106"]


@pytest.mark.slow
def test_report_from_the_analysis_carries_the_flag_in_sr_and_pdf(analysed, slab, tmp_path):
    report = prefill(find_template(LUNG_SCREENING), analysed,
                     study={"source_paths": [str(slab)], "series_uid": analysed["series_uid"]})
    assert report.ai_cautions == (analysed["domain"]["summary"],)
    sr_path = write_sr(report, tmp_path / "draft-sr.dcm", source_dir=slab)
    cautions = _cautions(hd.sr.srread(sr_path))
    assert cautions == [analysed["domain"]["summary"]]
    assert pydicom.dcmread(sr_path).ContentTemplateSequence[0].TemplateIdentifier == "1500"
    proc = subprocess.run([need_tool("dciodvfy"), str(sr_path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    pdf = write_pdf(report, tmp_path / "draft.pdf")
    text = subprocess.run([need_tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True,
                          timeout=60).stdout
    flat = " ".join(text.split())
    assert f"AI results {OUTSIDE}." in flat and "Pixel spacing 0.82 mm is outside the training range" in flat


def test_an_ai_only_negative_is_pending_with_the_detectors_sensitivity():
    from radsight_lung_nodules.analysis import _study_assessment

    from viewer.cli import _assessment_line

    analysis = {"study_uid": "2.25.1", "nodules": [], "models": [{"id": SEG_ID, "version": "1.1.0"}],
                "domain": {"summary": f"AI results {OUTSIDE}. reasons"}}
    a = _study_assessment([], "lung-rads", analysis)
    sensitivity, validation = discover().get(SEG_ID).figure(DETECTOR_SENSITIVITY)
    assert a["category"] is None and a["proposed_category"] == "1"
    assert a["rule"].startswith("AI found no nodules: detector sensitivity") and f"{sensitivity:.0%}" in a["rule"]
    assert "not validated on real CT" in a["rule"] and validation.date.isoformat() in a["rule"]
    assert a["status"] == "pending reader review" and a["source"] == "ai" and a["outside_domain"] == "AI results " \
        f"{OUTSIDE}. reasons"
    line = _assessment_line(a)
    assert "AI found no nodules" in line and "pending reader review" in line and ": 1 (" not in line
    # A category from nodules is still the AI's proposal until the reader reviews it.
    found = _study_assessment([{"id": "N1", "lung_rads": {"category": "4A", "management": "3-month LDCT",
                                                         "rule": "solid 8 to < 15 mm"}}], "lung-rads", analysis)
    assert found["category"] == "4A" and found["status"] == "pending reader review"
    # The draft offers category 1 unconfirmed: signing waits for the reader to confirm it.
    report = prefill(find_template(LUNG_SCREENING), {**analysis, "assessment": a})
    value = report.values["lung_rads_category"]
    assert value.value == "1" and not value.confirmed and value.provenance.source == "ai"
    assert report.values["lung_rads_rule"].value == a["rule"]
    assert report.ai_cautions == ()  # no "checks" in this hand-made analysis: nothing to say
    with pytest.raises(ReportError, match="lung_rads_category"):
        sign_report(report, identity=None)
    confirmed = confirm(report)
    assert confirmed.values["lung_rads_category"].confirmed and confirmed.values["lung_rads_category"].value == "1"
