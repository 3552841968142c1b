"""The local study index (SQLite): what was imported, where its frames are, what went wrong.

Importing is idempotent: the same files imported again leave every row as it was. The index
also keeps each frame's header record, so a known series reloads without re-parsing headers
(files whose size or modification time changed are re-scanned instead).
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import sqlite3
import uuid
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from viewer.core.errors import RadSightError
from viewer.core.measurements import Measurement
from viewer.core.private_files import private_file
from viewer.core.results import ModelRef
from viewer.core.volume import GeometryWarning, Volume
from viewer.dicom.header import SliceRecord
from viewer.dicom.info import series_info
from viewer.dicom.scan import ScanResult
from viewer.dicom.series import Series
from viewer.store import audit_chain
from viewer.store.migrations import MIGRATION_STEPS, MIGRATIONS
from viewer.store.paths import default_database_path
from viewer.store.reports import ReportStore

SCHEMA_VERSION = len(MIGRATIONS)

NODULE_SOURCES = ("ai", "measured")
NODULE_DECISIONS = ("accepted", "edited", "rejected")


_FIELDS = [f.name for f in fields(SliceRecord)]
_TUPLE_FIELDS = {"position", "orientation", "pixel_spacing", "window", "split_key"}
# Identifies the field layout: records of another layout are re-scanned, not misread.
_LAYOUT = hashlib.sha1(",".join(_FIELDS).encode()).hexdigest()[:12]


def _record_to_json(r: SliceRecord) -> str:
    """Values in field order: a list decodes ~3x faster than a dict, and a series reload is
    mostly this decoding."""
    values = [getattr(r, name) for name in _FIELDS]
    values[_FIELDS.index("path")] = str(r.path)
    return json.dumps([_LAYOUT] + values, separators=(",", ":"))


def _record_from_json(text: str) -> SliceRecord:
    data = json.loads(text)
    if isinstance(data, dict):  # written before positional records
        data = [data.get(name) for name in _FIELDS]
    elif data[0] != _LAYOUT:
        raise ValueError("index record of another field layout")
    else:
        data = data[1:]
    values = dict(zip(_FIELDS, data))
    values["path"] = Path(values["path"])
    for name in _TUPLE_FIELDS:
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return SliceRecord(**values)


class Store(ReportStore):
    """One connection to the database; use as a context manager or call close(). Reports and the
    audit log: viewer.store.reports."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_database_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
        private_file(self.path)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA journal_mode = WAL")  # crash-safe and readers never block
        # FULL: each commit is fsynced, so a saved draft also survives power loss (NORMAL in WAL mode
        # survives a killed process but may lose the last commits on power loss); commits are few
        # (one per edit or import), so the fsync costs nothing noticeable.
        self.db.execute("PRAGMA synchronous = FULL")
        audit_chain.register(self.db)
        self._migrate()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise RadSightError(f"database {self.path} has schema version {version}, newer than this "
                                f"RadSight understands ({SCHEMA_VERSION}); update RadSight")
        for number in range(version, SCHEMA_VERSION):
            with self.db:
                self.db.executescript("BEGIN;" + MIGRATIONS[number])
                if number in MIGRATION_STEPS:
                    MIGRATION_STEPS[number](self.db)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    def import_scan(self, series_list: list[Series], result: ScanResult) -> dict:
        """Index the scanned series and file problems; returns counts of rows added or changed."""
        before = self.db.total_changes
        with self.db:
            for s in series_list:
                first = s.first
                self.db.execute(
                    """INSERT INTO studies(study_uid, patient_id, patient_name, study_date, description)
                       VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(study_uid) DO UPDATE SET patient_id=excluded.patient_id,
                         patient_name=excluded.patient_name, study_date=excluded.study_date,
                         description=excluded.description
                       WHERE (patient_id, patient_name, study_date, description) IS NOT
                             (excluded.patient_id, excluded.patient_name, excluded.study_date, excluded.description)""",
                    (first.study_uid, first.patient_id, first.patient_name, first.study_date, first.study_description))
                summary = json.dumps(series_info(s), sort_keys=True)
                self.db.execute(
                    """INSERT INTO series(series_key, series_uid, study_uid, modality, series_number,
                         description, frame_of_reference_uid, frame_count, summary_json)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(series_key) DO UPDATE SET frame_count=excluded.frame_count,
                         summary_json=excluded.summary_json
                       WHERE (frame_count, summary_json) IS NOT (excluded.frame_count, excluded.summary_json)""",
                    (s.key, first.series_uid, first.study_uid, first.modality, first.series_number,
                     first.series_description, first.frame_of_reference_uid, len(s.records), summary))
                rows = []
                for r in s.records:
                    st = r.path.stat()
                    rows.append((str(r.path.resolve()), r.frame if r.frame is not None else -1, s.key,
                                 r.sop_instance_uid, st.st_size, st.st_mtime_ns, _record_to_json(r)))
                self.db.executemany(
                    """INSERT INTO frames(path, frame, series_key, sop_instance_uid, file_size, file_mtime_ns, record_json)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path, frame) DO UPDATE SET series_key=excluded.series_key,
                         sop_instance_uid=excluded.sop_instance_uid, file_size=excluded.file_size,
                         file_mtime_ns=excluded.file_mtime_ns, record_json=excluded.record_json
                       WHERE (series_key, file_size, file_mtime_ns, record_json) IS NOT
                             (excluded.series_key, excluded.file_size, excluded.file_mtime_ns, excluded.record_json)""",
                    rows)
            self.db.executemany(
                """INSERT INTO file_problems(path, reason) VALUES (?, ?)
                   ON CONFLICT(path) DO UPDATE SET reason=excluded.reason WHERE reason IS NOT excluded.reason""",
                [(str(p.path.resolve()), p.reason) for p in result.problems])
        return {"changes": self.db.total_changes - before}

    def studies(self) -> list[dict]:
        cur = self.db.execute("SELECT study_uid, patient_id, patient_name, study_date, description FROM studies ORDER BY study_date, study_uid")
        return [dict(zip(("study_uid", "patient_id", "patient_name", "study_date", "description"), row)) for row in cur]

    def series_summaries(self, study_uid: str | None = None) -> list[dict]:
        sql = "SELECT summary_json FROM series" + (" WHERE study_uid = ?" if study_uid else "") + " ORDER BY series_number, series_key"
        return [json.loads(row[0]) for row in self.db.execute(sql, (study_uid,) if study_uid else ())]

    def study_for_series(self, series_key: str) -> dict:
        """Patient and study fields of the study a series belongs to ({} if unknown)."""
        row = self.db.execute(
            """SELECT st.patient_name, st.patient_id, st.study_date, st.description FROM series se
               JOIN studies st ON st.study_uid = se.study_uid WHERE se.series_key = ?""", (series_key,)).fetchone()
        if row is None:
            return {}
        return dict(zip(("patient_name", "patient_id", "study_date", "study_description"), row))

    def study_opened(self, series_key: str, how: str, user: str | None = None) -> dict:
        """study_for_series, with who opened the study written to the audit log (IHE ATNA: who
        accessed which study, not only who changed a report). The row names the study and series by
        UID and says how (viewer, radsight analyze); never patient fields."""
        row = self.db.execute("SELECT study_uid FROM series WHERE series_key = ?", (series_key,)).fetchone()
        if row is not None and row[0]:
            self.audit("opened", study_uid=row[0], detail=f"study opened in {how}, series {series_key}", user=user)
        return self.study_for_series(series_key)

    def indexed_series(self, series_key: str) -> Series | None:
        """The series rebuilt from the index, or None if unknown or any of its files changed."""
        rows = self.db.execute("SELECT path, file_size, file_mtime_ns, record_json FROM frames WHERE series_key = ?",
                               (series_key,)).fetchall()
        if not rows:
            return None
        checked: dict[str, bool] = {}
        for path, size, mtime, _ in rows:
            if path not in checked:
                try:
                    st = Path(path).stat()
                except OSError:
                    return None
                checked[path] = st.st_size == size and st.st_mtime_ns == mtime
            if not checked[path]:
                return None
        summary = self.db.execute("SELECT summary_json FROM series WHERE series_key = ?", (series_key,)).fetchone()
        warnings = [GeometryWarning(**w) for w in json.loads(summary[0]).get("warnings", [])
                    if w["code"] in ("split_series", "split_acquisitions", "duplicate_positions")]
        try:
            records = [_record_from_json(row[3]) for row in rows]
        except (ValueError, TypeError, KeyError):
            return None  # written by another RadSight version: the caller re-scans
        return Series(series_key, records, warnings)

    def save_measurement(self, series_key: str, m: Measurement) -> None:
        """Insert or update (same id) a measurement of a series."""
        with self.db:
            self.db.execute(
                """INSERT INTO measurements(id, series_key, kind, label, points_json) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, label=excluded.label,
                     points_json=excluded.points_json,
                     updated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')""",
                (m.id, series_key, m.kind, m.label, json.dumps(m.points)))

    def delete_measurement(self, measurement_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM measurements WHERE id = ?", (measurement_id,))

    def measurements(self, series_key: str) -> list[Measurement]:
        rows = self.db.execute("SELECT id, kind, label, points_json FROM measurements WHERE series_key = ? "
                               "ORDER BY rowid", (series_key,))  # insertion order; edits keep their place
        return [Measurement(kind, tuple(map(tuple, json.loads(points))), label, id_) for id_, kind, label, points in rows]

    def add_result(self, series_key: str, kind: str, model_id: str, model_version: str, path: Path | str,
                   provider: str = "", summary: dict | None = None, replaces=None) -> int:
        """Record an AI result (e.g. a SEG file). It replaces the model's earlier results of this
        kind, or only those whose summary `replaces(summary)` accepts (e.g. a heatmap at the same
        point, while maps of other nodules stay)."""
        with self.db:
            rows = self.db.execute("SELECT id, summary_json FROM results WHERE series_key = ? AND kind = ? AND model_id = ?",
                                   (series_key, kind, model_id)).fetchall()
            stale = [(id_,) for id_, text in rows if replaces is None or replaces(json.loads(text))]
            self.db.executemany("DELETE FROM results WHERE id = ?", stale)
            cur = self.db.execute(
                "INSERT INTO results(series_key, kind, model_id, model_version, provider, path, summary_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (series_key, kind, model_id, model_version, provider, str(path), json.dumps(summary or {})))
        return int(cur.lastrowid)

    def results(self, series_key: str) -> list[dict]:
        rows = self.db.execute("SELECT id, kind, model_id, model_version, provider, path, summary_json, created_at "
                               "FROM results WHERE series_key = ? ORDER BY id", (series_key,))
        keys = ("id", "kind", "model_id", "model_version", "provider", "path", "summary", "created_at")
        return [dict(zip(keys, row[:6] + (json.loads(row[6]), row[7]))) for row in rows]

    def save_nodule(self, series_key: str, record: dict, source: str, mask: Volume | None = None,
                    model=None, confidence: float | None = None, study_uid: str | None = None) -> str:
        """Keep a nodule (a DESIGN.md NODULE dict) found by a model ("ai") or by the reader ("measured");
        returns its new id. `model` is anything with id and version (a ModelRef, a dict, a pair)."""
        if source not in NODULE_SOURCES:
            raise ValueError(f"nodule source must be one of {NODULE_SOURCES}; got {source!r}")
        model_id, model_version = ModelRef.parts(model)
        if source == "ai" and not model_id:
            raise ValueError("an AI nodule needs the model that found it (id and version)")
        if study_uid is None:
            row = self.db.execute("SELECT study_uid FROM series WHERE series_key = ?", (series_key,)).fetchone()
            study_uid = row[0] if row else ""
        nodule_id = uuid.uuid4().hex
        with self.db:
            self.db.execute(
                "INSERT INTO nodules(id, series_key, study_uid, tracking_uid, record_json, mask, source, model_id, "
                "model_version, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (nodule_id, series_key, study_uid or "", str(record.get("tracking_uid") or ""), json.dumps(record),
                 _mask_to_blob(mask), source, model_id, model_version,
                 None if confidence is None else float(confidence)))
        return nodule_id

    def nodules(self, series_key: str) -> list[dict]:
        """The series' nodules in the order they were added, each with its latest decision (None while
        pending) and `current`, the record as last edited (the original record if never edited)."""
        rows = self.db.execute(
            "SELECT id, series_key, study_uid, tracking_uid, record_json, mask IS NOT NULL, source, model_id, "
            "model_version, confidence, created_at FROM nodules WHERE series_key = ? ORDER BY rowid", (series_key,))
        keys = ("id", "series_key", "study_uid", "tracking_uid", "record", "has_mask", "source", "model_id",
                "model_version", "confidence", "created_at")
        result = []
        for row in rows.fetchall():
            item = dict(zip(keys, row))
            item["record"] = json.loads(item["record"])
            item["has_mask"] = bool(item["has_mask"])
            history = self.nodule_decisions(item["id"])
            item["decision"] = history[-1] if history else None
            edited = [d["record"] for d in history if d["record"] is not None]
            item["current"] = edited[-1] if edited else item["record"]
            result.append(item)
        return result

    def nodule_mask(self, nodule_id: str) -> Volume | None:
        row = self.db.execute("SELECT mask FROM nodules WHERE id = ?", (nodule_id,)).fetchone()
        if row is None:
            raise RadSightError(f"no nodule {nodule_id} in {self.path}")
        return _mask_from_blob(row[0])

    def decide_nodule(self, nodule_id: str, decision: str, record: dict | None = None, user: str | None = None,
                      mask: Volume | None = None) -> None:
        """Record the reader's decision on a nodule, with who (the login name, never a patient's) and
        when (UTC). Earlier decisions are kept: the history is the audit trail. "edited" carries the
        edited record (and may replace the stored mask with the edited one)."""
        if decision not in NODULE_DECISIONS:
            raise ValueError(f"nodule decision must be one of {NODULE_DECISIONS}; got {decision!r}")
        if decision == "edited" and record is None:
            raise ValueError("an 'edited' decision needs the edited record")
        if self.db.execute("SELECT 1 FROM nodules WHERE id = ?", (nodule_id,)).fetchone() is None:
            raise RadSightError(f"no nodule {nodule_id} in {self.path}: it may have been deleted")
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.db:
            self.db.execute("INSERT INTO nodule_decisions(nodule_id, decision, user, at, record_json) VALUES (?, ?, ?, ?, ?)",
                            (nodule_id, decision, user or getpass.getuser(), at,
                             None if record is None else json.dumps(record)))
            if mask is not None:
                self.db.execute("UPDATE nodules SET mask = ? WHERE id = ?", (_mask_to_blob(mask), nodule_id))

    def nodule_decisions(self, nodule_id: str) -> list[dict]:
        """Every decision on a nodule, oldest first."""
        rows = self.db.execute("SELECT decision, user, at, record_json FROM nodule_decisions WHERE nodule_id = ? "
                               "ORDER BY id", (nodule_id,))
        return [{"decision": d, "user": u, "at": at, "record": None if r is None else json.loads(r)}
                for d, u, at, r in rows]

    def set_nodule_tracking_uid(self, nodule_id: str, tracking_uid: str) -> None:
        """Name the track a stored nodule belongs to (found when a later study is compared with its
        study); the record's own tracking_uid follows, so both always agree."""
        row = self.db.execute("SELECT record_json FROM nodules WHERE id = ?", (nodule_id,)).fetchone()
        if row is None:
            raise RadSightError(f"no nodule {nodule_id} in {self.path}: it may have been deleted")
        record = json.loads(row[0])
        record["tracking_uid"] = tracking_uid
        with self.db:
            self.db.execute("UPDATE nodules SET tracking_uid = ?, record_json = ? WHERE id = ?",
                            (tracking_uid, json.dumps(record), nodule_id))

    def delete_nodule(self, nodule_id: str) -> None:
        """Remove a nodule and its decisions."""
        with self.db:
            self.db.execute("DELETE FROM nodules WHERE id = ?", (nodule_id,))

    def table_counts(self) -> dict[str, int]:
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("studies", "series", "frames", "file_problems")}


def _mask_to_blob(mask: Volume | None) -> bytes | None:
    """A mask with its geometry (affine, frame of reference) as compressed npz."""
    if mask is None:
        return None
    buffer = io.BytesIO()
    np.savez_compressed(buffer, voxels=np.asarray(mask.voxels, np.uint8), affine=mask.affine,
                        frame_of_reference_uid=np.array(mask.frame_of_reference_uid or ""))
    return buffer.getvalue()


def _mask_from_blob(blob: bytes | None) -> Volume | None:
    if blob is None:
        return None
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        frame = str(data["frame_of_reference_uid"]) or None
        return Volume(data["voxels"], data["affine"], frame)
