"""Reports, approved patient summaries and the audit log in the local database (migrations 5
and 6), as methods of Store.

Every save is one committed transaction (the database is in WAL mode with synchronous=FULL), so a
draft survives the process being killed at any moment after a save returns. A signed version is
read-only: the store refuses to save over it (and a trigger refuses it below the store too); an
amendment is a new draft version chained to the signed one.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from viewer.report.model import Report, ReportError, version_key
from viewer.store import audit_chain

AUDIT_ACTIONS = ("created", "opened", "edited", "confirmed", "signed", "amended", "exported", "verified")
# Keystrokes on one field within this time are one "edited" audit row, not one row per keystroke.
AUDIT_COALESCE = timedelta(seconds=60)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReportStore:
    """Store's report and audit methods; needs `self.db` (sqlite3) and `self.path`."""

    db: sqlite3.Connection
    path: Path

    def save_draft(self, report: Report, user: str | None = None, detail: str = "", action: str = "edited") -> Report:
        """Insert or update a draft version; audited as 'created', or as `action` ('edited' or
        'confirmed') for a stored draft; `detail` names the fields, never their values. Refused for
        a signed version."""
        if action not in ("edited", "confirmed"):
            raise ValueError(f"a draft save is audited as edited or confirmed; got {action!r}")
        if report.status != "draft":
            raise ReportError(f"report {report.key} has status {report.status}: only drafts are saved; a signed "
                              "version is stored once, by store_signed")
        with self.db:
            row = self.db.execute("SELECT status FROM reports WHERE id = ? AND version = ?",
                                  (report.id, report.version)).fetchone()
            if row is not None and row[0] == "signed":
                raise ReportError(f"report {report.key} is signed in {self.path} and cannot change; amend it instead")
            if row is None and report.version > 1 and not self._has_signed(report.id, report.version - 1):
                raise ReportError(f"report {report.key} is an amendment but {version_key(report.id, report.version - 1)} "
                                  f"is not a signed version in {self.path}: amend a signed report with Store.amend")
            text = json.dumps(report.to_json(), sort_keys=True)
            if row is None:
                self.db.execute("INSERT INTO reports(id, version, status, template, study_uid, json, predecessor) "
                                "VALUES (?, ?, 'draft', ?, ?, ?, ?)",
                                (report.id, report.version, report.template_id, report.study_uid, text,
                                 report.predecessor_id))
            else:
                self.db.execute("UPDATE reports SET json = ?, template = ?, study_uid = ?, "
                                "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ? AND version = ?",
                                (text, report.template_id, report.study_uid, report.id, report.version))
            self._audit("created" if row is None else action, report.id, report.version, report.study_uid,
                        detail, user, coalesce=row is not None)
        return report

    def _has_signed(self, report_id: str, version: int) -> bool:
        return self.db.execute("SELECT 1 FROM reports WHERE id = ? AND version = ? AND status = 'signed'",
                               (report_id, version)).fetchone() is not None

    def report(self, report_id: str, version: int | None = None) -> Report:
        """A stored version (the latest when `version` is None)."""
        if version is None:
            row = self.db.execute("SELECT json FROM reports WHERE id = ? ORDER BY version DESC LIMIT 1",
                                  (report_id,)).fetchone()
        else:
            row = self.db.execute("SELECT json FROM reports WHERE id = ? AND version = ?",
                                  (report_id, version)).fetchone()
        if row is None:
            which = f"report {report_id}" + (f" version {version}" if version is not None else "")
            raise ReportError(f"no {which} in {self.path}; `radsight report list` shows the stored reports")
        return Report.from_json(json.loads(row[0]))

    def open_report(self, report_id: str, version: int | None = None, user: str | None = None) -> Report:
        """As report(), audited as 'opened'."""
        report = self.report(report_id, version)
        self.audit("opened", report, user=user)
        return report

    def report_versions(self, report_id: str) -> list[Report]:
        """Every version of a report, oldest first."""
        rows = self.db.execute("SELECT json FROM reports WHERE id = ? ORDER BY version", (report_id,)).fetchall()
        if not rows:
            raise ReportError(f"no report {report_id} in {self.path}")
        return [Report.from_json(json.loads(r[0])) for r in rows]

    def reports(self, study_uid: str | None = None) -> list[dict]:
        """One line per report version: id, version, status, template, study_uid, predecessor, times."""
        sql = ("SELECT id, version, status, template, study_uid, predecessor, created_at, updated_at FROM reports"
               + (" WHERE study_uid = ?" if study_uid else "") + " ORDER BY created_at, id, version")
        keys = ("id", "version", "status", "template", "study_uid", "predecessor", "created_at", "updated_at")
        return [dict(zip(keys, row)) for row in self.db.execute(sql, (study_uid,) if study_uid else ())]

    def store_signed(self, signed: Report, user: str | None = None) -> Report:
        """Freeze a signed version over its stored draft (read-only from now on). The signed
        content must be the stored draft's: what was reviewed is what was signed."""
        if signed.status != "signed" or not signed.signer or not signed.signed_at:
            raise ReportError(f"report {signed.key} is not signed (status {signed.status}, signer {signed.signer!r}): "
                              "sign it with viewer.report.signing.sign_report first")
        with self.db:
            row = self.db.execute("SELECT status, json FROM reports WHERE id = ? AND version = ?",
                                  (signed.id, signed.version)).fetchone()
            if row is None:
                raise ReportError(f"report {signed.key} has no stored draft in {self.path}: save the draft, then sign it")
            if row[0] == "signed":
                raise ReportError(f"report {signed.key} is already signed in {self.path}; amend it instead")
            draft = Report.from_json(json.loads(row[1]))
            changed = [name for name in ("template_id", "study_uid", "values", "findings", "key_images", "free_text",
                                         "predecessor_id", "amendment_reason")
                       if getattr(draft, name) != getattr(signed, name)]
            if changed:
                raise ReportError(f"report {signed.key}: the signed content differs from the stored draft in "
                                  f"{', '.join(changed)}; sign the stored draft")
            self.db.execute("UPDATE reports SET status = 'signed', json = ?, "
                            "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ? AND version = ?",
                            (json.dumps(signed.to_json(), sort_keys=True), signed.id, signed.version))
            self._audit("signed", signed.id, signed.version, signed.study_uid, f"signer {signed.signer}", user)
        return signed

    def amend(self, report_id: str, reason: str, user: str | None = None) -> Report:
        """A new draft version of a signed report, chained to it; the signed version stays as it was."""
        if not reason or not reason.strip():
            raise ReportError(f"amending report {report_id} needs a reason (what is corrected and why)")
        latest = self.report(report_id)
        if latest.status != "signed":
            raise ReportError(f"report {latest.key} is a draft: edit it; only a signed report is amended")
        data = latest.to_json()
        data.update(version=latest.version + 1, status="draft", predecessor_id=latest.key,
                    amendment_reason=reason.strip(), signer=None, signed_at=None)
        amendment = Report.from_json(data)
        with self.db:
            self.db.execute("INSERT INTO reports(id, version, status, template, study_uid, json, predecessor) "
                            "VALUES (?, ?, 'draft', ?, ?, ?, ?)",
                            (amendment.id, amendment.version, amendment.template_id, amendment.study_uid,
                             json.dumps(amendment.to_json(), sort_keys=True), amendment.predecessor_id))
            self._audit("amended", amendment.id, amendment.version, amendment.study_uid, f"amends {latest.key}", user)
        return amendment

    def save_summary(self, summary, user: str | None = None, detail: str = "") -> None:
        """Keep an approved patient summary (viewer.report.summary.SummaryApproval) of a signed
        version; a later approval of the same version replaces the text. Audited as 'exported'."""
        if not summary.approved:
            raise ReportError(f"the patient summary of report {summary.report_id} is not approved: "
                              "only an approved summary is kept for the patient")
        report = self.report(summary.report_id, summary.report_version)
        if report.status != "signed":
            raise ReportError(f"report {report.key} is a draft: the patient summary is made from signed findings only")
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO patient_summaries(report_id, report_version, json, approved_at) "
                            "VALUES (?, ?, ?, ?)", (summary.report_id, summary.report_version,
                                                    json.dumps(summary.to_json(), sort_keys=True), summary.approved_at))
            self._audit("exported", report.id, report.version, report.study_uid,
                        detail or f"patient summary approved by {summary.approver}", user)

    def approved_summary(self, report_id: str, version: int):
        """The approved patient summary of a report version, or None."""
        from viewer.report.summary import SummaryApproval

        row = self.db.execute("SELECT json FROM patient_summaries WHERE report_id = ? AND report_version = ?",
                              (report_id, version)).fetchone()
        return None if row is None else SummaryApproval.from_json(json.loads(row[0]))

    def audit(self, action: str, report: Report | None = None, *, study_uid: str | None = None, detail: str = "",
              user: str | None = None) -> None:
        """Append one audit row (action on a report version, or on a study)."""
        with self.db:
            self._audit(action, report.id if report else None, report.version if report else None,
                        study_uid or (report.study_uid if report else None), detail, user)

    def _audit(self, action: str, report_id: str | None, version: int | None, study_uid: str | None,
               detail: str, user: str | None, coalesce: bool = False) -> None:
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"audit action must be one of {', '.join(AUDIT_ACTIONS)}; got {action!r}")
        user = user or getpass.getuser()
        now = _now()
        if coalesce:
            last = self.db.execute("SELECT action, user, detail, at FROM audit_log WHERE report_id = ? AND "
                                   "report_version = ? ORDER BY id DESC LIMIT 1", (report_id, version)).fetchone()
            if last is not None and last[:3] == (action, user, detail) and \
                    now - datetime.fromisoformat(last[3]) < AUDIT_COALESCE:
                return
        values = (_iso(now), user, action, report_id, version, study_uid, detail)
        # The previous row's hash is read inside the INSERT: one statement, so no other writer slips in between.
        self.db.execute("INSERT INTO audit_log(at, user, action, report_id, report_version, study_uid, detail, hash) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, audit_link((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), ?))",
                        (*values, audit_chain.content(values)))

    def audit_log(self, report_id: str | None = None, study_uid: str | None = None) -> list[dict]:
        """Audit rows, oldest first, optionally of one report or one study."""
        where, params = [], []
        if report_id:
            where.append("report_id = ?")
            params.append(report_id)
        if study_uid:
            where.append("study_uid = ?")
            params.append(study_uid)
        sql = ("SELECT at, user, action, report_id, report_version, study_uid, detail FROM audit_log"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
        keys = ("at", "user", "action", "report_id", "report_version", "study_uid", "detail")
        return [dict(zip(keys, row)) for row in self.db.execute(sql, params)]
