"""Schema migrations of the local database, applied in order; (PRAGMA user_version) is the version.

Never edit a migration that has shipped: add a new one. Each runs in one transaction.
"""

from __future__ import annotations

from viewer.store.audit_chain import chain_unhashed

MIGRATIONS: list[str] = [
    # 1: the study index.
    """
    CREATE TABLE studies (
        study_uid TEXT PRIMARY KEY,
        patient_id TEXT NOT NULL DEFAULT '',
        patient_name TEXT NOT NULL DEFAULT '',
        study_date TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE series (
        series_key TEXT PRIMARY KEY,
        series_uid TEXT NOT NULL,
        study_uid TEXT NOT NULL REFERENCES studies(study_uid) ON DELETE CASCADE,
        modality TEXT NOT NULL DEFAULT '',
        series_number INTEGER,
        description TEXT NOT NULL DEFAULT '',
        frame_of_reference_uid TEXT,
        frame_count INTEGER NOT NULL,
        summary_json TEXT NOT NULL
    );
    CREATE INDEX series_by_study ON series(study_uid);
    CREATE TABLE frames (
        path TEXT NOT NULL,
        frame INTEGER NOT NULL,
        series_key TEXT NOT NULL REFERENCES series(series_key) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        file_size INTEGER NOT NULL,
        file_mtime_ns INTEGER NOT NULL,
        record_json TEXT NOT NULL,
        PRIMARY KEY (path, frame)
    );
    CREATE INDEX frames_by_series ON frames(series_key);
    CREATE TABLE file_problems (
        path TEXT PRIMARY KEY,
        reason TEXT NOT NULL
    );
    """,
]

MIGRATIONS.append(
    # 2: reader measurements, per series.
    """
    CREATE TABLE measurements (
        id TEXT PRIMARY KEY,
        series_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        points_json TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX measurements_by_series ON measurements(series_key);
    """
)

MIGRATIONS.append(
    # 3: AI results per series, with the model that made them and where their DICOM object is.
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        series_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        provider TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL,
        summary_json TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX results_by_series ON results(series_key);
    """
)

MIGRATIONS.append(
    # 4: lung nodules per series (AI-found or measured), with the reader's decisions on each.
    # A mask is a small sub-grid volume (a few kB compressed), so it lives in the row as a blob.
    """
    CREATE TABLE nodules (
        id TEXT PRIMARY KEY,
        series_key TEXT NOT NULL,
        study_uid TEXT NOT NULL DEFAULT '',
        tracking_uid TEXT NOT NULL DEFAULT '',
        record_json TEXT NOT NULL,
        mask BLOB,
        source TEXT NOT NULL CHECK (source IN ('ai', 'measured')),
        model_id TEXT NOT NULL DEFAULT '',
        model_version TEXT NOT NULL DEFAULT '',
        confidence REAL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX nodules_by_series ON nodules(series_key);
    CREATE INDEX nodules_by_tracking ON nodules(tracking_uid);
    CREATE TABLE nodule_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        nodule_id TEXT NOT NULL REFERENCES nodules(id) ON DELETE CASCADE,
        decision TEXT NOT NULL CHECK (decision IN ('accepted', 'edited', 'rejected')),
        user TEXT NOT NULL,
        at TEXT NOT NULL,
        record_json TEXT
    );
    CREATE INDEX decisions_by_nodule ON nodule_decisions(nodule_id);
    """
)

MIGRATIONS.append(
    # 5: structured reports, one row per version (a signed version is read-only: amendments are new
    # versions chained by predecessor "ID/vN"), and the audit log (append-only; users are login
    # names, never patients; detail names fields, never their values).
    """
    CREATE TABLE reports (
        id TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        status TEXT NOT NULL CHECK (status IN ('draft', 'signed')),
        template TEXT NOT NULL,
        study_uid TEXT NOT NULL DEFAULT '',
        json TEXT NOT NULL,
        predecessor TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (id, version)
    );
    CREATE INDEX reports_by_study ON reports(study_uid);
    CREATE TRIGGER signed_reports_are_read_only BEFORE UPDATE ON reports WHEN OLD.status = 'signed'
    BEGIN SELECT RAISE(ABORT, 'a signed report version is read-only; amend it instead'); END;
    CREATE TRIGGER signed_reports_are_kept BEFORE DELETE ON reports WHEN OLD.status = 'signed'
    BEGIN SELECT RAISE(ABORT, 'a signed report version cannot be deleted'); END;
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        report_id TEXT,
        report_version INTEGER,
        study_uid TEXT,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_by_report ON audit_log(report_id);
    CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_is_kept BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """
)

MIGRATIONS.append(
    # 6: patient summaries released by the radiologist, one per signed report version (the text as
    # approved, who approved it and when); what consultation mode may show the patient.
    """
    CREATE TABLE patient_summaries (
        report_id TEXT NOT NULL,
        report_version INTEGER NOT NULL,
        json TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        PRIMARY KEY (report_id, report_version),
        FOREIGN KEY (report_id, report_version) REFERENCES reports(id, version)
    );
    """
)

MIGRATIONS.append(
    # 7: the audit log becomes a hash chain (viewer.store.audit_chain); the rows already there are
    # chained by MIGRATION_STEPS[6] in the same transaction. A row may be updated only while it
    # has no hash (that step); a row without one cannot be inserted.
    """
    ALTER TABLE audit_log ADD COLUMN hash TEXT;
    DROP TRIGGER audit_log_is_append_only;
    CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE ON audit_log WHEN OLD.hash IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_rows_are_chained BEFORE INSERT ON audit_log WHEN NEW.hash IS NULL
    BEGIN SELECT RAISE(ABORT, 'an audit row needs its chain hash (viewer.store.audit_chain)'); END;
    """
)

# Steps in Python after a migration's SQL, in its transaction (by migration index).
MIGRATION_STEPS = {6: chain_unhashed}
