"""Drafts in the store: every edit committed (a process killed with SIGKILL loses no reported
edit), signed versions read-only, amendments chained, the audit log, no patient data in logs, and
the `radsight report` commands end to end (sign, verify, tamper, verify fails)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import need_tool
from viewer.analysis.guidelines import CATEGORY_ORDER
from viewer.analysis.nodules import MeasurementError, measure_at
from viewer.demo import generate_demo
from viewer.dicom import load, open_path
from viewer.report.drafts import Drafts
from viewer.report.model import ReportError
from viewer.report.templates import CT_CHEST, LUNG_SCREENING, find_template
from viewer.store import Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "radsight-lung-nodules"))
from radsight_lung_nodules.records import nodule_record

SEG_MODEL = {"id": "radsight-demo-lung-nodule-seg", "version": "1.0.0"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A one-visit small demo study and an analysis JSON of its measurable nodules (as AI findings)."""
    folder = tmp_path_factory.mktemp("report-drafts")
    demo = generate_demo(folder, preset="small", n_visits=1, seed=41)
    study_dir = demo.visits[0].study_dir
    volume = load(study_dir)
    records = []
    for n in demo.ground_truth()["visits"][0]["nodules"]:
        if not n["present"]:
            continue
        try:
            m = measure_at(volume, n["centre_lps_mm"])
        except MeasurementError:
            continue
        records.append(nodule_record(m, n["id"], tracking_uid=f"2.25.{200 + len(records)}", source="ai",
                                     scores={"detection": 0.9}, provenance={"method": "test", "models": [SEG_MODEL]}))
    series, _ = open_path(study_dir)
    analysis = {"study_uid": series[0].first.study_uid, "series_uid": series[0].first.series_uid,
                "series_key": series[0].key, "models": [SEG_MODEL], "nodules": records, "outputs": {"seg": []}}
    path = folder / "analysis.json"
    path.write_text(json.dumps(analysis))
    patient = demo.ground_truth()["patient"]
    return {"dir": study_dir, "analysis": analysis, "analysis_path": path, "records": records,
            "patient_name": patient["name"], "patient_id": patient["id"]}


def _signed(report):
    """What viewer.report.signing.sign_report returns, without an identity (the store's part only)."""
    return replace(report, status="signed", signer="Dr Test Reader", signed_at="2026-01-15T10:00:00+00:00")


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path):
    with Store(tmp_path / "db.sqlite3") as store:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(tmp_path / "db.sqlite3")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file itself
    raw.close()


CHILD = r"""
import sys
from viewer.store import Store
from viewer.report.drafts import Drafts
from viewer.report.templates import find_template
drafts = Drafts(Store(sys.argv[1]))
report = drafts.create(find_template("ct-chest-general"), {"study_uid": "1.2.3", "nodules": []})
print("report", report.id, flush=True)
text = sys.argv[2]
for n in range(1, len(text) + 1):
    drafts.set(report.id, "impression", text[:n])  # one keystroke, one committed edit
    print("saved", n, flush=True)
"""


def test_a_killed_editor_loses_no_reported_edit(tmp_path):
    db = tmp_path / "db.sqlite3"
    text = "No suspicious pulmonary nodule; stable appearances since the prior study. " * 20
    env = dict(os.environ, RADSIGHT_DATA_DIR=str(tmp_path / "data"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), text], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=ROOT)
    report_id = child.stdout.readline().split()[1]
    reported = 0
    for line in child.stdout:
        reported = int(line.split()[1])
        if reported >= 40:
            os.kill(child.pid, signal.SIGKILL)  # right after an edit was reported, mid-way through the next
            break
    rest = child.stdout.read()  # edits reported before the kill landed
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reported = max([reported] + [int(line.split()[1]) for line in rest.splitlines() if line.startswith("saved")])
    assert 40 <= reported < len(text), "the editor must be killed while still typing"
    with Store(db) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        typed = store.report(report_id).values["impression"].value
    # Every reported keystroke is there; at most the one being saved when the kill came is extra.
    assert typed in (text[:reported], text[:reported + 1]), (len(typed), reported)


