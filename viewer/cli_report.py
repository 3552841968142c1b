"""`radsight report ...`: draft a structured report from a study's results, edit and confirm it,
sign it (SR and PDF with their signatures), amend it, verify a signed file and export.

Reports live in the local database (viewer.store), so every command names a report by its id;
every change is audited there. Nothing here prints or logs patient names or IDs.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import os
import sys
from pathlib import Path

from viewer.core.errors import RadSightError

PASSWORD_ENV = "RADSIGHT_IDENTITY_PASSWORD"


def _emit(data, as_json: bool, human) -> None:
    from viewer.cli import _emit as emit

    emit(data, as_json, human)


def _module(name: str, what: str):
    """An export or signing module, imported when first needed; a clear error if this build lacks it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise RadSightError(f"{what} is not available: module {name} is missing from this RadSight build") from None
        raise


def _store():
    from viewer.store import Store

    return Store()


def _summary(report, template=None) -> dict:
    from viewer.report.drafts import missing_required

    data = {"id": report.id, "version": report.version, "key": report.key, "status": report.status,
            "template": report.template_id, "study_uid": report.study_uid,
            "findings": sum(1 for f in report.findings if f.include),
            "rejected_findings": sum(1 for f in report.findings if not f.include),
            "unconfirmed": _in_template_order(report.unconfirmed, template)}
    if template is not None:
        data["missing_required"] = missing_required(report, template)
    if report.predecessor_id:
        data.update(predecessor=report.predecessor_id, amendment_reason=report.amendment_reason)
    if report.status == "signed":
        data.update(signer=report.signer, signed_at=report.signed_at)
    return data


def _in_template_order(names: list[str], template) -> list[str]:
    if template is None:
        return names
    order = {f.id: i for i, f in enumerate(template.fields)}
    return sorted(names, key=lambda n: order.get(n, len(order)))  # stable: findings keep their order


def _print_summary(d: dict) -> None:
    print(f"report {d['id']} version {d['version']} ({d['status']}, template {d['template']}): "
          f"{d['findings']} findings" + (f", {d['rejected_findings']} rejected" if d["rejected_findings"] else ""))
    if d["unconfirmed"]:
        print(f"  to confirm: {', '.join(d['unconfirmed'])}")
    if d.get("missing_required"):
        print(f"  required, still empty: {', '.join(d['missing_required'])}")
    if d.get("signer"):
        print(f"  signed by {d['signer']} at {d['signed_at']}"
              + (" (demo identity: not for clinical use)" if d.get("demo_identity") else ""))


def _pick_series(series_list, series_key: str | None):
    if series_key:
        for s in series_list:
            if s.key == series_key or s.first.series_uid == series_key:
                return s
    images = [s for s in series_list if s.first.modality in ("CT", "MR")] or list(series_list)
    return max(images, key=lambda s: len(s.records)) if images else None


