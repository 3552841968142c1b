"""`radsight audit`: check that the audit log's hash chain is whole (viewer.store.audit_chain)."""

from __future__ import annotations

from pathlib import Path

from viewer.core.errors import RadSightError


def cmd_audit_verify(args) -> int:
    from viewer.cli import _emit
    from viewer.store import Store, default_database_path
    from viewer.store.audit_chain import verify

    path = Path(args.db) if args.db else default_database_path()
    if args.db and not path.is_file():
        raise RadSightError(f"{path}: no such database file (leave out --db to check your own)")
    with Store(path) as store:
        report = verify(store.db)
    data = {"database": str(path), **report.to_json()}

    def human(d):
        if d["ok"]:
            print(f"{d['database']}: audit log intact, {d['rows']} entries, head {d['head']}")
        else:
            print(f"{d['database']}: audit log BROKEN at entry {d['broken']['id']} ({d['broken']['problem']}): "
                  f"{d['broken']['message']}")

    _emit(data, args.json, human)
    return 0 if report.ok else 1


def add_audit_parser(sub) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit log")
    audit = p.add_subparsers(dest="audit_command", required=True)
    c = audit.add_parser("verify", help="recompute the audit log's hash chain; exit 0 only if no entry was "
                                        "edited, removed, reordered or inserted")
    c.add_argument("--db", help="a database file (default: yours, in the user data folder)")
    c.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    c.set_defaults(func=cmd_audit_verify)