def test_signed_versions_are_read_only_and_amendments_chain(tmp_path, study):
    with Store(tmp_path / "db.sqlite3") as store:
        drafts = Drafts(store, user="reader1")
        draft = drafts.create(find_template(LUNG_SCREENING), study["analysis"])
        with pytest.raises(ReportError, match=f"report {draft.id}/v1 is a draft: edit it"):
            store.amend(draft.id, "typo")
        draft = drafts.confirm(draft.id)
        with pytest.raises(ReportError, match="differs from the stored draft in values"):
            store.store_signed(_signed(draft.with_value("impression", draft.values["management"])))
        signed = store.store_signed(_signed(draft))
        before = store.report(draft.id, 1).canonical_bytes()
        with pytest.raises(ReportError, match=f"report {draft.id}/v1 is signed in .* amend it instead"):
            store.save_draft(draft)
        with pytest.raises(ReportError, match=f"report {draft.id}/v1 is signed and cannot change"):
            drafts.set(draft.id, "impression", "changed after signing")
        with pytest.raises(sqlite3.DatabaseError, match="read-only"), store.db:  # refused below the store too
            store.db.execute("UPDATE reports SET json = '{}' WHERE id = ?", (draft.id,))
        with pytest.raises(ReportError, match="needs a reason"):
            store.amend(draft.id, "  ")
        amendment = store.amend(draft.id, "right upper lobe, not left", user="reader1")
        assert (amendment.version, amendment.status) == (2, "draft")
        assert amendment.predecessor_id == signed.key == f"{draft.id}/v1"
        assert amendment.amendment_reason == "right upper lobe, not left" and amendment.signer is None
        assert amendment.values == signed.values and amendment.findings == signed.findings
        drafts.set(draft.id, "impression", "Nodule in the right upper lobe.")
        store.store_signed(_signed(store.report(draft.id)))
        third = store.amend(draft.id, "second correction", user="reader1")
        assert third.predecessor_id == f"{draft.id}/v2"
        versions = store.report_versions(draft.id)
        assert [(r.version, r.status) for r in versions] == [(1, "signed"), (2, "signed"), (3, "draft")]
        assert store.report(draft.id, 1).canonical_bytes() == before  # the signed version never changed
        assert versions[1].values["impression"].value == "Nodule in the right upper lobe."
        assert "impression" not in versions[0].values


