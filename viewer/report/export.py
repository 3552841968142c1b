"""Writing a stored report version as a DICOM SR or PDF, as `radsight report sign|export` and the
viewer's Report panel both do, so the two write the same files and audit them the same way.

`write_export` only writes (safe in a worker thread); `export_signed` writes and audits in the
store's thread (a SQLite connection stays in the thread that opened it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from viewer.report.model import Report, ReportError
from viewer.report.summary import check_released
from viewer.report.templates import Template, find_template

FORMATS = {"sr": "-sr.dcm", "pdf": ".pdf"}


def default_name(report: Report, fmt: str) -> str:
    """The file name `radsight report sign` gives a version's SR or PDF."""
    if fmt not in FORMATS:
        raise ReportError(f"report {report.key}: no export format {fmt!r} (known: {', '.join(FORMATS)})")
    return f"report-{report.id}-v{report.version}{FORMATS[fmt]}"


def pdf_sections(template: Template) -> list[tuple[str, list[tuple[str, str]]]]:
    """The PDF's sections: the template's, each with its (field id, label) pairs; findings have their own table."""
    return [(s.title, [(f.id, f.label) for f in s.fields if f.type != "findings"]) for s in template.sections]


def write_export(report: Report, fmt: str, out: Path | str, identity=None, charts: Sequence = ()) -> Path:
    """Write `report` as SR ("sr") or PDF ("pdf") to `out`, signed with `identity` when given."""
    out = Path(out)
    if fmt == "sr":
        from viewer.report.sr import write_sr

        source = report.source_paths[0] if report.source_paths and Path(report.source_paths[0]).exists() else None
        return Path(write_sr(report, out, identity=identity, source_dir=source))
    if fmt == "pdf":
        from viewer.report.pdf import write_pdf

        template = find_template(report.template_id)
        return Path(write_pdf(report, out, identity=identity, charts=tuple(charts), title=template.title,
                              sections=pdf_sections(template)))
    raise ReportError(f"report {report.key}: no export format {fmt!r} (known: {', '.join(FORMATS)})")


def audit_export(store, report: Report, fmt: str, path: Path | str, user: str | None = None) -> None:
    """The 'exported' audit row: format and file name only (the folder may name the patient)."""
    store.audit("exported", report, detail=f"{fmt} {Path(path).name}", user=user)


def export_signed(store, report: Report, fmt: str, out: Path | str, identity, charts: Sequence = (),
                  user: str | None = None) -> Path:
    """One export of a stored version, written then audited as 'exported'."""
    path = write_export(report, fmt, out, identity, charts)
    audit_export(store, report, fmt, path, user=user)
    return path


__all__ = ["FORMATS", "audit_export", "default_name", "export_signed", "pdf_sections", "write_export"]


def summary_name(report: Report) -> str:
    """The file an approved patient summary is written to, next to the signed PDF."""
    return default_name(report, "pdf").removesuffix(".pdf") + "-summary.txt"


def release_summary(store, report: Report, approval, out: Path | str, user: str | None = None) -> Path:
    """Release an approved patient summary (viewer.report.summary.SummaryApproval) of a signed
    version: its text written to `out` and the approval kept in the store, audited, which is what
    consultation mode reads. The Report panel, `radsight report export --format summary
    --approve` and the demo all release summaries this way."""
    check_released(approval, report)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(approval.text + "\n", encoding="utf-8")
    store.save_summary(approval, user=user, detail=f"patient summary {out.name}, approved by {approval.approver}")
    return out
