"""The signed report PDF: poppler's pdfsig and our verify_pdf both accept the PAdES signature of a
demo identity, both reject the file once one signed byte changes, and the rendered first page
carries the report's text (title, AI notice, the nodule table with the AI's model and the
reader's decision). Two hand-built NODULE records with known numbers, a chart and a key image
made with matplotlib."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from dataclasses import replace

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from tests.conftest import need_tool
from viewer.report.identity import create_demo_identity, load_identity
from viewer.report.model import (
    FieldValue,
    Finding,
    KeyImage,
    Provenance,
    Report,
    ReportError,
)
from viewer.report.pdf import write_pdf
from viewer.report.pdf_signature import SELF_SIGNED_NOTE, verify_pdf
from viewer.report.summary import approve_summary, draft_summary

SEG = ("radsight-demo-lung-nodule-seg", "1.0.0")
SIGNER = "Dr PDF Reader"
RECORDS = [
    {"id": "N1", "centre_lps_mm": [60.5, 19.4, 45.0], "volume_mm3": 2678.5, "mean_diameter_mm": 16.8,
     "long_axis_mm": 17.1, "short_axis_mm": 16.5, "type": "part-solid", "solid_mean_diameter_mm": 7.2,
     "status": "persisting", "prior": {"days": 274, "volume_mm3": 1642.5, "volume_change_pct": 63.1,
                                       "vdt_days": 388.3, "mean_diameter_mm": 14.1, "growing": True},
     "lung_rads": {"category": "4B", "management": "Referral for further clinical evaluation",
                   "rule": "growing part-solid nodule with solid component >= 4 mm (7.2 mm)"},
     "provenance": {"method": "test", "models": [{"id": SEG[0], "version": SEG[1]}]}, "source": "ai"},
    {"id": "N2", "centre_lps_mm": [-48.4, -46.2, 19.6], "volume_mm3": 331.0, "mean_diameter_mm": 7.4,
     "long_axis_mm": 8.0, "short_axis_mm": 6.8, "type": "solid", "status": "new", "prior": None,
     "lung_rads": {"category": "4A", "management": "3-month LDCT", "rule": "new solid nodule 6 to < 8 mm"},
     "source": "measured"},
]


@pytest.fixture(scope="module")
def signed_pdf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pdf")
    identity = load_identity(create_demo_identity(tmp / "reader.p12", SIGNER, "secret"), "secret")
    chart, key = tmp / "growth.png", tmp / "key.png"
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.plot([0, 91, 365], [1408.7, 1642.5, 2678.5], "o-")
    ax.set_xlabel("days")
    ax.set_ylabel("volume (mm³)")
    fig.savefig(chart, dpi=100)
    yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
    mpimg.imsave(key, np.where(xx ** 2 / 0.8 + yy ** 2 / 0.5 < 1, 0.3, 0.9) + 0.5 * ((xx - 0.4) ** 2 + yy ** 2 < 0.01),
               cmap="gray", vmin=0, vmax=1)
    findings = (Finding(RECORDS[0], Provenance("ai", *SEG, 0.92, "accepted"), confirmed=True),
                Finding(RECORDS[1], Provenance("measured", decision="edited"), confirmed=True))
    values = {"study_date": FieldValue("2026-01-15", provenance=Provenance("dicom", decision="accepted")),
              "lung_rads_category": FieldValue("4B", provenance=Provenance("ai", *SEG, 0.92, "accepted")),
              "management": FieldValue("Referral for further clinical evaluation", provenance=Provenance("ai", *SEG)),
              "impression": FieldValue("Growing part-solid nodule in the left upper lobe.")}
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    report = Report("r-pdf", "lung-screening-ldct-lungrads-2022", "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2",
                    values=values, findings=findings, key_images=(KeyImage(str(key), "Axial slice through N1"),),
                    status="signed", signer=SIGNER, signed_at=now.isoformat())
    summary = approve_summary(draft_summary(report), SIGNER)
    path = write_pdf(report, tmp / "report.pdf", identity, charts=[chart], summary=summary)
    return path, report, identity, summary, now


def pdfsig(path) -> str:
    # pdfsig exits non-zero for an invalid signature; its report is what the tests read
    return subprocess.run([need_tool("pdfsig"), str(path)], capture_output=True, text=True, check=False).stdout


def test_pdfsig_reports_the_signature_valid(signed_pdf):
    out = pdfsig(signed_pdf[0])
    print(out)                  # pytest -s shows what pdfsig printed
    assert "Signature Validation: Signature is Valid." in out
    assert "Total document signed" in out
    assert f"Signer Certificate Common Name: {SIGNER}" in out
    assert "ETSI.CAdES.detached" in out


def test_verify_pdf_accepts_the_demo_identity_and_says_it_is_self_signed(signed_pdf):
    path, *_, now = signed_pdf
    result = verify_pdf(path)
    assert result["valid"] is True, result
    assert result["problems"] == []
    assert result["signer"] == SIGNER
    assert abs(dt.datetime.fromisoformat(result["signed_at"]) - now) < dt.timedelta(minutes=5)
    assert SELF_SIGNED_NOTE in result["notes"]


def _offset_in_first_range(data: bytes, needle: bytes) -> int:
    start, length = (int(v) for v in data[data.rindex(b"/ByteRange"):].split(b"[", 1)[1].split()[:2])
    at = data.index(needle)
    assert start <= at < start + length, "the byte to change must lie inside the signed range"
    return at


@pytest.mark.parametrize("where", ["document title", "page content stream"])
def test_one_changed_byte_makes_both_checks_fail(signed_pdf, tmp_path, where):
    data = bytearray(signed_pdf[0].read_bytes())
    if where == "document title":
        at = _offset_in_first_range(bytes(data), b"(Lung cancer") + 1
    else:
        at = _offset_in_first_range(bytes(data), b"stream\n") + 40
    data[at] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    out = pdfsig(tampered)
    assert "Signature is Valid." not in out, out
    assert "Digest Mismatch" in out or "Signature is Invalid" in out or not out.strip(), out
    result = verify_pdf(tampered)
    assert result["valid"] is False
    assert any("do not match the digest" in p for p in result["problems"]), result["problems"]


def test_an_update_appended_after_signing_is_caught(signed_pdf, tmp_path):
    """A well-formed incremental update (what a PDF editor saves) leaves the signed bytes intact:
    it must still make the file invalid, since the report shown is no longer the one signed."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed_pdf[0].read_bytes()))
    writer.root["/RadSightTest"] = generic.TextStringObject("changed after signing")
    writer.update_root()
    appended = tmp_path / "appended.pdf"
    with appended.open("wb") as out:
        writer.write(out)
    result = verify_pdf(appended)
    assert result["valid"] is False
    assert any("added after signing" in p for p in result["problems"]), result["problems"]
    assert "Total document signed" not in pdfsig(appended)


