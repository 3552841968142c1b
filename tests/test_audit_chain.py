"""The audit log is a hash chain: a real Store appends entries, the SQLite file is then edited
behind RadSight's back with sqlite3 (an edited detail, a removed row, two rows swapped, a row
inserted with a correctly computed hash), and `radsight audit verify`, run as a user runs it,
names the first broken entry and exits 1; an untouched log verifies with exit 0."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from viewer.store import Store
from viewer.store.audit_chain import content, link
from viewer.store.migrations import MIGRATIONS

STUDY = "1.2.826.0.1.3680043.8.498.1"


def _verify(db: Path) -> tuple[int, dict, str]:
    radsight = str(Path(sys.executable).parent / "radsight")
    as_json = subprocess.run([radsight, "audit", "verify", "--db", str(db), "--json"], capture_output=True,
                             text=True, timeout=120, env=os.environ.copy())
    human = subprocess.run([radsight, "audit", "verify", "--db", str(db)], capture_output=True, text=True,
                           timeout=120, env=os.environ.copy())
    assert as_json.returncode == human.returncode, (as_json.stderr, human.stderr)
    return as_json.returncode, json.loads(as_json.stdout), human.stdout


@pytest.fixture()
def db(tmp_path) -> Path:
    path = tmp_path / "radsight.sqlite3"
    with Store(path) as store:
        for n in range(5):
            store.audit("opened", study_uid=STUDY, detail=f"study opened in the test, series {n}", user="reader")
    return path


def _tamper(db: Path, sql: str, *params) -> None:
    """What someone with the file can do: drop the triggers that keep the log append-only, then edit."""
    with sqlite3.connect(db) as con:
        con.executescript("DROP TRIGGER audit_log_is_append_only; DROP TRIGGER audit_log_is_kept; "
                          "DROP TRIGGER audit_log_rows_are_chained;")
        con.execute(sql, params)


def test_untouched_log_verifies(db):
    code, data, text = _verify(db)
    assert code == 0 and data["ok"] and data["rows"] == 5 and data["broken"] is None
    assert "audit log intact, 5 entries" in text
    with sqlite3.connect(db) as con:
        last = con.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert data["head"] == last


def test_edited_entry_is_found(db):
    _tamper(db, "UPDATE audit_log SET detail = 'nothing to see' WHERE id = 3")
    code, data, text = _verify(db)
    assert code == 1 and not data["ok"]
    assert data["broken"]["id"] == 3 and data["broken"]["problem"] == "edited"
    assert "BROKEN at entry 3 (edited)" in text and "changed after it was written" in text


def test_removed_entry_is_found(db):
    _tamper(db, "DELETE FROM audit_log WHERE id = 2")
    code, data, text = _verify(db)
    assert code == 1 and data["broken"] == {
        "id": 3, "problem": "removed", "message": data["broken"]["message"]}
    assert "ids jump from 1 to 3" in data["broken"]["message"]


def test_swapped_entries_are_found(db):
    with sqlite3.connect(db) as con:
        rows = {r[0]: r[1:] for r in con.execute("SELECT id, at, user, action, study_uid, detail, hash FROM audit_log")}
    swap = "UPDATE audit_log SET at = ?, user = ?, action = ?, study_uid = ?, detail = ?, hash = ? WHERE id = ?"
    _tamper(db, swap, *rows[4], 2)
    with sqlite3.connect(db) as con:
        con.execute(swap, (*rows[2], 4))
    code, data, _ = _verify(db)
    assert code == 1 and data["broken"]["id"] == 2 and data["broken"]["problem"] == "reordered"


def test_inserted_entry_with_a_valid_hash_is_found(db):
    """A forger who knows the scheme links the new row to its predecessor; the next row still
    names the old predecessor."""
    with sqlite3.connect(db) as con:
        prev = con.execute("SELECT hash FROM audit_log WHERE id = 2").fetchone()[0]
    _tamper(db, "UPDATE audit_log SET id = id + 10 WHERE id > 2")
    values = ("2020-01-01T00:00:00.000Z", "someone", "opened", None, None, STUDY, "forged")
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO audit_log(id, at, user, action, report_id, report_version, study_uid, detail, hash) "
                    "VALUES (3, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, link(prev, content(values))))
    code, data, _ = _verify(db)
    assert code == 1 and data["broken"]["id"] == 13 and data["broken"]["problem"] == "inserted"
    assert "(3)" in data["broken"]["message"]


def test_row_without_hash_is_found(db):
    _tamper(db, "INSERT INTO audit_log(at, user, action, study_uid, detail) VALUES ('2020', 'x', 'opened', ?, '')", STUDY)
    code, data, _ = _verify(db)
    assert code == 1 and data["broken"]["id"] == 6 and data["broken"]["problem"] == "inserted"


def test_store_refuses_to_change_or_unchain_rows(db):
    with Store(db) as store, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE audit_log SET detail = 'x' WHERE id = 1")
    with Store(db) as store, pytest.raises(sqlite3.DatabaseError, match="chain hash"):
        store.db.execute("INSERT INTO audit_log(at, user, action, detail) VALUES ('2020', 'x', 'opened', '')")


def test_migration_chains_the_rows_written_before(tmp_path):
    """A database of schema 6 (before the chain) with audit rows: opening it chains them, in order."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as con:
        for number in range(6):
            con.executescript(MIGRATIONS[number])
        con.execute("PRAGMA user_version = 6")
        for n in range(3):
            con.execute("INSERT INTO audit_log(at, user, action, study_uid, detail) VALUES (?, 'reader', 'opened', ?, ?)",
                        (f"2024-01-0{n + 1}T00:00:00.000Z", STUDY, f"old {n}"))
    with Store(path) as store:
        store.audit("opened", study_uid=STUDY, detail="new", user="reader")
        assert store.schema_version == len(MIGRATIONS)
    code, data, _ = _verify(path)
    assert code == 0 and data["rows"] == 4


def test_missing_database_is_a_clear_error(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "radsight"), "audit", "verify", "--db",
                           str(tmp_path / "nope.sqlite3")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.sqlite3: no such database file" in proc.stderr
    assert not (tmp_path / "nope.sqlite3").exists()


def test_study_opened_is_audited_by_uid_only(tmp_path):
    """Who opened which study: Store.study_opened, the one call the viewer and `radsight analyze` make."""
    from viewer.dicom import open_path
    from tests.dicom_factory import write_series

    write_series(tmp_path / "study", study_uid=STUDY)
    series, result = open_path(tmp_path / "study")
    with Store(tmp_path / "db.sqlite3") as store:
        store.import_scan(series, result)
        info = store.study_opened(series[0].key, "the viewer", user="reader")
        rows = store.audit_log(study_uid=STUDY)
    assert info["patient_id"] == "RS-TEST-0001"  # shown to the reader ...
    assert len(rows) == 1 and rows[0]["action"] == "opened" and rows[0]["user"] == "reader"
    assert rows[0]["report_id"] is None and rows[0]["detail"].startswith("study opened in the viewer, series ")
    assert "SYNTHETIC" not in json.dumps(rows) and "RS-TEST-0001" not in json.dumps(rows)  # ... never logged
    code, data, _ = _verify(tmp_path / "db.sqlite3")
    assert code == 0 and data["rows"] == 1
