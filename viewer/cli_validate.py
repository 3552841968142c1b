"""`radsight validate`: a model or the nodule detection against reference annotations on a folder
of studies (FROC, LUNA16 CPM, volume and diameter error, Dice, pointing game, time per study);
the work is in viewer.validation. `--make-demo-set DIR` writes synthetic studies with their
ground truth as a reference to try it on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from viewer.core.errors import RadSightError


def add_validate_parser(sub) -> None:
    p = sub.add_parser("validate", help="a model or the nodule detection against reference annotations: FROC, CPM, "
                                        "volume error, Dice, pointing game")
    p.add_argument("data", nargs="?", help="folder of studies with their reference annotations (DICOM SEG, RTSTRUCT, "
                                           "TID 1500 SR, NIfTI/NRRD label maps, LUNA16 CSV, LIDC XML, PASCAL VOC boxes)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model", help="a segmentation model (nodule channel: FROC, Dice) or a classifier (explanation "
                                      "maps: pointing game) by id (radsight models list)")
    what.add_argument("--detector", action="store_true", help="the nodule detection with the bundled models")
    p.add_argument("--out", help="folder for validation.json, validation.html and the thumbnails")
    p.add_argument("--update-card", action="store_true",
                   help="write the figures into the user's copy of the model card as local_validation (the detector's "
                        "go into the segmentation model's card, scope 'detector')")
    p.add_argument("--description", help="what the data set is, for the card and the page (default: cases and folder)")
    p.add_argument("--min-diameter", type=float, default=3.0,
                   help="lesions smaller than this (mm) are excluded findings, neither hits nor false positives "
                        "(default 3, LUNA16's rule)")
    p.add_argument("--no-thumbnails", action="store_true", help="skip the pictures (faster)")
    p.add_argument("--make-demo-set", metavar="DIR", help="write synthetic demo studies with their nodule label maps "
                                                          "as references into DIR, then stop")
    p.add_argument("--cases", type=int, default=3, help="with --make-demo-set: how many studies (default 3)")
    p.add_argument("--seed", type=int, default=1000, help="with --make-demo-set: seed of the first study")
    p.add_argument("--preset", choices=["small", "demo"], default="small", help="with --make-demo-set: grid preset")
    p.add_argument("--provider", choices=["auto", "cuda", "cpu"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from viewer.cli import StderrProgress, _emit

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    if args.make_demo_set:
        return _make_demo_set(args, log)
    if not args.data:
        raise RadSightError("give the DATA folder to validate on (or --make-demo-set DIR)")
    if not args.model and not args.detector:
        raise RadSightError("say what to validate: --detector (the nodule detection) or --model ID")
    if not Path(args.data).is_dir():
        raise RadSightError(f"{args.data}: no such folder")
    if args.min_diameter < 0:
        raise RadSightError(f"--min-diameter {args.min_diameter} must be 0 or more (mm)")
    from viewer.validation.run import Options, validate

    method, card = _method(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RadSightError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    options = Options(min_diameter_mm=args.min_diameter, thumbnails=not args.no_thumbnails,
                      description=args.description or "")
    report = validate(args.data, method, out, options, progress=StderrProgress(not args.quiet, min_total=50), log=log)
    report["outputs"] = {}
    if out is not None:
        from viewer.validation.html import write_html

        report["outputs"] = {"json": str(out / "validation.json"), "html": str(out / "validation.html")}
        write_html(report, out / "validation.html")
    if args.update_card:
        from viewer.validation.card_update import update_card

        report["outputs"]["card"] = str(update_card(card, report, method.kind))
    if out is not None:
        (out / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    _emit(report, args.json, _human)
    return 0


def _method(args):
    from viewer.inference.registry import discover
    from viewer.validation.methods import ClassifierMethod, DetectorMethod, SegmentationMethod

    registry = discover()
    if args.detector:
        method = DetectorMethod(args.provider, registry)
        return method, registry.get(method.card_id)
    card = registry.get(args.model)
    if card.task == "segmentation":
        return SegmentationMethod(card, args.provider), card
    if card.task == "classification":
        return ClassifierMethod(card, args.provider), card
    raise RadSightError(f"model {card.id} is a {card.task} model; validate takes segmentation models and classifiers "
                        "(or --detector)")


def _make_demo_set(args, log) -> int:
    from viewer.cli import StderrProgress, _emit
    from viewer.validation.demo_set import make_demo_set

    if args.cases < 1:
        raise RadSightError(f"--cases {args.cases}: at least one study")
    log(f"writing {args.cases} synthetic studies ({args.preset} preset) into {args.make_demo_set}")
    folders = make_demo_set(args.make_demo_set, args.cases, args.seed, args.preset,
                            progress=StderrProgress(not args.quiet, min_total=0))
    data = {"data": str(args.make_demo_set), "studies": [str(f) for f in folders], "synthetic": True,
            "reference": "reference_nodules.nii.gz beside each study's dicom folder (one label per nodule)"}
    _emit(data, args.json, lambda d: print(f"{len(d['studies'])} synthetic studies in {d['data']}; validate with "
                                           f"`radsight validate {d['data']} --detector`"))
    return 0


def _human(report: dict) -> None:
    f = report["figures"]
    print(f"{report['description']} ({report['method']['kind']}: "
          + ", ".join(f"{m['id']} {m['version']}" for m in report["method"]["models"]) + ")")
    for c in report["cases"]:
        if c["error"]:
            state = f"ERROR {c['error']}"
        elif "pointing_game" in f:
            state = f"{c.get('lesions', 0)} lesions explained, {c.get('seconds', 0):.0f} s"
        else:
            state = (f"{c.get('hits', 0)}/{c.get('lesions', 0)} lesions found, {c.get('false_positives', 0)} false "
                     f"positives, {c.get('seconds', 0):.0f} s")
        print(f"  {c['case']}: {state}")
    if "pointing_game" in f:
        p = f["pointing_game"]
        print(f"pointing game: {p['peak_inside']} of {p['lesions']} peaks inside the lesion")
    else:
        print(f"lesions {f['lesions']}, found {f['hits']} (sensitivity {f['sensitivity']}), false positives "
              f"{f['false_positives']} ({f['false_positives_per_scan']} per scan), CPM {f['cpm']}")
    for key in ("volume_error_pct", "diameter_error_mm", "dice", "seconds_per_study"):
        if f.get(key):
            print(f"{key.replace('_', ' ')}: median {f[key]['median']}, mean absolute {f[key]['mean_abs']} "
                  f"(n = {f[key]['n']})")
    for w in report["warnings"]:
        print(f"warning: {w}")
    for key, path in report.get("outputs", {}).items():
        print(f"{key}: {path}")
