"""The plain-language patient summary of a signed report, for the consultation.

Templated sentences (not free generation) so every statement traces to a signed finding: size
rounded to whole millimetres, side, change since the prior scan, and the follow-up with the
guideline's management text put into everyday words (about a 6th-8th grade reading level). No
model names, no codes, and always the reminder that it is not a diagnosis. The radiologist
reads it and approves it (`SummaryApproval`) before it is released.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, replace

from viewer.analysis.guidelines import CATEGORY_ORDER
from viewer.report.model import Finding, Report, ReportError

UNSIGNED = "the radiologist must sign before a summary is made"
NOT_A_DIAGNOSIS = ("This summary is not a diagnosis. Please talk with your doctor about what these results "
                   "mean for you.")
# Relative growth (by volume) below which a nodule counts as unchanged: about the repeat-measurement
# spread of CT nodule volumetry, so smaller changes are not told to a patient as growth.
STABLE_VOLUME_PCT = 25.0
DETAILED_FINDINGS = 3

_TYPE_WORDS = {
    "solid": "It looks solid.",
    "part-solid": "Part of it is faint and hazy and part of it is solid.",
    "ground-glass": "It is faint and hazy (doctors call this \"ground-glass\").",
}
_MEANING = {
    "0": "The results are not complete yet.",
    "1": "Spots like this are very common and are almost never cancer.",
    "2": "Spots like this are very common and are almost never cancer.",
    "3": "This spot is probably not cancer, but it should be checked again to be sure.",
    "4A": "This spot needs a closer look. This does not mean you have cancer, but it should be checked.",
    "4B": "This spot needs a closer look soon. This does not mean you have cancer, but more tests are needed.",
    "4X": "This spot needs a closer look soon. This does not mean you have cancer, but more tests are needed.",
}


def nodule_side(record: dict) -> str | None:
    """"right lung" / "left lung" for a NODULE record: its own location if it has one, else from
    the LPS x of its centre (+x is the patient's left). That assumes the patient lies near the
    scanner's x = 0 (the table centre), which holds for chest CT and for the demo."""
    for key in ("location", "lobe", "side"):
        if record.get(key):
            text = str(record[key]).lower()
            return text if "lung" in text or "lobe" in text else f"{text} lung"
    centre = record.get("centre_lps_mm")
    if not centre:
        return None
    return "left lung" if float(centre[0]) > 0 else "right lung"


def _category(record: dict) -> str | None:
    category = (record.get("lung_rads") or {}).get("category")
    return category if category in CATEGORY_ORDER else None


def _rank(finding: Finding) -> tuple:
    """Most important first: Lung-RADS category, then size."""
    category = _category(finding.record)
    return (CATEGORY_ORDER.index(category) if category else -1, finding.record.get("mean_diameter_mm") or 0.0)


def _needs_follow_up(record: dict) -> bool:
    """Lung-RADS 3 or higher: worth a sentence of its own."""
    category = _category(record)
    return category is not None and CATEGORY_ORDER.index(category) >= CATEGORY_ORDER.index("3")


def _date(text: str | None) -> str | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        return None
    return f"{day.day} {day.strftime('%B %Y')}"


def _signed_text(report: Report, name: str) -> str | None:
    value = report.values.get(name)
    return str(value.value).strip() or None if value is not None and value.value is not None else None


def _study_date(report: Report) -> str | None:
    for name in ("study_date", "exam_date", "date"):
        if name in report.values:
            return _date(str(report.values[name].value))
    for finding in report.findings:
        for visit in finding.record.get("history") or ():
            if visit.get("study_uid") == report.study_uid:
                return _date(visit.get("date"))
    return None


def _prior_date(record: dict) -> str | None:
    history = [v for v in record.get("history") or () if v.get("date")]
    return _date(history[-2]["date"]) if len(history) >= 2 else None


def _spot(record: dict) -> str:
    size = record.get("mean_diameter_mm")
    side = nodule_side(record)
    where = f" in the {side}" if side else ""
    if size is None:
        return f"a spot (nodule){where}"
    mm = int(round(float(size)))
    small = "small " if mm < 10 else ""
    return f"a {small}spot (nodule) about {mm} mm across{where}"


def _change(record: dict) -> str | None:
    prior = record.get("prior")
    when = _prior_date(record)
    since = f"since your scan on {when}" if when else "since your last scan"
    if record.get("status") == "new" or (prior is None and record.get("history") and len(record["history"]) > 1):
        return f"It is new {since}."
    if not prior:
        return None
    change = prior.get("volume_change_pct")
    before = prior.get("mean_diameter_mm")
    then = f" (it was about {int(round(float(before)))} mm then)" if before is not None else ""
    if prior.get("growing") or (change is not None and change > STABLE_VOLUME_PCT):
        return f"It has grown {since}{then}."
    if change is not None and change < -STABLE_VOLUME_PCT:
        return f"It has become smaller {since}{then}."
    return f"It has not changed much {since}."


def plain_follow_up(management: str) -> str:
    """The guideline's management text (Lung-RADS v2022 or Fleischner 2017) in everyday words."""
    text = management.lower()
    sentences = []
    months = re.search(r"(\d+)(?:\s*-\s*(\d+))?[- ]month", text) or re.search(r"ct (?:at|in) (\d+)(?:\s*-\s*(\d+))? months", text)
    if "additional lung cancer screening ct images" in text or "comparison to prior" in text:
        sentences.append("More pictures, or a look at your older scans, are needed before the results are complete.")
    elif "referral" in text:
        sentences.append("Your doctor recommends more tests soon, such as another CT scan of the chest.")
    elif "no routine follow-up" in text:
        sentences.append("No more scans are needed for this spot.")
    elif "annual screening" in text or (months and months.group(1) == "12" and not months.group(2)):
        sentences.append("Your doctor recommends your next yearly lung screening CT scan in 12 months (one year).")
    elif months:
        span = f"{months.group(1)} to {months.group(2)}" if months.group(2) else months.group(1)
        sentences.append(f"Your doctor recommends another CT scan in {span} months.")
    if "pet/ct" in text:
        sentences.append("A PET-CT scan, which shows how active a spot is, may also be suggested.")
    if "tissue sampling" in text:
        sentences.append("Your doctor may also suggest taking a tiny piece of the spot to test it (a biopsy).")
    if not sentences:
        sentences.append("Your doctor will talk with you about the next steps.")
    return " ".join(sentences)


def patient_summary(report: Report) -> str:
    """The plain-language summary of a signed report's included findings: three paragraphs (what
    was seen, what it means and what happens next, who signed it and that it is not a diagnosis)."""
    if report.status != "signed" or not report.signed_at:
        raise ReportError(f"report {report.id} version {report.version} is a draft: {UNSIGNED}")
    findings = sorted((f for f in report.findings if f.include and f.provenance.decision != "rejected"
                       and f.record.get("present", True) is not False), key=_rank, reverse=True)
    date = _study_date(report)
    scan = f"your lung CT scan from {date}" if date else "your recent lung CT scan"
    lines = [f"This is a short summary of {scan}, written in everyday words."]
    if not findings:
        lines.append("No spots (nodules) that need attention were found in your lungs.")
        management = _signed_text(report, "management") or "Continue annual screening with LDCT in 12 months"
        advice = [plain_follow_up(management)]
    else:
        main, others = findings[0], findings[1:]
        lines.append(f"The most important finding is {_spot(main.record)}.")
        lines.extend(s for s in (_TYPE_WORDS.get(main.record.get("type")), _change(main.record)) if s)
        detailed = [f for f in others[:DETAILED_FINDINGS - 1] if _needs_follow_up(f.record)]
        for finding in detailed:
            change = _change(finding.record)
            lines.append(f"There is also {_spot(finding.record)}." + (f" {change}" if change else ""))
        rest = len(others) - len(detailed)
        if rest:
            lines.append(f"We also saw {rest} other small spot that looks less important." if rest == 1 else
                         f"We also saw {rest} other small spots that look less important.")
        # The signed report's own category and management (the reader may have changed them)
        # win over the deciding nodule's AI-proposed ones.
        category = _signed_text(report, "lung_rads_category") or _category(main.record)
        advice = [_MEANING[category]] if category in _MEANING else []
        if others:
            advice = [a.replace("This spot", "The most important spot") for a in advice]
        management = _signed_text(report, "management") or (main.record.get("lung_rads") or {}).get("management")
        advice.append(plain_follow_up(management) if management
                      else "Your doctor will talk with you about the next steps.")
    due = _date(_signed_text(report, "next_examination"))
    if due:
        advice.append(f"Your next scan is due around {due}.")
    signed = _date(report.signed_at)
    by = f", {report.signer}," if report.signer else ""
    closing = [f"Your radiologist{by} checked and signed the report on {signed}.", NOT_A_DIAGNOSIS]
    return "\n\n".join(" ".join(part) for part in (lines, advice, closing))


@dataclass(frozen=True)
class SummaryApproval:
    """A patient summary and the radiologist's release of it: only an approved summary goes to
    the patient or into the PDF."""

    report_id: str
    report_version: int
    text: str
    approved: bool = False
    approver: str | None = None
    approved_at: str | None = None      # UTC ISO 8601

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ReportError(f"the patient summary of report {self.report_id} is empty")
        if self.approved and not (self.approver and self.approved_at):
            raise ReportError(f"the approved patient summary of report {self.report_id} needs the approver "
                              "and the time of approval")

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> SummaryApproval:
        try:
            return SummaryApproval(**data)
        except TypeError as exc:
            raise ReportError(f"patient summary JSON is incomplete or has an unknown field: {exc}") from None


def check_released(summary: SummaryApproval, report: Report) -> None:
    """ReportError unless `summary` is approved and belongs to this version of the report: only
    then may it go into the PDF or to the patient."""
    if not summary.approved:
        raise ReportError(f"the patient summary of report {report.key} is not approved by the radiologist yet: "
                          "approve it before it is released")
    if (summary.report_id, summary.report_version) != (report.id, report.version):
        raise ReportError(f"the patient summary belongs to report {summary.report_id}/v{summary.report_version}, "
                          f"not {report.key}")


def draft_summary(report: Report) -> SummaryApproval:
    """A summary waiting for the radiologist's approval."""
    return SummaryApproval(report.id, report.version, patient_summary(report))


def approve_summary(summary: SummaryApproval, approver: str, text: str | None = None,
                    at: dt.datetime | None = None) -> SummaryApproval:
    """The summary released by `approver`, with the wording they settled on (`text`, if edited)."""
    if summary.approved:
        raise ReportError(f"the patient summary of report {summary.report_id} was already approved by "
                          f"{summary.approver} at {summary.approved_at}")
    if not approver or not approver.strip():
        raise ReportError(f"approving the patient summary of report {summary.report_id} needs the approver's name")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
    return replace(summary, text=summary.text if text is None else text, approved=True,
                   approver=approver.strip(), approved_at=when)