def test_first_page_renders_with_the_reports_text(signed_pdf, tmp_path):
    path = signed_pdf[0]
    subprocess.run([need_tool("pdftoppm"), "-r", "60", "-f", "1", "-l", "1", "-png", str(path), str(tmp_path / "p")],
                   check=True, capture_output=True)
    page = mpimg.imread(next(tmp_path.glob("p*.png")))[..., :3]
    assert page.shape[0] > page.shape[1] * 1.3                      # A4 portrait
    inked = (page.mean(axis=2) < 0.6).mean()
    assert 0.01 < inked < 0.5, f"{inked:.3f} of page 1 is dark: blank or a solid block"
    text = subprocess.run([need_tool("pdftotext"), "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    first = text.split("\f")[0]
    assert "Lung cancer screening LDCT (Lung-RADS v2022)" in first
    assert "AI results are decision support" in first
    n1 = next(line for line in first.splitlines() if line.strip().startswith("N1 "))
    for cell in ("part-solid", "left", "16.8", "2678", "+63.1", "388", "4B", "AI"):
        assert cell in n1, (cell, n1)
    source = first[first.index(n1):].split("N2 ")[0]                # the Source cell wraps onto a second line
    assert "radsight-demo-lung-nodule-" in source and "conf. 0.92, accepted" in source, source
    n2 = next(line for line in first.splitlines() if line.strip().startswith("N2 "))
    for cell in ("solid", "right", "7.4", "331", "new", "4A", "measured"):
        assert cell in n2, (cell, n2)
    assert "AI: radsight-demo-lung-nodule-seg 1.0.0, confidence 0.92, reader accepted" in text
    assert "reader decision pending" in text                         # the management value's note
    assert f"Electronically signed by {SIGNER}" in text
    assert signed_pdf[3].text.split(".")[0] in text.replace("\n", " ")  # the approved patient summary


def test_draft_pdf_is_unsigned_and_cannot_be_signed(signed_pdf, tmp_path):
    _, report, identity, summary, _ = signed_pdf
    draft = replace(report, status="draft", signer=None, signed_at=None)
    path = write_pdf(draft, tmp_path / "draft.pdf")
    result = verify_pdf(path)
    assert result["valid"] is False and "no digital signature" in result["problems"][0]
    with pytest.raises(ReportError, match="sign the report"):
        write_pdf(draft, tmp_path / "x.pdf", identity)
    with pytest.raises(ReportError, match="same identity"):
        write_pdf(replace(report, signer="Someone Else"), tmp_path / "x.pdf", identity)
    with pytest.raises(ReportError, match="not approved"):
        write_pdf(report, tmp_path / "x.pdf", identity, summary=replace(summary, approved=False))
    with pytest.raises(ReportError, match="does not exist"):
        write_pdf(report, tmp_path / "x.pdf", identity, charts=[tmp_path / "missing.png"])
    assert not (tmp_path / "x.pdf").exists()
