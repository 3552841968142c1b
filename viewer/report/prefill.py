"""Prefill a template from results: the nodules (from `radsight analyze --json` or the store's
rows with the reader's decisions), their measurements, types and Lung-RADS categories, and the
study assessment. Every prefilled value and finding keeps its provenance and starts unconfirmed;
nodules the reader rejected stay in the report as include=False, for the audit trail. A study
assessment the AI made alone is a proposal "pending reader review" (category 1 for "AI found no
nodules" included): it enters the draft unconfirmed, so only the reader's confirmation makes it the
report's. When the models ran outside their validated domain, the report's `ai_cautions` say so.

Each PREFILL_SOURCES name (viewer.report.templates) has one filler here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from viewer.analysis.guidelines import CATEGORY_ORDER, LUNG_RADS_MANAGEMENT, most_suspicious
from viewer.inference.domain import outside_summary
from viewer.report.model import FieldValue, Finding, Provenance, Report, ReportError
from viewer.report.templates import Template, TemplateField


def prefill(template: Template, analysis: dict | None = None, *, nodule_rows: list[dict] | None = None,
            study: dict | None = None, report_id: str | None = None) -> Report:
    """A draft report of `template` filled from `analysis` (the `radsight analyze --json` object)
    and/or `nodule_rows` (Store.nodules(series_key)). The store's rows, when there are any, give
    the findings (with the reader's decisions and edits); the analysis gives the models, SEG files
    and study assessment. `study` may add study_uid, series_uid, study_date (YYYYMMDD or ISO) and
    source_paths."""
    analysis = analysis or {}
    study = study or {}
    study_uid = study.get("study_uid") or analysis.get("study_uid")
    if not study_uid:
        raise ReportError("cannot draft a report without the study's UID: give the analysis JSON of the study "
                          "or a study found in the store")
    rows = list(nodule_rows or [])
    findings = [_finding_from_row(row) for row in rows] if rows else \
        [_finding_from_record(n, analysis) for n in analysis.get("nodules") or () if n.get("present", True)]
    findings.sort(key=lambda f: _id_order(f.record.get("id")))
    context = _Context(analysis, study, study_uid, tuple(findings))
    values: dict[str, FieldValue] = {}
    for f in template.fields:
        if f.type == "findings":
            continue
        value = None
        if f.prefill:
            value = FILLERS[f.prefill](context, f)
        if value is None and f.default is not None:
            value = FieldValue(f.default, f.unit)  # template boilerplate: as if typed
        if value is not None:
            value = replace(value, value=f.check(value.value), unit=f.unit)
            values[f.id] = value
    uses_findings = any(f.type == "findings" for f in template.fields)
    return Report(id=report_id or uuid.uuid4().hex, template_id=template.id, study_uid=study_uid,
                  series_uid=study.get("series_uid") or analysis.get("series_uid"), values=values,
                  findings=tuple(findings) if uses_findings else (),
                  seg_paths=tuple(str(p) for p in (analysis.get("outputs") or {}).get("seg") or ()),
                  source_paths=tuple(str(p) for p in study.get("source_paths") or ()),
                  template_version=template.version, ai_cautions=ai_cautions(analysis))


def ai_cautions(analysis: dict) -> tuple[str, ...]:
    """What the AI results of `analysis` must be read with: the models run outside their validated
    domain, with the reasons. Reads the analyze JSON's "domain" or, in what the store keeps of an
    analysis, each model entry's "domain"."""
    checks = (analysis.get("domain") or {}).get("checks")
    if checks is None:
        checks = [m["domain"] for m in analysis.get("models") or () if isinstance(m, dict) and m.get("domain")]
    summary = outside_summary(checks)
    return (summary,) if summary else ()


def _id_order(nodule_id: Any) -> tuple:
    """N2 before N11: the number in the id, then the id."""
    text = str(nodule_id or "")
    match = re.search(r"\d+", text)
    return (int(match.group()) if match else 1 << 30, text)


def _finding_from_row(row: dict) -> Finding:
    decision = (row.get("decision") or {}).get("decision")
    record = dict(row.get("current") or row["record"])
    ai = row.get("source") == "ai"
    provenance = Provenance(source="ai" if ai else "measured",
                            model_id=row.get("model_id") or None if ai else None,
                            model_version=row.get("model_version") or None if ai else None,
                            confidence=row.get("confidence"), decision=decision, nodule_id=row.get("id"),
                            tracking_uid=row.get("tracking_uid") or record.get("tracking_uid") or None)
    return Finding(record, provenance, confirmed=False, include=decision != "rejected")


def _finding_from_record(record: dict, analysis: dict) -> Finding:
    ai = record.get("source", "ai") == "ai"
    model_id = model_version = None
    if ai:
        models = (record.get("provenance") or {}).get("models") or analysis.get("models") or []
        if not models:
            raise ReportError(f"AI nodule {record.get('id')} names no model (provenance.models) and the analysis "
                              "lists none: its provenance cannot be kept")
        model_id, model_version = str(models[0]["id"]), str(models[0]["version"])
    score = (record.get("scores") or {}).get("detection")
    return Finding(dict(record), Provenance(source="ai" if ai else "measured", model_id=model_id,
                                            model_version=model_version,
                                            confidence=None if score is None else float(score),
                                            tracking_uid=record.get("tracking_uid") or None),
                   confirmed=False, include=True)


class _Context:
    def __init__(self, analysis: dict, study: dict, study_uid: str, findings: tuple[Finding, ...]):
        self.analysis, self.study, self.study_uid, self.findings = analysis, study, study_uid, findings
        self.included = [f for f in findings if f.include]
        self.models = _models(analysis, findings)

    def analysis_provenance(self) -> Provenance | None:
        """The AI as a whole (e.g. 'no nodules found'): its first model."""
        if not self.models:
            return None
        model_id, version = self.models[0]
        return Provenance(source="ai", model_id=model_id, model_version=version)


def _models(analysis: dict, findings: tuple[Finding, ...]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    entries = list(analysis.get("models") or [])
    for f in findings:
        entries += (f.record.get("provenance") or {}).get("models") or []
        if f.provenance.model_id:
            entries.append({"id": f.provenance.model_id, "version": f.provenance.model_version})
    for m in entries:
        pair = (str(m["id"]), str(m["version"]))
        if pair not in found:
            found.append(pair)
    return found


def _unconfirmed(value: Any, provenance: Provenance, unit: str | None = None) -> FieldValue:
    return FieldValue(value, unit, provenance, confirmed=False)


def _fill_count(c: _Context, f: TemplateField) -> FieldValue | None:
    ai = [x for x in c.included if x.provenance.source == "ai"]
    if ai:
        provenance = replace(ai[0].provenance, confidence=None, nodule_id=None, tracking_uid=None, decision=None)
    elif c.included:
        provenance = Provenance(source="measured")
    else:
        provenance = c.analysis_provenance()
        if provenance is None:
            return None  # nothing was analysed: the reader counts
    return _unconfirmed(float(len(c.included)), provenance)


def _fill_largest(c: _Context, f: TemplateField) -> FieldValue | None:
    sized = [x for x in c.included if x.record.get("mean_diameter_mm") is not None]
    if not sized:
        return None
    largest = max(sized, key=lambda x: float(x.record["mean_diameter_mm"]))
    return _unconfirmed(float(largest.record["mean_diameter_mm"]), largest.provenance)


def _lung_rads(c: _Context) -> tuple[dict, Provenance] | None:
    """The study's Lung-RADS: its most suspicious included nodule's category (each record's
    lung_rads already weighs growth against its prior); category 1 when the analysis found none."""
    rated = [x for x in c.included if isinstance(x.record.get("lung_rads"), dict)
             and x.record["lung_rads"].get("category") in CATEGORY_ORDER]
    if rated:
        worst = most_suspicious(rated, lambda x: x.record["lung_rads"]["category"])
        return worst.record["lung_rads"], worst.provenance
    assessment = c.analysis.get("assessment") or {}
    if not c.findings and "Lung-RADS" in str(assessment.get("guideline", "")) and assessment.get("category"):
        provenance = c.analysis_provenance()
        return (assessment, provenance) if provenance else None
    if not c.findings and assessment.get("proposed_category") and c.analysis_provenance():
        # "AI found no nodules": the AI's proposal, unconfirmed like every prefilled value.
        return {**assessment, "category": assessment["proposed_category"]}, c.analysis_provenance()
    if not c.findings and c.analysis.get("nodules") is not None and c.analysis_provenance():
        return ({"category": "1", "management": LUNG_RADS_MANAGEMENT["1"],
                 "rule": "AI found no nodules; category 1 pending reader review"},
                c.analysis_provenance())
    return None


def _part(find: Callable[[_Context], tuple[dict, Provenance] | None],
          key: str) -> Callable[[_Context, TemplateField], FieldValue | None]:
    """A field filler that takes `key` of what `find` (_lung_rads or _assessment) finds."""
    def fill(c: _Context, f: TemplateField) -> FieldValue | None:
        found = find(c)
        if found is None or not found[0].get(key):
            return None
        return _unconfirmed(str(found[0][key]), found[1])
    return fill


def _assessment(c: _Context) -> tuple[dict, Provenance] | None:
    """The analysis' study assessment (whatever guideline it used) while the nodule that decided it
    is still in the report; otherwise Lung-RADS from the included nodules."""
    assessment = c.analysis.get("assessment")
    if assessment and assessment.get("category"):
        deciding = [x for x in c.findings if x.record.get("id") == assessment.get("nodule")]
        if deciding and deciding[0].include:
            return assessment, deciding[0].provenance
        if not deciding and not c.findings and c.analysis_provenance():
            return assessment, c.analysis_provenance()
    found = _lung_rads(c)
    if found is None:
        return None
    return {"guideline": "Lung-RADS v2022", **found[0]}, found[1]


def _visit_dates(c: _Context) -> dict[str, str]:
    """Study UID -> date of every visit the nodules' histories name."""
    dates: dict[str, str] = {}
    for x in c.findings:
        for point in x.record.get("history") or ():
            if point.get("study_uid") and point.get("date"):
                dates.setdefault(point["study_uid"], str(point["date"]))
    return dates


def _fill_study_date(c: _Context, f: TemplateField) -> FieldValue | None:
    value = c.study.get("study_date") or _visit_dates(c).get(c.study_uid)
    if not value:
        return None
    return _unconfirmed(str(value), Provenance(source="dicom"))


def _fill_comparison(c: _Context, f: TemplateField) -> FieldValue | None:
    priors = sorted(d for uid, d in _visit_dates(c).items() if uid != c.study_uid)
    if priors:
        return _unconfirmed("CT chest " + ", ".join(priors), Provenance(source="dicom"))
    if c.analysis.get("longitudinal") is None and not c.analysis.get("nodules"):
        return None
    return _unconfirmed("None available.", Provenance(source="dicom"))


def _fill_models(c: _Context, f: TemplateField) -> FieldValue | None:
    if not c.models:
        return None
    return _unconfirmed("; ".join(f"{m} {v}" for m, v in c.models), c.analysis_provenance())


FILLERS: dict[str, Callable[[_Context, TemplateField], FieldValue | None]] = {
    "nodules": lambda c, f: None,  # the findings list itself, built above
    "nodules.count": _fill_count,
    "nodules.largest_mean_diameter_mm": _fill_largest,
    "lung_rads.category": _part(_lung_rads, "category"),
    "lung_rads.management": _part(_lung_rads, "management"),
    "lung_rads.rule": _part(_lung_rads, "rule"),
    "assessment.guideline": _part(_assessment, "guideline"),
    "assessment.category": _part(_assessment, "category"),
    "assessment.management": _part(_assessment, "management"),
    "study.date": _fill_study_date,
    "comparison": _fill_comparison,
    "ai.models": _fill_models,
}


# Values derived from the findings alone: re-derived when the reader rejects or restores a finding.
FINDING_SOURCES = ("nodules.count", "nodules.largest_mean_diameter_mm", "lung_rads.category",
                   "lung_rads.management", "lung_rads.rule")


def refill(report: Report, template: Template) -> Report:
    """The report with its still-unconfirmed, finding-derived values made again from its current
    findings (after the reader rejected or restored one), so a count or category never stays
    that of a finding the reader left out. Confirmed values and the reader's own are kept; a study
    assessment is redone (as Lung-RADS) only when the finding that decided it was rejected."""
    context = _Context({}, {}, report.study_uid, report.findings)
    rejected = {f.provenance.tracking_uid for f in report.findings if not f.include and f.provenance.tracking_uid}
    values = dict(report.values)
    for f in template.fields:
        current = values.get(f.id)
        if not f.prefill or f.type == "findings" or (current is not None and
                                                     (current.confirmed or current.provenance.source == "reader")):
            continue
        if f.prefill.startswith("assessment."):
            if current is None or current.provenance.tracking_uid not in rejected:
                continue
        elif f.prefill not in FINDING_SOURCES:
            continue
        value = FILLERS[f.prefill](context, f)
        if value is None:
            values.pop(f.id, None)
        else:
            values[f.id] = replace(value, value=f.check(value.value), unit=f.unit)
    return report.edited(values=values)
