"""Editing a draft report: the reader's edits and confirmations as plain functions on a Report
(checked against its template), and Drafts, which applies each one to the stored draft and saves
it in its own transaction, so nothing typed before the last handled edit is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from viewer.report.model import FieldValue, KeyImage, Provenance, Report, ReportError
from viewer.report.prefill import prefill, refill
from viewer.report.templates import Template, find_template

log = logging.getLogger(__name__)

FREE_TEXT = "free_text"


def set_field(report: Report, template: Template, field_id: str, value: Any) -> Report:
    """The reader's value for a field (or the report's free text), confirmed as typed. Changing a
    prefilled value keeps its provenance with the decision 'edited' ('accepted' if unchanged).
    None or blank text clears a choice, number or date field (see `clear_field`)."""
    if field_id == FREE_TEXT:
        if not isinstance(value, str):
            raise ReportError(f"report {report.key}: free text takes text; got {type(value).__name__}")
        return report.edited(free_text=value)
    field_ = _field(report, template, field_id)
    if field_.type in ("choice", "number", "date") and (value is None or isinstance(value, str) and not value.strip()):
        return clear_field(report, template, field_id)
    checked = field_.check(value)
    before = report.values.get(field_id)
    if before is not None and before.provenance.source != "reader":
        provenance = replace(before.provenance, decision="accepted" if before.value == checked else "edited")
    else:
        provenance = Provenance()
    return report.with_value(field_id, FieldValue(checked, field_.unit, provenance, confirmed=True))


def clear_field(report: Report, template: Template, field_id: str) -> Report:
    """The reader removes a field's value. A prefilled one stays as an empty value whose
    provenance says 'rejected', so the report still shows what the reader turned down."""
    _field(report, template, field_id)
    before = report.values.get(field_id)
    if before is None:
        return report
    if before.provenance.source == "reader":
        return report.without_value(field_id)
    return report.with_value(field_id, FieldValue(None, before.unit, replace(before.provenance, decision="rejected"),
                                                  confirmed=True))


def _field(report: Report, template: Template, field_id: str):
    if template.id != report.template_id:
        raise ReportError(f"report {report.key} uses template {report.template_id}, not {template.id}")
    try:
        return template.field(field_id)
    except ReportError:
        raise ReportError(f"report {report.key}: no field {field_id!r} in template {template.id}; its fields are "
                          f"{', '.join(f.id for f in template.fields if f.type != 'findings')} and {FREE_TEXT}") from None


def _finding_index(report: Report, target: str) -> int | None:
    name = target.removeprefix("finding ")
    for i, f in enumerate(report.findings):
        if str(f.record.get("id")) == name:
            return i
    return None


def confirm(report: Report, targets: Iterable[str] | None = None) -> Report:
    """Confirm prefilled values and findings: named field ids or finding ids ("N1" or "finding N1"),
    or everything still unconfirmed when `targets` is None. A confirmed AI value is 'accepted'
    unless the reader already decided otherwise; confirming a rejected finding puts it back."""
    values = dict(report.values)
    findings = list(report.findings)
    names = [t for t in report.unconfirmed] if targets is None else list(targets)
    for target in names:
        index = _finding_index(report, target)
        if target in values:
            v = values[target]
            values[target] = replace(v, confirmed=True, provenance=_accepted(v.provenance))
        elif index is not None:
            f = findings[index]
            provenance = f.provenance if f.include else replace(f.provenance, decision="accepted")
            findings[index] = replace(f, confirmed=True, include=True, provenance=_accepted(provenance))
        else:
            raise ReportError(f"report {report.key} has no field or finding {target!r} to confirm; unconfirmed: "
                              f"{', '.join(report.unconfirmed) or 'nothing'}")
    return report.edited(values=values, findings=tuple(findings))


def _accepted(p: Provenance) -> Provenance:
    return p if p.source == "reader" or p.decision is not None else replace(p, decision="accepted")


def reject_finding(report: Report, finding_id: str) -> Report:
    """Leave a finding out of the report (kept, include=False, decision 'rejected')."""
    index = _finding_index(report, finding_id)
    if index is None:
        raise ReportError(f"report {report.key} has no finding {finding_id!r}; its findings are "
                          f"{', '.join(str(f.record.get('id')) for f in report.findings) or 'none'}")
    findings = list(report.findings)
    f = findings[index]
    findings[index] = replace(f, include=False, confirmed=True, provenance=replace(f.provenance, decision="rejected"))
    return report.edited(findings=tuple(findings))


def add_key_image(report: Report, image: KeyImage) -> Report:
    return report.edited(key_images=report.key_images + (image,))


def missing_required(report: Report, template: Template) -> list[str]:
    """Required fields without a value (empty text counts as none)."""
    missing = []
    for f in template.fields:
        if not f.required or f.type == "findings":
            continue
        v = report.values.get(f.id)
        if v is None or v.value is None or (isinstance(v.value, str) and not v.value.strip()):
            missing.append(f.id)
    return missing


def check_ready_to_sign(report: Report, template: Template) -> None:
    """ReportError listing what stops signing: unconfirmed values or findings, missing required fields."""
    problems = []
    if report.unconfirmed:
        problems.append(f"unconfirmed: {', '.join(report.unconfirmed)} (confirm them or edit them)")
    missing = missing_required(report, template)
    if missing:
        problems.append(f"required but empty: {', '.join(missing)}")
    if report.status != "draft":
        problems.append(f"status is {report.status}")
    if problems:
        raise ReportError(f"report {report.key} cannot be signed yet: " + "; ".join(problems))


class Drafts:
    """Draft editing on a Store: each call loads the latest version, applies one edit and saves it
    in one committed transaction (audited with the field names, never the values)."""

    def __init__(self, store, user: str | None = None):
        self.store, self.user = store, user
        self._templates: dict[str, Template] = {}

    def create(self, template: Template, analysis: dict | None = None, nodule_rows: list[dict] | None = None,
               study: dict | None = None) -> Report:
        report = prefill(template, analysis, nodule_rows=nodule_rows, study=study)
        self.store.save_draft(report, user=self.user, detail=f"template {template.id} {template.version}")
        log.info("report %s drafted from template %s (%d findings, %d unconfirmed)", report.key, template.id,
                 len(report.findings), len(report.unconfirmed))
        return report

    def template(self, report: Report) -> Template:
        """The report's template, read once per Drafts (an editor saves on every keystroke)."""
        if report.template_id not in self._templates:
            self._templates[report.template_id] = find_template(report.template_id)
        return self._templates[report.template_id]

    def _apply(self, report_id: str, edit: Callable[[Report], Report], detail: str, action: str = "edited") -> Report:
        report = self.store.report(report_id)
        if report.status == "signed":
            raise ReportError(f"report {report.key} is signed and cannot change; amend it instead")
        changed = edit(report)
        self.store.save_draft(changed, user=self.user, detail=detail, action=action)
        log.info("report %s: %s", changed.key, detail)
        return changed

    def set(self, report_id: str, field_id: str, value: Any) -> Report:
        return self._apply(report_id, lambda r: set_field(r, self.template(r), field_id, value), f"set {field_id}")

    def confirm(self, report_id: str, targets: Iterable[str] | None = None) -> Report:
        targets = None if targets is None else list(targets)
        detail = "confirmed all" if targets is None else "confirmed " + ", ".join(targets)
        # Confirming a rejected finding puts it back: unconfirmed counts and categories follow.
        return self._apply(report_id, lambda r: refill(confirm(r, targets), self.template(r)), detail,
                           action="confirmed")

    def reject(self, report_id: str, finding_id: str) -> Report:
        """Leave a finding out; counts and categories not yet confirmed follow (prefill.refill)."""
        return self._apply(report_id, lambda r: refill(reject_finding(r, finding_id), self.template(r)),
                           f"rejected finding {finding_id}")

    def add_key_image(self, report_id: str, image: KeyImage) -> Report:
        return self._apply(report_id, lambda r: add_key_image(r, image), "added key image")


__all__ = [
    "FREE_TEXT",
    "Drafts",
    "add_key_image",
    "check_ready_to_sign",
    "confirm",
    "missing_required",
    "reject_finding",
    "set_field",
]
