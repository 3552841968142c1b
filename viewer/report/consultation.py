"""What the consultation screen tells the patient, without Qt: the findings to explain, each with
a caption in plain words, and the radiologist's approved summary (issue 8, "For educators and
patient consultations").

Only what a radiologist released is shown: the included findings of the study's signed report
(else the nodules the reader accepted, edited or measured; AI nodules still pending are left
out) and the patient summary approved for that same signed version. A draft is never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from viewer.report.model import Report
from viewer.report.summary import SummaryApproval, nodule_side

NO_SUMMARY = "No approved summary yet"
SHOWN_DECISIONS = ("accepted", "edited")   # an AI nodule the reader decided on and kept


@dataclass(frozen=True)
class ConsultFinding:
    """One nodule to explain: its record (as signed, or as the reader left it) and the store's row
    that holds its mask (None when the finding has no stored nodule)."""

    label: str
    record: dict
    nodule_id: str | None
    caption: str

    @property
    def centre(self) -> tuple[float, float, float]:
        x, y, z = self.record["centre_lps_mm"]
        return float(x), float(y), float(z)


def caption(record: dict) -> str:
    """"Spot in the right lung, about 8 mm across": side and size in whole millimetres, the words
    of the patient summary (viewer.report.summary), so screen and handout agree."""
    side = nodule_side(record)
    where = f" in the {side}" if side else ""
    size = record.get("mean_diameter_mm")
    across = f", about {int(round(float(size)))} mm across" if size is not None else ""
    return f"Spot{where}{across}"


def latest_report(store, study_uid: str) -> Report | None:
    """The newest version of the study's most recently changed report (None if it has none)."""
    rows = store.reports(study_uid)
    if not rows:
        return None
    newest = max(rows, key=lambda r: (r["updated_at"] or "", r["created_at"] or ""))
    return store.report(newest["id"])


def latest_signed(store, report: Report | None) -> Report | None:
    """The newest signed version of `report` (an amendment being written keeps its predecessor's
    findings on screen; its summary waits for the new signature)."""
    if report is None or report.status == "signed":
        return report
    signed = [v for v in store.report_versions(report.id) if v.status == "signed"]
    return signed[-1] if signed else None


def consultation_findings(store, series_key: str, report: Report | None) -> tuple[list[ConsultFinding], int]:
    """(findings to show, number of AI nodules left out because the reader has not decided on
    them). A signed report's included findings win; otherwise the series' stored nodules."""
    rows = store.nodules(series_key) if series_key else []
    if report is not None and report.status == "signed":
        by_id = {r["id"]: r for r in rows}
        by_track = {r["tracking_uid"]: r for r in rows if r["tracking_uid"]}
        findings = []
        for f in report.findings:
            if not f.include or f.provenance.decision == "rejected" or "centre_lps_mm" not in f.record:
                continue
            row = by_id.get(f.provenance.nodule_id) or by_track.get(f.provenance.tracking_uid or "") \
                or by_track.get(f.record.get("tracking_uid") or "")
            findings.append(_finding(f.record, row["id"] if row else None, len(findings)))
        return findings, 0
    findings, pending = [], 0
    for row in rows:
        decision = (row["decision"] or {}).get("decision")
        if row["source"] == "ai" and decision not in SHOWN_DECISIONS:
            pending += decision is None
            continue
        if decision == "rejected":
            continue
        findings.append(_finding(row["current"], row["id"], len(findings)))
    return findings, pending


def _finding(record: dict, nodule_id: str | None, n: int) -> ConsultFinding:
    label = str(record.get("id") or f"{n + 1}")
    return ConsultFinding(label, dict(record), nodule_id, caption(record))


def approved_summary(store, report: Report | None) -> SummaryApproval | None:
    """The summary approved for this signed version, or None (no report, not signed, an
    amendment being written, or never approved): the approval the store keeps when the
    radiologist releases it (viewer.report.export.release_summary)."""
    if report is None or report.status != "signed":
        return None
    return store.approved_summary(report.id, report.version)


__all__ = ["NO_SUMMARY", "ConsultFinding", "approved_summary", "caption", "consultation_findings",
           "latest_report", "latest_signed"]