def _pdf_text(data: bytes, folder: Path) -> str:
    path = folder / "report.pdf"
    path.write_bytes(data)
    return subprocess.run([need_tool("pdftotext"), "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_clearing_a_field_keeps_what_the_reader_turned_down(tmp_path, study):
    """A prefilled number cleared by the reader stays as an empty value marked 'rejected' (so the
    AI's provenance is not lost); a value the reader typed and then cleared is gone; a cleared
    required field blocks signing; the PDF prints no cleared field."""
    from viewer.report.drafts import check_ready_to_sign
    from viewer.report.pdf import render_pdf

    with Store(tmp_path / "db.sqlite3") as store:
        drafts = Drafts(store, user="reader1")
        template = find_template(LUNG_SCREENING)
        draft = drafts.create(template, study["analysis"])
        prefilled = draft.values["largest_nodule_diameter"]
        assert prefilled.value is not None and prefilled.provenance.source != "reader"
        cleared = drafts.set(draft.id, "largest_nodule_diameter", None)
        value = store.report(draft.id).values["largest_nodule_diameter"]
        assert value.value is None and value.confirmed and value.provenance.decision == "rejected"
        assert value.provenance.source == prefilled.provenance.source
        assert "largest_nodule_diameter" not in cleared.unconfirmed
        drafts.set(draft.id, "next_examination", "2027-01-15")
        drafts.set(draft.id, "next_examination", "")
        assert "next_examination" not in store.report(draft.id).values
        drafts.set(draft.id, "lung_rads_category", None)
        with pytest.raises(ReportError, match="lung_rads_category"):
            check_ready_to_sign(drafts.confirm(draft.id), template)
        label = "Largest nodule, mean"  # the label wraps in its column
        assert label in _pdf_text(render_pdf(draft), tmp_path)
        assert label not in _pdf_text(render_pdf(store.report(draft.id)), tmp_path)


def test_the_audit_log_records_who_did_what_and_when(tmp_path, study):
    start = datetime.now(UTC)
    with Store(tmp_path / "db.sqlite3") as store:
        drafts = Drafts(store)
        report = drafts.create(find_template(CT_CHEST), study["analysis"])
        store.open_report(report.id)
        for n in range(1, 6):  # keystrokes in one field: one audit row, not five
            drafts.set(report.id, "impression", "Normal"[:n])
        drafts.set(report.id, "indication", "Cough")
        drafts.confirm(report.id)
        store.store_signed(_signed(store.report(report.id)))
        store.audit("exported", store.report(report.id), detail="sr report.dcm")
        store.amend(report.id, "addendum")
        rows = store.audit_log(report.id)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"), store.db:
            store.db.execute("DELETE FROM audit_log")
        with pytest.raises(ValueError, match="audit action must be one of"):
            store.audit("peeked", report)
    assert [(r["action"], r["report_version"]) for r in rows] == [
        ("created", 1), ("opened", 1), ("edited", 1), ("edited", 1), ("confirmed", 1), ("signed", 1),
        ("exported", 1), ("amended", 2)]
    assert [r["detail"] for r in rows][2:4] == ["set impression", "set indication"]
    assert rows[5]["detail"] == "signer Dr Test Reader"
    assert {r["user"] for r in rows} == {getpass.getuser()}
    assert {r["study_uid"] for r in rows} == {study["analysis"]["study_uid"]}
    for r in rows:
        at = datetime.fromisoformat(r["at"])
        assert r["at"].endswith("Z") and 0 <= (at - start).total_seconds() < 60


def test_drafting_and_editing_log_no_patient_name_or_id(study, caplog, capsys):
    from viewer.cli import main

    with caplog.at_level(logging.DEBUG):
        assert main(["report", "draft", str(study["dir"]), "--analysis", str(study["analysis_path"]), "--json"]) == 0
        report_id = json.loads(capsys.readouterr().out)["id"]
        assert main(["report", "set", report_id, "impression", "Small nodules, likely benign."]) == 0
        assert main(["report", "confirm", report_id, "--all"]) == 0
        assert main(["report", "show", report_id]) == 0
    out = capsys.readouterr()
    assert any(r.name.startswith("viewer.report") for r in caplog.records), "the report code logs its work"
    with Store() as store:
        audit = json.dumps(store.audit_log(report_id))
    name = study["patient_name"]
    for text in (caplog.text, out.out, out.err, audit):
        for value in (name, name.replace("^", " "), name.split("^")[0], study["patient_id"]):
            assert value not in text


def _radsight(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "report", *args], capture_output=True, text=True, check=False,
                          env=env, cwd=ROOT, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def cli_env(tmp_path):
    return dict(os.environ, RADSIGHT_DATA_DIR=str(tmp_path / "data"))


@pytest.mark.slow
def test_cli_draft_show_set_confirm_amend(study, cli_env):
    draft = json.loads(_radsight("draft", str(study["dir"]), "--analysis", str(study["analysis_path"]), "--json",
                                 env=cli_env).stdout)
    rid = draft["id"]
    assert draft["template"] == LUNG_SCREENING and draft["findings"] == len(study["records"])
    assert "lung_rads_category" in draft["unconfirmed"] and f"finding {study['records'][0]['id']}" in draft["unconfirmed"]
    bad = _radsight("set", rid, "lung_rads_category", "5", env=cli_env, check=False)
    assert bad.returncode == 2
    assert "field 'lung_rads_category' takes one of 0, 1, 2, 3, 4A, 4B, 4X; got '5'" in bad.stderr
    bad = _radsight("set", rid, "colour", "red", env=cli_env, check=False)
    assert bad.returncode == 2 and "no field 'colour'" in bad.stderr and "impression" in bad.stderr
    bad = _radsight("set", rid, "largest_nodule_diameter", "big", env=cli_env, check=False)
    assert bad.returncode == 2 and "takes a number in mm; got 'big'" in bad.stderr
    prefilled = max((r["lung_rads"]["category"] for r in study["records"] if r["lung_rads"]), key=CATEGORY_ORDER.index)
    chosen = "4a" if prefilled != "4A" else "3"
    _radsight("set", rid, "lung_rads_category", chosen, env=cli_env)
    first = study["records"][0]["id"]
    shown = json.loads(_radsight("confirm", rid, first, "--json", env=cli_env).stdout)
    assert f"finding {first}" not in shown["unconfirmed"] and "lung_rads_category" not in shown["unconfirmed"]
    _radsight("confirm", rid, "--all", env=cli_env)
    report = json.loads(_radsight("show", rid, "--json", env=cli_env).stdout)
    assert report["unconfirmed"] == [] and report["values"]["lung_rads_category"]["value"] == chosen.upper()
    assert report["values"]["lung_rads_category"]["provenance"]["decision"] == "edited"
    assert report["values"]["lung_rads_category"]["provenance"]["source"] in ("ai", "measured")
    bad = _radsight("amend", rid, "--reason", "typo", env=cli_env, check=False)
    assert bad.returncode == 2 and "is a draft: edit it" in bad.stderr


@pytest.mark.slow
def test_cli_sign_verify_tamper_and_amend(study, cli_env, tmp_path):
    from viewer.report.identity import create_demo_identity

    identity = create_demo_identity(tmp_path / "reader.p12", "Dr Test Reader", "secret")
    password = tmp_path / "password"
    password.write_text("secret\n")
    sign = ("--identity", str(identity), "--password-file", str(password))
    rid = json.loads(_radsight("draft", str(study["dir"]), "--analysis", str(study["analysis_path"]), "--json",
                               env=cli_env).stdout)["id"]
    refused = _radsight("sign", rid, *sign, env=cli_env, check=False)
    assert refused.returncode == 2 and "unconfirmed" in refused.stderr
    _radsight("confirm", rid, "--all", env=cli_env)
    signed = json.loads(_radsight("sign", rid, *sign, "--out", str(tmp_path / "out"), "--json", env=cli_env).stdout)
    assert signed["status"] == "signed" and signed["signer"] == "Dr Test Reader"
    for fmt in ("sr", "pdf"):
        path = Path(signed["outputs"][fmt])
        result = json.loads(_radsight("verify", str(path), "--json", env=cli_env).stdout)
        assert result["valid"] and result["signer"] == "Dr Test Reader" and result["problems"] == []
        data = bytearray(path.read_bytes())
        marker = rid.encode() if fmt == "pdf" else b"Lung cancer screening"
        at = data.index(marker)  # one byte of signed content: the report id in the PDF, the indication in the SR
        data[at] ^= 0x01
        tampered = tmp_path / f"tampered.{fmt}"
        tampered.write_bytes(bytes(data))
        bad = _radsight("verify", str(tampered), "--json", env=cli_env, check=False)
        result = json.loads(bad.stdout)
        assert bad.returncode == 1 and not result["valid"] and result["problems"], result
    refused = _radsight("set", rid, "impression", "after signing", env=cli_env, check=False)
    assert refused.returncode == 2 and "signed and cannot change; amend it instead" in refused.stderr
    amended = json.loads(_radsight("amend", rid, "--reason", "side corrected", "--json", env=cli_env).stdout)
    assert amended["version"] == 2 and amended["predecessor"] == f"{rid}/v1"
    _radsight("set", rid, "impression", "Corrected side.", env=cli_env)
    second = json.loads(_radsight("sign", rid, *sign, "--out", str(tmp_path / "out"), "--json", env=cli_env).stdout)
    assert second["version"] == 2
    for fmt in ("sr", "pdf"):
        assert json.loads(_radsight("verify", second["outputs"][fmt], "--json", env=cli_env).stdout)["valid"]
        assert json.loads(_radsight("verify", signed["outputs"][fmt], "--json", env=cli_env).stdout)["valid"]
    import pydicom

    first_sr = pydicom.dcmread(signed["outputs"]["sr"])
    second_sr = pydicom.dcmread(second["outputs"]["sr"])
    predecessor = second_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
    log = json.loads(_radsight("log", rid, "--json", env=cli_env).stdout)
    assert [r["action"] for r in log].count("signed") == 2 and [r["action"] for r in log].count("exported") == 4


def test_a_database_from_before_reports_migrates_in_place(tmp_path):
    from viewer.store.migrations import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    before = 4  # nodules, no reports yet
    db = sqlite3.connect(path)
    for n, script in enumerate(MIGRATIONS[:before]):
        db.executescript("BEGIN;" + script + f"; PRAGMA user_version = {n + 1}; COMMIT;")
    db.execute("INSERT INTO nodules(id, series_key, record_json, source) VALUES ('n1', 's1', '{\"id\": \"N1\"}', 'measured')")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == len(MIGRATIONS) > before
        assert [n["id"] for n in store.nodules("s1")] == ["n1"]
        report = Drafts(store).create(find_template(CT_CHEST), {"study_uid": "1.2.3", "nodules": []})
    with Store(path) as store:
        assert store.report(report.id).values == report.values
        assert [r["action"] for r in store.audit_log(report.id)] == ["created"]


def test_a_released_patient_summary_is_kept_for_its_signed_version_only(tmp_path, study):
    from viewer.report.export import release_summary, summary_name
    from viewer.report.summary import approve_summary, draft_summary

    with Store(tmp_path / "db.sqlite3") as store:
        drafts = Drafts(store, user="reader1")
        draft = drafts.confirm(drafts.create(find_template(LUNG_SCREENING), study["analysis"]).id)
        signed = store.store_signed(_signed(draft))
        assert store.approved_summary(signed.id, signed.version) is None
        with pytest.raises(ReportError, match="not approved"):
            release_summary(store, signed, draft_summary(signed), tmp_path / "s.txt")
        approval = approve_summary(draft_summary(signed), approver=signed.signer, text="Edited for the patient.")
        out = release_summary(store, signed, approval, tmp_path / "reports" / summary_name(signed), user="reader1")
        assert out.read_text(encoding="utf-8") == "Edited for the patient.\n"
        kept = store.approved_summary(signed.id, signed.version)
        assert kept == approval and kept.approver == "Dr Test Reader"
        assert store.audit_log(report_id=signed.id)[-1]["detail"] == \
            f"patient summary {out.name}, approved by Dr Test Reader"
        again = approve_summary(draft_summary(signed), approver=signed.signer, text="Second wording.")
        release_summary(store, signed, again, out)
        assert store.approved_summary(signed.id, signed.version).text == "Second wording."
        amendment = store.amend(signed.id, "typo")
        with pytest.raises(ReportError, match="belongs to report"):
            release_summary(store, amendment, again, out)
        with pytest.raises(ReportError, match="is a draft"):
            store.save_summary(approve_summary(draft_summary(_signed(amendment)), approver="x"))
        assert store.approved_summary(amendment.id, amendment.version) is None