def cmd_report_draft(args) -> int:
    from viewer.dicom import open_path
    from viewer.report.drafts import Drafts
    from viewer.report.templates import CT_CHEST, LUNG_SCREENING, find_template

    study_path = Path(args.study)
    if not study_path.exists():
        raise RadSightError(f"{study_path}: no such study folder or file")
    analysis = None
    if args.analysis:
        try:
            analysis = json.loads(Path(args.analysis).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RadSightError(f"{args.analysis}: cannot read the analysis JSON ({exc}); write it with "
                                "`radsight analyze STUDY --json > FILE`") from None
        if not isinstance(analysis, dict) or "nodules" not in analysis:
            raise RadSightError(f"{args.analysis}: not a `radsight analyze --json` object (no 'nodules' list)")
    series_list, result = open_path(study_path)
    series = _pick_series(series_list, (analysis or {}).get("series_key"))
    if series is None:
        raise RadSightError(f"{study_path}: no image series found ({len(result.problems)} unreadable files)")
    if analysis and analysis.get("study_uid") and analysis["study_uid"] != series.first.study_uid:
        raise RadSightError(f"{args.analysis} is the analysis of study {analysis['study_uid']}, not of the study in "
                            f"{study_path} ({series.first.study_uid}): give the matching analysis")
    with _store() as store:
        store.import_scan(series_list, result)
        rows = store.nodules(series.key)
        if analysis is None:
            segs = [r["path"] for r in store.results(series.key) if r["kind"] == "seg"]
            analysis = {"outputs": {"seg": segs[-1:]}} if segs else None
        if not rows and not (analysis and analysis.get("nodules") is not None):
            print(f"radsight report: warning: no stored nodules or analysis for series {series.key}: the draft "
                  "holds only the template's defaults (run `radsight analyze` first to prefill it)", file=sys.stderr)
        guideline = str(((analysis or {}).get("assessment") or {}).get("guideline", ""))
        template = find_template(args.template or (CT_CHEST if "Fleischner" in guideline else LUNG_SCREENING))
        study = {"study_uid": series.first.study_uid, "series_uid": series.first.series_uid,
                 "study_date": series.first.study_date or None, "source_paths": [str(study_path.resolve())]}
        report = Drafts(store).create(template, analysis, nodule_rows=rows, study=study)
    _emit(_summary(report, template), args.json, _print_summary)
    return 0


def cmd_report_show(args) -> int:
    from viewer.report.templates import find_template

    with _store() as store:
        report = store.open_report(args.id, args.version)
        versions = [{"version": r.version, "status": r.status, "signer": r.signer, "signed_at": r.signed_at}
                    for r in store.report_versions(args.id)]
    template = find_template(report.template_id)
    data = {**report.to_json(), **_summary(report, template), "versions": versions}

    def human(d):
        _print_summary(d)
        for f in template.fields:
            if f.type == "findings":
                for finding in report.findings:
                    r, p = finding.record, finding.provenance
                    state = "rejected" if not finding.include else ("confirmed" if finding.confirmed else "UNCONFIRMED")
                    print(f"  {r.get('id')}: {r.get('type')} {r.get('mean_diameter_mm')} mm, {r.get('volume_mm3')} mm3 "
                          f"[{p.source}{' ' + p.model_id if p.model_id else ''}, {state}]")
                continue
            v = report.values.get(f.id)
            if v is None or v.value is None:
                continue
            unit = f" {v.unit}" if v.unit else ""
            shown = f"{v.value:g}" if isinstance(v.value, float) else v.value
            mark = "" if v.confirmed and v.provenance.source == "reader" else \
                f" [{v.provenance.source}{', unconfirmed' if not v.confirmed else ''}]"
            print(f"  {f.label}: {shown}{unit}{mark}")
        if report.free_text:
            print(f"  Free text: {report.free_text}")

    _emit(data, args.json, human)
    return 0


def _edited(report, args, extra: dict | None = None) -> int:
    from viewer.report.templates import find_template

    _emit({**_summary(report, find_template(report.template_id)), **(extra or {})}, args.json, _print_summary)
    return 0


def cmd_report_set(args) -> int:
    from viewer.report.drafts import Drafts

    with _store() as store:
        report = Drafts(store).set(args.id, args.field, args.value)
    value = report.free_text if args.field == "free_text" else report.values[args.field].value
    return _edited(report, args, {"field": args.field, "value": value})


def cmd_report_confirm(args) -> int:
    from viewer.report.drafts import Drafts

    if bool(args.targets) == bool(args.all):
        raise RadSightError("report confirm needs FIELD or FINDING ids, or --all (not both)")
    with _store() as store:
        report = Drafts(store).confirm(args.id, None if args.all else args.targets)
    return _edited(report, args)


def cmd_report_reject(args) -> int:
    from viewer.report.drafts import Drafts

    with _store() as store:
        report = Drafts(store).reject(args.id, args.finding)
    return _edited(report, args)


def cmd_report_amend(args) -> int:
    with _store() as store:
        report = store.amend(args.id, args.reason)
    return _edited(report, args)


def _password(args) -> str | None:
    if getattr(args, "password_file", None):
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise RadSightError(f"{args.password_file}: cannot read the password file ({exc.strerror})") from None
    if os.environ.get(PASSWORD_ENV) is not None:
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return getpass.getpass(f"password of {args.identity}: ")
    return None


def _identity(args):
    if not getattr(args, "identity", None):
        return None
    identity = _module("viewer.report.identity", "signing identities")
    return identity.load_identity(args.identity, _password(args))


# viewer/cli.py imports this name; the writing and auditing live in viewer.report.export, shared with the viewer.
def _default_out(report, suffix: str) -> Path:
    from viewer.store import user_data_dir

    return user_data_dir() / "reports" / f"report-{report.id}-v{report.version}{suffix}"


def cmd_report_sign(args) -> int:
    from viewer.report.drafts import check_ready_to_sign
    from viewer.report.export import export_signed
    from viewer.report.templates import find_template

    signing = _module("viewer.report.signing", "report signing")
    identity = _identity(args)
    out_dir = Path(args.out) if args.out else None
    with _store() as store:
        report = store.report(args.id)
        check_ready_to_sign(report, find_template(report.template_id))
        signed = store.store_signed(signing.sign_report(report, identity))
        outputs = {}
        for fmt, suffix in (("sr", "-sr.dcm"), ("pdf", ".pdf")):
            target = out_dir / f"report-{signed.id}-v{signed.version}{suffix}" if out_dir else _default_out(signed, suffix)
            outputs[fmt] = str(export_signed(store, signed, fmt, target, identity, args.chart or ()))
    return _edited(signed, args, {"outputs": outputs, "demo_identity": identity.is_demo})


def cmd_report_verify(args) -> int:
    path = Path(args.file)
    try:
        head = path.read_bytes()[:132]
    except OSError as exc:
        raise RadSightError(f"{path}: cannot read the file ({exc.strerror})") from None
    if head.startswith(b"%PDF"):
        pdf = _module("viewer.report.pdf", "PDF verification")
        verify = getattr(pdf, "verify_pdf", None) or _module("viewer.report.pdf_signature", "PDF verification").verify_pdf
        data = verify(path)
    elif head[128:132] == b"DICM":
        data = _module("viewer.report.sr", "DICOM SR verification").verify_sr(path)
    else:
        raise RadSightError(f"{path}: neither a PDF (starts with %PDF) nor a DICOM file (DICM at byte 128); "
                            "give a signed SR or PDF that `radsight report sign` wrote")
    data = {"file": str(path), **data}

    def human(d):
        if d["valid"]:
            print(f"{d['file']}: valid, signed by {d['signer']} at {d['signed_at']}")
        else:
            print(f"{d['file']}: NOT VALID")
            for problem in d["problems"]:
                print(f"  {problem}")

    _emit(data, args.json, human)
    return 0 if data["valid"] else 1


def cmd_report_export(args) -> int:
    from viewer.report.export import export_signed

    identity = _identity(args)
    out = Path(args.out)
    with _store() as store:
        report = store.report(args.id, args.version)
        if args.format == "summary":
            if report.status != "signed":
                raise RadSightError(f"report {report.key} is a draft: the patient summary is made from signed "
                                    "findings only; sign the report first")
            summary = _module("viewer.report.summary", "the patient summary")
            text = summary.patient_summary(report)
            data = {**_summary(report), "format": "summary", "text": text, "approved": bool(args.approve)}
            if args.approve:
                from viewer.report.export import release_summary

                approval = summary.approve_summary(summary.draft_summary(report), approver=report.signer)
                data["out"] = str(release_summary(store, report, approval, out))
            _emit(data, args.json, lambda d: print(d["text"] + ("" if d["approved"] else
                  "\n\n(not released: review the text, then run again with --approve to write it)")))
            return 0
        if report.status == "signed" and identity is None:
            raise RadSightError(f"report {report.key} is signed by {report.signer}: its {args.format.upper()} carries "
                                "the signature, so give the signer's --identity FILE.p12")
        path = export_signed(store, report, args.format, out, identity if report.status == "signed" else None,
                      args.chart or ())
    return _edited(report, args, {"format": args.format, "out": str(path)})


def cmd_report_list(args) -> int:
    with _store() as store:
        rows = store.reports(args.study)
    _emit(rows, args.json, lambda d: [print(f"{r['id']} v{r['version']} {r['status']} {r['template']} "
                                            f"{r['updated_at']}") for r in d] or print("no reports stored"))
    return 0


def cmd_report_log(args) -> int:
    with _store() as store:
        rows = store.audit_log(report_id=args.id)
    _emit(rows, args.json, lambda d: [print(f"{r['at']} {r['user']} {r['action']} v{r['report_version']} "
                                            f"{r['detail']}") for r in d])
    return 0


def cmd_report_templates_import(args) -> int:
    from viewer.report.mrrt import import_mrrt
    from viewer.report.templates import template_dirs

    if not Path(args.file).is_file():
        raise RadSightError(f"{args.file}: no such template file")
    template, notes = import_mrrt(args.file, template_dirs()[1], args.id)
    data = {"id": template.id, "title": template.title, "path": template.path,
            "sections": len(template.sections), "fields": len(template.fields), "notes": notes}

    def human(d: dict) -> None:
        print(f"{d['id']}: {d['title']} ({d['fields']} fields in {d['sections']} sections) -> {d['path']}")
        for note in d["notes"]:
            print(f"  note: {note}")

    _emit(data, args.json, human)
    return 0


def cmd_report_templates_list(args) -> int:
    from viewer.report.templates import TEMPLATE_DIR, available_templates

    data = [{"id": t.id, "title": t.title, "version": t.version, "fields": len(t.fields), "path": t.path,
             "bundled": t.path is not None and Path(t.path).parent == TEMPLATE_DIR}
            for t in sorted(available_templates().values(), key=lambda t: t.id)]
    _emit(data, args.json, lambda d: [print(f"{t['id']}  {t['title']} (v{t['version']}, {t['fields']} fields"
                                            f"{', bundled' if t['bundled'] else ''})") for t in d])
    return 0


def add_report_parser(sub) -> None:
    """The `report` subcommand group of `radsight`."""
    p = sub.add_parser("report", help="structured reports: draft, edit, confirm, sign, amend, verify, export")
    reports = p.add_subparsers(dest="report_command", required=True)

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        c = reports.add_parser(name, help=help)
        c.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        c.set_defaults(func=func)
        return c

    t = reports.add_parser("templates", help="report templates: list them, import IHE MRRT (RadReport) templates")
    templates = t.add_subparsers(dest="templates_command", required=True)
    c = templates.add_parser("list", help="bundled and user templates")
    c.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    c.set_defaults(func=cmd_report_templates_list)
    c = templates.add_parser("import", help="an IHE MRRT template (HTML5, as RSNA RadReport publishes them) "
                                            "into the user templates folder")
    c.add_argument("file", help="the MRRT .html file")
    c.add_argument("--id", help="template id to use (default: mrrt- and the template's identifier)")
    c.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    c.set_defaults(func=cmd_report_templates_import)
    c = command("draft", cmd_report_draft, "a draft report of a study, prefilled from its stored nodules or analysis")
    c.add_argument("study", help="the study folder (imported into the local index)")
    c.add_argument("--analysis", help="a `radsight analyze --json` output of the study")
    c.add_argument("--template", help="template id (default: Lung-RADS screening, or CT chest for Fleischner)")
    c = command("show", cmd_report_show, "a report's fields, findings and what still waits for confirmation")
    c.add_argument("id")
    c.add_argument("--version", type=int, help="a given version (default: the latest)")
    c = command("set", cmd_report_set, "the reader's value for a field (or free_text); confirms it")
    c.add_argument("id")
    c.add_argument("field")
    c.add_argument("value")
    c = command("confirm", cmd_report_confirm, "confirm prefilled values or findings")
    c.add_argument("id")
    c.add_argument("targets", nargs="*", help="field ids and finding ids (N1, ...)")
    c.add_argument("--all", action="store_true", help="everything still unconfirmed")
    c = command("reject", cmd_report_reject, "leave a finding out of the report (kept for the audit trail)")
    c.add_argument("id")
    c.add_argument("finding", help="finding id, e.g. N3")
    c = command("sign", cmd_report_sign, "sign the report and write its signed SR and PDF")
    c.add_argument("id")
    c.add_argument("--identity", required=True, help="the signer's PKCS#12 file (.p12)")
    c.add_argument("--password-file", help=f"file holding the identity's password (else ${PASSWORD_ENV}, else asked)")
    c.add_argument("--out", help="folder for the SR and PDF (default: the user data folder/reports)")
    c.add_argument("--chart", action="append", help="a picture (PNG) for the PDF, e.g. a growth chart (repeatable)")
    c = command("amend", cmd_report_amend, "a new draft version of a signed report, chained to it")
    c.add_argument("id")
    c.add_argument("--reason", required=True, help="what the amendment corrects and why")
    c = command("verify", cmd_report_verify, "check a signed SR or PDF; exit 0 only if valid")
    c.add_argument("file")
    c = command("export", cmd_report_export, "write a report version as SR, PDF or patient summary")
    c.add_argument("id")
    c.add_argument("--format", required=True, choices=["sr", "pdf", "summary"])
    c.add_argument("--out", required=True, help="the file to write")
    c.add_argument("--version", type=int, help="a given version (default: the latest)")
    c.add_argument("--identity", help="the signer's PKCS#12 file: a signed report's SR and PDF carry the signature")
    c.add_argument("--password-file", help=f"file holding the identity's password (else ${PASSWORD_ENV}, else asked)")
    c.add_argument("--chart", action="append", help="a picture (PNG) for the PDF (repeatable)")
    c.add_argument("--approve", action="store_true", help="summary: the reader has read it and releases it")
    c = command("list", cmd_report_list, "stored reports (every version)")
    c.add_argument("--study", help="only this study UID")
    c = command("log", cmd_report_log, "the audit log of a report")
    c.add_argument("id")
