"""Signing a report: the reader's confirmation made final. A signed version is frozen (the model
refuses edits); what the signature covers cryptographically is carried by the exports (the SR's
PS3.15 signature, the PDF's PAdES signature), which name the same signer and time."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from viewer.report.identity import Identity, check_validity
from viewer.report.model import Report, ReportError


def sign_report(report: Report, identity: Identity, at: dt.datetime | None = None) -> Report:
    """A signed, read-only copy of `report`: signer = the certificate's common name, signed_at =
    `at` (default now) in UTC ISO 8601. Refused while any value or finding is unconfirmed, for a
    version already signed, and when the certificate is not valid at `at`."""
    if report.status == "signed":
        raise ReportError(f"report {report.key} is already signed by {report.signer} at {report.signed_at}; "
                          "amend it to change anything")
    pending = report.unconfirmed
    if pending:
        raise ReportError(f"report {report.key} has {len(pending)} unconfirmed value(s): {', '.join(pending)}; "
                          "confirm, edit or reject each before signing")
    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    problem = check_validity(identity.certificate, at)
    if problem:
        raise ReportError(f"cannot sign report {report.key} with {identity.path or identity.common_name}: {problem}")
    return replace(report, status="signed", signer=identity.common_name, signed_at=at.isoformat())
