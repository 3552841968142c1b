"""`radsight deid`: de-identified copies of studies for teaching (PS3.15 Basic Profile with
modified dates; viewer.dicom.deid). The summary names pseudonyms and preserved day intervals,
never the date shift or the key."""

from __future__ import annotations


def add_deid_parser(sub) -> None:
    p = sub.add_parser("deid", help="de-identified copies of DICOM studies (PS3.15 Basic Profile, modified dates)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders (several studies, patients)")
    p.add_argument("--out", required=True, help="new or empty folder for the de-identified copies")
    p.add_argument("--key-file", help="project key file (default: deid.key in the user data folder, "
                                      "created on first use); the same key gives the same pseudonyms")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_deid)


def _print_run(d: dict) -> None:
    print(f"{d['files_written']} de-identified files in {d['out']} ({d['profile']['method']})")
    for s in d["studies"]:
        days = s["days_from_first_study"]
        when = f"day {days} of this patient" if days is not None else "date unknown"
        print(f"  {s['patient_id']} {s['folder']}: {s['files']} files, {s['series']} series "
              f"{'/'.join(s['modalities'])}, {when}")
        for w in s["warnings"]:
            print(f"    warning ({w['files']} files): {w['message']}")
    for p in d["unreadable"]:
        print(f"  not written: {p['file']}: {p['reason']}")
    if d["not_dicom"]:
        print(f"  {len(d['not_dicom'])} files that are not DICOM were not copied")


def cmd_deid(args) -> int:
    from viewer.cli import StderrProgress, _emit
    from viewer.core.errors import RadSightError
    from viewer.dicom.deid import deidentify_paths
    from viewer.dicom.deid_key import DeidKey

    key = DeidKey.from_file(args.key_file) if args.key_file else DeidKey.default()
    run = deidentify_paths(args.paths, args.out, key, progress=StderrProgress(not args.quiet, min_total=20))
    if not run.written:
        reasons = "; ".join(f"{p.path}: {p.reason}" for p in run.unreadable[:3])
        raise RadSightError(f"no DICOM file could be de-identified under {', '.join(args.paths)}"
                            + (f" ({reasons})" if reasons else ""))
    _emit(run.to_json(), args.json, _print_run)
    return 0
