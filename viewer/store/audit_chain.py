"""A tamper-evident audit log (as IHE ATNA audit trails expect): each row of audit_log stores
SHA-256 of the previous row's hash and its own canonical content, so an edited, removed,
reordered or inserted row breaks the chain from that row on, and verify() says where.

Evidence, not prevention: whoever can write the database file can also rewrite every hash after
an edit, and removing the newest rows leaves a shorter valid chain. verify() reports the row count
and the newest hash (the head) so that an auditor can compare them with values noted earlier."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass

GENESIS = "0" * 64  # the "previous hash" of the first row
FIELDS = ("at", "user", "action", "report_id", "report_version", "study_uid", "detail")


def content(values) -> str:
    """The canonical text of one row's FIELDS, in order (compact JSON: unambiguous, stable)."""
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def link(previous: str | None, text: str) -> str:
    """The hash a row stores: SHA-256 over the previous row's hash (GENESIS for the first) and its content.
    Registered as the SQL function audit_link, so an insert reads the previous hash and writes its
    own in one statement: two processes appending at once cannot both chain to the same row."""
    return hashlib.sha256(((previous or GENESIS) + text).encode("utf-8")).hexdigest()


def register(db: sqlite3.Connection) -> None:
    db.create_function("audit_link", 2, link, deterministic=True)


def chain_unhashed(db: sqlite3.Connection) -> None:
    """Migration 7: hash the rows written before the chain existed, oldest first."""
    previous = None
    for row in db.execute("SELECT id, hash, " + ", ".join(FIELDS) + " FROM audit_log ORDER BY id").fetchall():
        if row[1] is None:
            hashed = link(previous, content(row[2:]))
            db.execute("UPDATE audit_log SET hash = ? WHERE id = ?", (hashed, row[0]))
            previous = hashed
        else:
            previous = row[1]


@dataclass(frozen=True)
class ChainBreak:
    """The first row where the chain does not hold: its id, what happened (edited, removed,
    reordered, inserted) and a sentence saying so."""

    id: int
    problem: str
    message: str


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_json(self) -> dict:
        return {"ok": self.ok, "rows": self.rows, "head": self.head,
                "broken": asdict(self.broken) if self.broken else None}


def verify(db: sqlite3.Connection) -> ChainReport:
    """Recompute the chain, oldest row first; stop at the first row that does not hold."""
    rows = db.execute("SELECT id, hash, " + ", ".join(FIELDS) + " FROM audit_log ORDER BY id").fetchall()
    head = (rows[-1][1] or GENESIS) if rows else GENESIS
    previous, previous_id = None, 0
    for i, (row_id, stored, *values) in enumerate(rows):
        text = content(values)
        where = f"audit row {row_id} ({values[2]} at {values[0]})"
        if stored is None:
            return ChainReport(len(rows), head, ChainBreak(
                row_id, "inserted", f"{where} has no chain hash: it was added outside RadSight"))
        if link(previous, text) == stored:
            previous, previous_id = stored, row_id
            continue
        # Which earlier or later row was this one chained to when it was written?
        chained_to = next((j for j, other in enumerate([None] + [r[1] for r in rows])
                           if j - 1 != i and link(other, text) == stored), None)
        if chained_to is not None and chained_to - 1 < i - 1:
            extra = [r[0] for r in rows[chained_to:i]]
            return ChainReport(len(rows), head, ChainBreak(
                row_id, "inserted", f"{where} was written after row {rows[chained_to - 1][0] if chained_to else 'none (the start)'}"
                f": the rows between ({', '.join(map(str, extra))}) were inserted later"))
        if chained_to is not None:
            return ChainReport(len(rows), head, ChainBreak(
                row_id, "reordered", f"{where} was written after row {rows[chained_to - 1][0]}, which now comes "
                f"later: the rows were reordered"))
        if row_id != previous_id + 1:
            gap = f"ids jump from {previous_id} to {row_id}" if previous_id else f"the log starts at id {row_id}, not 1"
            return ChainReport(len(rows), head, ChainBreak(
                row_id, "removed", f"rows before {where} were removed ({gap})"))
        return ChainReport(len(rows), head, ChainBreak(
            row_id, "edited", f"{where} does not match its hash: it"
            + (f", or the row before it ({previous_id}), " if previous_id else " ")
            + "was changed after it was written"))
    return ChainReport(len(rows), head, None)
