"""The `radsight` command (DESIGN.md contract): every subcommand takes --json, exits non-zero with
a one-line error on stderr for bad input, and reports progress on stderr for long work."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from viewer import __version__
from viewer.core.errors import RadSightError
from viewer.core.points import parse_point


class StderrProgress:
    """Progress on stderr for work that takes a while: one rewritten line on a terminal, a plain
    line every few seconds in a log."""

    def __init__(self, enabled: bool = True, min_total: int = 200):
        self.enabled, self.min_total, self._last = enabled, min_total, 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        interval = 0.25 if self.tty else 3.0
        if not self.enabled or total < self.min_total or (now - self._last < interval and done < total):
            return
        self._last = now
        if self.tty:
            print(f"\r\033[K{message}: {done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        else:
            print(f"{message}: {done}/{total}", file=sys.stderr, flush=True)


def _emit(data, as_json: bool, human) -> None:
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        human(data)


def _print_info(data: dict) -> None:
    print(f"{data['path']}: {len(data['series'])} series in {data['files_seen']} files")
    for s in data["series"]:
        if not s.get("loadable", True):
            print(f"  {s['series_key']}: NOT LOADABLE: {s.get('error')}")
            continue
        shape = "x".join(str(v) for v in reversed(s["shape_zyx"]))
        spacing = " x ".join(f"{v:g}" for v in s["spacing_xyz"])
        print(f"  {s.get('modality') or '?':3} #{s.get('series_number')} {s.get('description') or ''}: "
              f"{shape} voxels, {spacing} mm ({s['frame_count']} frames)")
        for w in s.get("warnings", []):
            print(f"    warning: {w['message']}")
    for o in data["non_image"]:
        print(f"  not an image: {o['file']} ({o['kind']})")
    for p in data["unreadable"]:
        print(f"  skipped: {p['file']}: {p['reason']}")


def cmd_info(args) -> int:
    from viewer.dicom import open_path
    from viewer.dicom.info import info

    path = Path(args.path)
    if not path.exists():
        raise RadSightError(f"{path}: no such file or folder")
    series, result = open_path(path, progress=StderrProgress(not args.quiet))
    data = info(path, series, result)
    if not args.no_index and series:
        from viewer.store import Store

        with Store() as store:
            store.import_scan(series, result)
    _emit(data, args.json, _print_info)
    return 0


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("win32", "darwin")


def cmd_demo(args) -> int:
    from viewer.demo import generate_demo
    from viewer.dicom import load, open_path
    from viewer.dicom.info import info
    from viewer.store import Store, user_data_dir

    out = Path(args.out) if args.out else user_data_dir() / "demo"
    progress = StderrProgress(not args.quiet, min_total=0)
    demo = generate_demo(out, preset=args.preset, progress=progress)
    studies = []
    with Store() as store:
        for visit in demo.visits:
            series, result = open_path(visit.study_dir)
            store.import_scan(series, result)
            studies.append(info(visit.study_dir, series, result))
    latest = demo.visits[-1]
    volume = load(latest.study_dir)
    labels = load(latest.labels_path)
    analyses = _demo_analyses(demo, out / "results", progress, quiet=args.quiet)
    analysis = analyses[-1] if analyses else None
    records = analysis["nodules"] if analysis else []
    present = [n for n in records if n.get("present", True)]
    ai_labels = None
    if analysis and analysis["outputs"]["seg"]:
        from viewer.dicom.seg import read_seg_labels

        ai_labels, _ = read_seg_labels(analysis["outputs"]["seg"][0], volume)
    largest = max(present, key=lambda n: n["volume_mm3"]) if present else None
    snapshots = _demo_snapshots(volume, ai_labels if ai_labels is not None else labels, largest, out / "snapshots")
    heatmaps = _demo_explanations(latest.study_dir, present, out / "results" / latest.study_dir.parent.name)
    if heatmaps:
        snapshots.append(_demo_heatmap_snapshot(volume, heatmaps, out / "snapshots"))
    charts = _demo_charts(present, out / "charts")
    errors = [e for a in analyses for e in a.get("analysis_errors", [])]
    outputs = {"snapshots": [str(p) for p in snapshots]}
    if analysis and analysis["outputs"]["seg"]:
        outputs["seg"] = analysis["outputs"]["seg"][0]
    if analysis and analysis["outputs"].get("nodules"):
        outputs["nodules"] = analysis["outputs"]["nodules"]
    if heatmaps:
        outputs["heatmaps"] = [h["path"] for h in heatmaps]
    if charts:
        outputs["charts"] = [str(p) for p in charts]
    bio_model = _demo_bio_model(latest.study_dir, volume, largest, out / "models3d") if args.teaching else None
    if bio_model:
        outputs.update(meshes=bio_model["files"], turntable=bio_model["turntable"])
    report = _demo_report(latest.study_dir, analysis, snapshots[:1], charts, out / "reports") if analysis else None
    if report:
        outputs.update(sr=report["sr"], pdf=report["pdf"], summary=report["summary"])
    data = {
        "studies": [str(v.study_dir) for v in demo.visits],
        "ground_truth": str(demo.ground_truth_path),
        "models": analysis["models"] if analysis else [],
        "nodules": records,
        "assessment": analysis.get("assessment") if analysis else None,
        "analyses": [{"study": a["study"], "priors": a["priors"], "seconds": a["seconds"],
                      "nodules": sum(1 for n in a["nodules"] if n.get("present", True))} for a in analyses],
        "outputs": outputs,
        "explanations": heatmaps,
        "bio_model": {k: bio_model[k] for k in ("labels_source", "labels", "turntable", "frames")} if bio_model else None,
        "report": report,
        "series": [s for study in studies for s in study["series"]],
        **({"analysis_errors": errors} if errors else {}),
    }

    def human(d):
        print("Synthetic demo studies (not patient data):")
        for s in d["studies"]:
            print(f"  {s}")
        print(f"Ground truth: {d['ground_truth']}")
        for m in d["models"]:
            print(f"AI: {m['id']} {m['version']} on {m['provider']} (demonstration model, synthetic data only)")
            for line in _domain_lines(m):
                print(f"  {line}")
        for a in d["analyses"]:
            print(f"Nodule analysis of {a['study']} with {len(a['priors'])} prior(s): {a['nodules']} nodule(s), "
                  f"{a['seconds']:.0f} s")
        if d["nodules"]:
            print("Nodules of the latest visit (AI detection, pending the reader's review):")
            for line in _nodule_lines(d["nodules"]):
                print(f"  {line}")
        if d.get("assessment"):
            print(_assessment_line(d["assessment"]))
        if "seg" in d["outputs"]:
            print(f"DICOM SEG: {d['outputs']['seg']}")
        if d["explanations"]:
            print("Nodule type with explanation map, at the nodules detected in the latest visit:")
            for h in d["explanations"]:
                print(f"  {h['nodule']}: {h['description']}: {h['path']}")
        for c in d["outputs"].get("charts", []):
            print(f"Growth chart: {c}")
        b = d["bio_model"] or {"labels": []}
        if d["bio_model"]:
            print(f"3-D bio-model ({b['labels_source']}): {len(b['labels'])} parts as GLB and STL in "
                  f"{Path(d['outputs']['meshes'][0]).parent}; turntable ({b['frames']} frames): {b['turntable']}")
        for m in b["labels"]:
            state = "watertight" if m.get("watertight") else "NOT watertight: " + "; ".join(m.get("problems", []))
            print(f"  {m['name']}: {m.get('triangles')} triangles, {m.get('volume_mm3', 0):.0f} mm3 "
                  f"({m.get('volume_difference_pct') or 0:+.2f}% of the mask), {state}")
        if d.get("report"):
            r = d["report"]
            print(f"Signed report {r['id']} v{r['version']} by {r['signer']} (demo identity {r['identity']}):")
            print(f"  DICOM SR: {r['sr']}\n  PDF: {r['pdf']}\n  patient summary: {r['summary']}")
        print("Snapshots (latest visit, " + ("AI segmentation" if "seg" in d["outputs"] else "phantom labels")
              + " outlined" + (", through the largest detected nodule" if d["nodules"] else "") + "):")
        for s in d["outputs"]["snapshots"]:
            print(f"  {s}")
        for s in d["series"]:
            for w in s.get("warnings", []):
                print(f"  warning: {w['message']}")

    _emit(data, args.json, human)
    if args.no_gui or not _has_display():
        return 1 if errors else 0
    from viewer.qt.main_window import run_viewer

    prior = load(demo.visits[0].study_dir) if len(demo.visits) > 1 else None
    names = {int(k): v for k, v in json.loads(Path(demo.ground_truth_path).read_text()).get("labels", {}).items()}
    code = run_viewer(volume=volume, labels=labels, labels_source="synthetic phantom labels (ground truth, not AI)",
                      label_names=names, series_key=analysis["series_key"] if analysis else str(volume.source.series_uid),
                      prior=prior, ground_truth_hidden=ai_labels is not None)
    return code or (1 if errors else 0)


def _demo_report(study_dir: Path, analysis: dict, key_images: list[Path], charts: list[Path], folder: Path) -> dict:
    """The demo ends as a reading ends: a Lung-RADS report drafted from the latest visit's stored
    findings, every value confirmed by the demo's synthetic reader (a radiologist reviews each
    one), signed with a demo identity, exported as signed SR and PDF, and the patient summary."""
    from viewer.report.drafts import Drafts, check_ready_to_sign
    from viewer.report.export import default_name, export_signed, release_summary, summary_name
    from viewer.report.identity import DEMO_PASSWORD, create_demo_identity, load_identity
    from viewer.report.model import KeyImage
    from viewer.report.signing import sign_report
    from viewer.report.summary import approve_summary, draft_summary
    from viewer.report.templates import LUNG_SCREENING, find_template
    from viewer.store import Store, user_data_dir

    p12 = user_data_dir() / "identities" / "demo-reader.p12"
    if not p12.exists():
        create_demo_identity(p12, "RadSight Demo Reader", DEMO_PASSWORD)
    identity = load_identity(p12, DEMO_PASSWORD)
    template = find_template(LUNG_SCREENING)
    folder.mkdir(parents=True, exist_ok=True)
    with Store() as store:
        drafts = Drafts(store, user="demo-reader")
        study = {"study_uid": analysis["study_uid"], "series_uid": analysis.get("series_uid"),
                 "source_paths": [str(Path(study_dir).resolve())]}
        report = drafts.create(template, analysis, nodule_rows=store.nodules(analysis["series_key"]), study=study)
        for path in key_images:
            report = drafts.add_key_image(report.id, KeyImage(str(path), caption="Largest nodule, axial, lung window"))
        report = drafts.confirm(report.id)
        check_ready_to_sign(report, template)
        signed = store.store_signed(sign_report(report, identity))
        sr = export_signed(store, signed, "sr", folder / default_name(signed, "sr"), identity)
        pdf = export_signed(store, signed, "pdf", folder / default_name(signed, "pdf"), identity, charts)
        summary = approve_summary(draft_summary(signed), approver=signed.signer)
        summary_path = release_summary(store, signed, summary, folder / summary_name(signed), user="demo-reader")
    return {"id": signed.id, "version": signed.version, "signer": signed.signer, "signed_at": signed.signed_at,
            "findings": sum(1 for f in signed.findings if f.include), "sr": str(sr), "pdf": str(pdf),
            "summary": str(summary_path), "identity": str(p12)}


def _demo_analyses(demo, out: Path, progress, quiet: bool = False) -> list[dict]:
    """`radsight analyze` on every visit in date order, each with all earlier visits as priors, so
    that every visit's nodules are stored with their tracking UIDs; [] without bundled models."""
    from viewer.inference.registry import discover
    from viewer.plugins.study_analysis import analyze_study
    from viewer.store import Store

    registry = discover()
    if not registry.for_modality("CT", task="segmentation"):
        print("no bundled CT segmentation model: skipping the AI analysis", file=sys.stderr)
        return []
    results = []
    with Store() as store:
        for n, visit in enumerate(demo.visits):
            priors = [v.study_dir for v in demo.visits[:n]]
            if not quiet:
                print(f"nodule analysis: visit {n + 1} of {len(demo.visits)} ({visit.study_dir.parent.name}) with "
                      f"{len(priors)} prior(s)", file=sys.stderr, flush=True)
            started = time.monotonic()
            data = analyze_study(visit.study_dir, out / visit.study_dir.parent.name, priors=priors, store=store,
                                 registry=registry, progress=progress, report=_error_line("demo"))
            data.update(study=str(visit.study_dir), priors=[str(p) for p in priors],
                        seconds=round(time.monotonic() - started, 1))
            results.append(data)
    return results


def _demo_explanations(study_dir: Path, nodules: list[dict], out: Path) -> list[dict]:
    """The bundled classifier with its Grad-CAM map at every nodule detected in the latest visit."""
    from viewer.inference.explain_study import explain_points
    from viewer.inference.registry import discover
    from viewer.store import Store

    registry = discover()
    classifiers = [c for c in registry.for_modality("CT", task="classification") if c.crop_mm]
    if not classifiers or not nodules:
        return []
    with Store() as store:
        maps = explain_points(study_dir, classifiers[0].id, [n["centre_lps_mm"] for n in nodules], out, store, registry)
    return [{"nodule": n["id"], **m} for n, m in zip(nodules, maps)]


def _demo_heatmap_snapshot(volume, heatmaps: list[dict], folder: Path) -> Path:
    """Axial picture through the first explained nodule with its map and colour bar."""
    from viewer.core.presets import find_preset
    from viewer.dicom.pmap import read_parametric_map
    from viewer.render.offscreen import write_png
    from viewer.render.snapshot import render_slice

    first = heatmaps[0]
    values, _ = read_parametric_map(first["path"], volume)
    lung = find_preset("lung")
    rgb = render_slice(volume, "axial", at=first["point_lps_mm"], window=(lung.width, lung.level), scale=1.5,
                       heatmap=values, heatmap_title=first["method"])
    return write_png(rgb, folder / "explanation-axial.png")


def _demo_snapshots(volume, labels, nodule: dict | None, folder: Path) -> list[Path]:
    """Axial, coronal and sagittal pictures through a nodule (the largest detected), else the middle."""
    from viewer.core.presets import find_preset
    from viewer.render.offscreen import write_png
    from viewer.render.snapshot import render_slice

    at = nodule["centre_lps_mm"] if nodule else None
    lung = find_preset("lung")
    paths = []
    for view in ("axial", "coronal", "sagittal"):
        rgb = render_slice(volume, view, at=at, window=(lung.width, lung.level), labels=labels, outline=True, scale=1.5)
        paths.append(write_png(rgb, folder / f"{view}.png"))
    return paths


def _demo_charts(nodules: list[dict], folder: Path) -> list[Path]:
    """The growth chart (all visits) of the largest nodule seen at more than one visit, from the
    plugins' report figures; none without the lung-nodule plugin or a nodule that persists."""
    from viewer.plugins.report_figures import report_figures

    persisting = [n for n in nodules if len(n.get("history") or []) > 1]
    if not persisting:
        return []
    paths, problems = report_figures([max(persisting, key=lambda n: n["volume_mm3"])], folder)
    for problem in problems:
        print(f"radsight demo: {problem}", file=sys.stderr)
    return paths


def _demo_bio_model(study_dir: Path, volume, largest: dict | None, folder: Path) -> dict:
    """For educators: the latest visit as a 3-D bio-model (one GLB with named, coloured parts and
    an STL per part for printing; the stored nodules as highlighted parts) and a turntable GIF
    with the largest nodule captioned; mesh statistics per part."""
    from viewer.core.label_style import LabelStyle
    from viewer.render.annotations import Annotation
    from viewer.render.mesh_export import export_meshes, study_labels
    from viewer.render.snapshot import Scene3D
    from viewer.render.turntable import render_turntable
    from viewer.store import Store

    with Store() as store:
        source, _ = study_labels(study_dir, store=store)
    meshes = export_meshes(source, folder, ["glb", "stl"], quality="standard")
    captions = [Annotation(tuple(largest["centre_lps_mm"]), f"nodule {largest['id']}")] if largest else []
    # The GLB's colours; anatomy see-through (bone a little less) so the highlighted nodules show.
    styles = {p.value: LabelStyle(p.color, 1.0 if p.finding else 0.5 if p.name == "bone" else 0.12)
              for p in source.parts()}
    scene = Scene3D(volume, "ct-bone", source.labels, annotations=captions, label_styles=styles)
    turntable = render_turntable(scene, folder / "turntable.gif", frames=24, fps=12.0, elevation=10.0, size=(360, 360))
    return {"files": meshes["files"], "labels": meshes["labels"], "labels_source": meshes["labels_source"],
            "turntable": str(turntable.out), "frames": turntable.frames}


def _domain_lines(model: dict) -> list[str]:
    """The model's input check (viewer.inference.domain) as `radsight analyze` prints it."""
    check = model.get("domain")
    if not check or check.get("within"):
        return ["within the validated domain"] if check else []
    return ["OUTSIDE THE VALIDATED DOMAIN:", *(f"- {reason}" for reason in check["reasons"])]


def _assessment_line(a: dict) -> str:
    """The study assessment: an AI-only one says so, and a negative says "AI found no nodules"
    with the detector's sensitivity and no category until the reader confirms."""
    pending = f" [{a['status']}]" if a.get("status") else ""
    if a.get("category") is None and a.get("proposed_category"):
        return f"{a['guideline']}: {a['rule']}; category {a['proposed_category']} only on the reader's confirmation{pending}"
    return f"{a['guideline']}: {a['category']} ({a['management']}){pending}"


def _nodule_lines(nodules: list[dict]) -> list[str]:
    """One line per NODULE record, as `radsight analyze` prints them."""
    lines = []
    for n in nodules:
        if not n.get("present", True):
            lines.append(f"nodule {n['id']}: {n.get('status', 'not seen')} at this visit "
                         f"(last {n.get('last_volume_mm3')} mm3)")
            continue
        lr = f", Lung-RADS {n['lung_rads']['category']}" if n.get("lung_rads") else ""
        prior = n.get("prior")
        vdt = (f", {prior['volume_change_pct']:+.0f}% in {prior['days']:.0f} days, VDT {prior['vdt_days']} days"
               if prior else "")
        status = f" [{n['status']}]" if n.get("status") else ""
        lines.append(f"nodule {n['id']}{status}: {n['type']}, {n['mean_diameter_mm']} mm, {n['volume_mm3']} mm3{vdt}{lr}")
    return lines


def cmd_open(args) -> int:
    if not _has_display():
        raise RadSightError("no display: the viewer needs one (use `radsight render` or `radsight demo --no-gui`)")
    from viewer.qt.main_window import run_viewer

    for path in args.paths:
        if not Path(path).exists():
            raise RadSightError(f"{path}: no such file or folder")
    return run_viewer(paths=args.paths)


def cmd_bench(args) -> int:
    from viewer.bench.load import DEFAULT_SYNTAXES, run_load_benchmark

    syntaxes = tuple(args.syntax) if args.syntax else DEFAULT_SYNTAXES
    report = run_load_benchmark(slices=args.slices, repeats=args.repeat, workdir=args.workdir, syntaxes=syntaxes,
                                series=args.series, log=lambda m: print(m, file=sys.stderr, flush=True))
    _emit(report, args.json, lambda r: print(r["text"]))
    return 0


def cmd_bench_decoders(args) -> int:
    from viewer.bench.decoders import format_table, run_decoder_benchmark

    rows = run_decoder_benchmark(Path(args.file) if args.file else None, repeats=args.repeat,
                                 log=lambda m: print(m, file=sys.stderr, flush=True) if args.verbose else None)
    _emit({"rows": rows}, args.json, lambda r: print(format_table(r["rows"])))
    return 0


def cmd_bench_inference(args) -> int:
    from viewer.bench.inference import run_inference_benchmark

    report = run_inference_benchmark(repeats=args.repeat, threads=args.threads, whole_ct=not args.no_whole_ct,
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
    _emit(report, args.json, lambda r: print(r["text"]))
    return 0


def cmd_bench_explain(args) -> int:
    from viewer.bench.explain import run_explain_benchmark

    report = run_explain_benchmark(repeats=args.repeat, threads=args.threads,
                                   log=lambda m: print(m, file=sys.stderr, flush=True))
    _emit(report, args.json, lambda r: print(r["text"]))
    return 0


def cmd_bench_detection(args) -> int:
    from viewer.bench.detection import run_detection_benchmark

    if not Path(args.path).exists():
        raise RadSightError(f"{args.path}: no such file or folder")
    report = run_detection_benchmark(args.path, provider=args.provider,
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
    _emit(report, args.json, lambda r: print(r["text"]))
    return 0


def cmd_bench_render(args) -> int:
    from viewer.render.bench import run_render_benchmark

    report = run_render_benchmark(frames=args.frames, log=lambda m: print(m, file=sys.stderr, flush=True))
    _emit(report, args.json, lambda r: print(r["text"]))
    return 0


def cmd_analyze(args) -> int:
    from viewer.plugins.study_analysis import analyze_study
    from viewer.store import Store

    for path in [args.path, *(args.prior or [])]:
        if not Path(path).exists():
            raise RadSightError(f"{path}: no such file or folder")
    out = Path(args.out) if args.out else Path(args.path).resolve().parent / "radsight-results"
    progress = StderrProgress(not args.quiet, min_total=2)
    with Store() as store:
        data = analyze_study(args.path, out, priors=args.prior or [], model_ids=args.model, store=store,
                             provider=args.provider, progress=progress, options=_analysis_options(args),
                             report=_error_line("analyze"))
    errors = data.get("analysis_errors", [])

    def human(d):
        for m in d["models"]:
            found = ", ".join(f"{name}: {v['voxels']} voxels" for name, v in m["labels"].items())
            print(f"{m['id']} {m['version']} [{m['provider']}]: {found}")
            for line in _domain_lines(m):
                print(f"  {line}")
        for check in (d.get("domain") or {}).get("checks", []):
            if check["model"] not in {m["id"] for m in d["models"]}:  # e.g. the classifier behind the nodules
                print(f"{check['model']} {check['version']} (used by the nodule analysis):")
                for line in _domain_lines({"domain": check}):
                    print(f"  {line}")
        for line in _nodule_lines(d["nodules"]):
            print(line)
        if d.get("assessment"):
            print(_assessment_line(d["assessment"]))
        for key, value in d["outputs"].items():
            for path in value if isinstance(value, list) else [value]:
                print(f"{key}: {path}")

    _emit(data, args.json, human)
    return 1 if errors else 0


def _analysis_options(args) -> dict:
    return {"guideline": getattr(args, "guideline", "lung-rads")}


def _error_line(command: str):
    """How a failing plugin analysis is reported: one error line on stderr."""
    return lambda line: print(f"radsight {command}: error: {line}", file=sys.stderr)


def cmd_plugins(args) -> int:
    from viewer.plugins import discover

    data = discover().to_json()

    def human(d):
        for p in d["plugins"]:
            print(f"{p['name']} {p['version']} ({p['display_name']}) from {p['distribution'] or p['manifest']}")
            for kind, items in p["contributions"].items():
                print(f"  {kind}: {', '.join(c['id'] for c in items)}")
        if not d["plugins"]:
            print("no plugins installed")
        for problem in d["problems"]:
            print(f"problem: plugin {problem['plugin']}: {problem['reason']}")

    _emit(data, args.json, human)
    return 0


def _plugin_command(contribution):
    """The argparse handler of a plugin command: imports the plugin's code only when it runs."""

    def run(args) -> int:
        return int(contribution.load()(args) or 0)

    return run


def _add_plugin_commands(sub) -> None:
    """Subcommands contributed by plugins, built from their manifests' declared arguments so that
    parsing needs none of the plugins' code. A name the core already uses is a plugin problem."""
    from viewer.plugins import PluginProblem, discover

    plugins = discover()
    for command in plugins.contributions("commands"):
        if command.id in sub.choices:
            plugins.add_problem(PluginProblem(command.plugin, command.spec.python_name or "",
                                              f"command {command.id!r} is a built-in radsight command; "
                                              "the plugin's is not added"))
            continue
        p = sub.add_parser(command.id, help=f"{command.title} [plugin {command.plugin}]")
        for argument in command.spec.arguments:
            argument.add_to(p)
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        p.set_defaults(func=_plugin_command(command))


def cmd_explain(args) -> int:
    from viewer.inference.explain_study import explain_study
    from viewer.store import Store

    if not Path(args.path).exists():
        raise RadSightError(f"{args.path}: no such file or folder")
    point = parse_point(args.at) if args.at else None
    with Store() as store:
        data = explain_study(args.path, args.model, args.out, point, method=args.method, target=args.target,
                             palette=args.palette, store=store, provider=args.provider)

    def human(d):
        print(f"{d['description']} [{d['model']['provider']}]")
        if d["note"]:
            print(d["note"])
        print(f"peak at {', '.join(f'{v:.1f}' for v in d['peak_lps_mm'])} mm (LPS)")
        print(f"Parametric Map: {d['path']}")

    _emit(data, args.json, human)
    return 0


def cmd_models(args) -> int:
    from viewer.inference import registry
    from viewer.inference.session import provider_order

    if args.models_command == "list":
        reg = registry.discover()
        provider = provider_order()[0]
        data = [dict(card.to_json(), provider=provider) for card in reg.cards]
        problems = [{"card": str(path), "problem": reason} for path, reason in reg.problems]

        def human(d):
            for m in d:
                print(f"{m['id']} {m['version']}  {m['task']}  {', '.join(m['modality']) or 'any modality'}  "
                      f"[{m['provider']}]  {m['intended_use']}")
            for p in problems:
                print(f"problem: {p['problem']}", file=sys.stderr)
            if not d:
                print("no models installed")

        _emit(data, args.json, human)
        return 0
    if args.models_command == "validate":
        card = registry.validate(args.path)
        _emit(card.to_json(), args.json, lambda d: print(f"{d['id']} {d['version']}: valid"))
        return 0
    target = registry.add(args.path)
    _emit({"installed": str(target)}, args.json, lambda d: print(f"installed in {d['installed']}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radsight", description="RadSight radiology viewer")
    parser.add_argument("--version", action="version", version=f"radsight {__version__}")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("open", help="the desktop viewer, optionally opening folders or files")
    p.add_argument("paths", nargs="*")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("info", help="list every series found under PATH with its geometry")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--no-index", action="store_true", help="do not add what was found to the local study index")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="synthetic demo studies (two or more time points), analysis, viewer")
    p.add_argument("--out", help="folder for the demo studies (default: the user data folder)")
    p.add_argument("--preset", default="demo", choices=["demo", "small"])
    p.add_argument("--no-gui", action="store_true", help="write outputs and print where; open no window")
    p.add_argument("--teaching", action="store_true",
                   help="also the latest visit as a 3-D bio-model (GLB, STL per part) and a turntable GIF "
                        "(a few more minutes on a CPU)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("analyze", help="run the applicable AI models and write DICOM SEG")
    p.add_argument("path")
    p.add_argument("--model", action="append", help="model id (repeatable); default: all applicable")
    p.add_argument("--prior", action="append", help="an older study of the same patient (repeatable), for "
                                                     "the plugins' tracking and growth")
    p.add_argument("--guideline", choices=["lung-rads", "fleischner"], default="lung-rads",
                   help="nodule management context: lung-rads (screening, v2022; the default) or fleischner "
                        "(incidental nodules, 2017); Lung-RADS categories are reported in both")
    p.add_argument("--out", help="folder for the results (default: radsight-results beside PATH)")
    p.add_argument("--provider", choices=["auto", "cuda", "cpu"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("explain", help="Grad-CAM (or occlusion) map of a classifier's decision, as a DICOM Parametric Map")
    p.add_argument("path")
    p.add_argument("--model", required=True, help="classifier model id (radsight models list)")
    p.add_argument("--at", help="X,Y,Z in LPS mm: the point whose crop the model classifies")
    p.add_argument("--out", required=True, help="FILE.dcm, or a folder to write into")
    p.add_argument("--method", choices=["auto", "gradcam", "occlusion"], default=None,
                   help="default: the card's, else Grad-CAM when the model converts faithfully, else occlusion")
    p.add_argument("--target", type=int, help="class index to explain (default: the predicted class)")
    p.add_argument("--palette", help="write 12-bit values with this matplotlib colour map as the DICOM palette "
                                     "(default: 32-bit float values, no palette)")
    p.add_argument("--provider", choices=["auto", "cuda", "cpu"], default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("models", help="list, validate and add ONNX models with their cards")
    models = p.add_subparsers(dest="models_command", required=True)
    m = models.add_parser("list", help="installed models and the provider they would run on")
    m.add_argument("--json", action="store_true")
    m = models.add_parser("validate", help="check a model folder: card, sha256, ONNX Runtime load")
    m.add_argument("path")
    m.add_argument("--json", action="store_true")
    m = models.add_parser("add", help="validate a model folder and install it in the user models folder")
    m.add_argument("path")
    m.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="benchmarks that print ratios against a reference run alongside")
    bench = p.add_subparsers(dest="bench_command", required=True)
    b = bench.add_parser("load", help="DICOM series load per transfer syntax: RadSight vs SimpleITK, first slice, "
                                      "re-open from cache, peak memory")
    b.add_argument("--slices", type=int, default=300)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--workdir", help="where to write the synthetic 512x512 series (default: a temp folder; "
                                     "an existing one is re-used)")
    b.add_argument("--syntax", action="append", metavar="NAME",
                   help="only this transfer syntax (repeatable): explicit-le, explicit-le-small-header, rle, "
                        "jpeg-ls, jpeg2000, jpeg-lossless, htj2k")
    b.add_argument("--series", metavar="PATH", help="measure this series folder instead of the synthetic CT")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    b = bench.add_parser("decoders", help="per-frame decode time of every installed decoder per compressed syntax, "
                                          "and whether 2 threads scale (the measurement behind the decoder order)")
    b.add_argument("file", nargs="?", help="a CT DICOM file to re-encode (default: a synthetic chest slice)")
    b.add_argument("--repeat", type=int, default=20)
    b.add_argument("--verbose", action="store_true", help="print each row as it is measured")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_decoders)
    b = bench.add_parser("inference", help="ONNX Runtime vs PyTorch eager sliding window; whole demo CT")
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--no-whole-ct", action="store_true", help="skip segmenting a whole demo CT")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_inference)
    b = bench.add_parser("explain", help="Grad-CAM vs one forward pass of the bundled classifier; occlusion")
    b.add_argument("--repeat", type=int, default=20)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_explain)
    b = bench.add_parser("detection", help="nodule and mass detection time on a study vs its load and segmentation")
    b.add_argument("path", help="a chest CT series folder (e.g. a 512x512x300 study)")
    b.add_argument("--provider", default="cpu")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_detection)
    b = bench.add_parser("render", help="slice scroll with overlay vs bare VTK slice render; 3D frame time")
    b.add_argument("--frames", type=int, default=60)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_render)

    p = sub.add_parser("plugins", help="installed plugins, their contributions and plugin problems")
    plugins = p.add_subparsers(dest="plugins_command", required=True)
    m = plugins.add_parser("list", help="plugins found through the radsight.plugins entry points")
    m.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    from viewer.cli_audit import add_audit_parser
    from viewer.cli_deid import add_deid_parser
    from viewer.cli_mesh import add_mesh_parser
    from viewer.cli_render import add_render_parser
    from viewer.cli_report import add_report_parser
    from viewer.cli_validate import add_validate_parser

    add_render_parser(sub)
    add_mesh_parser(sub)
    add_deid_parser(sub)
    add_report_parser(sub)
    add_validate_parser(sub)
    add_audit_parser(sub)
    _add_plugin_commands(sub)
    return parser


def _join_point_values(argv: list[str]) -> list[str]:
    """`--at -14.5,3,-40` would read as an unknown option to argparse (a negative first
    coordinate); join such values to their option so LPS points can be typed naturally."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in POINT_OPTIONS and token[:1] == "-" and (token[1:2].isdigit() or token[1:2] == "."):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


POINT_OPTIONS = ("--at", "--annotate", "--clip-plane", "--clip-box")


def _secure_data_dir() -> None:
    """On every start (the viewer starts through `radsight open` too): the data folder 0700 and its
    files 0600, whatever an older version, a copy or the umask left there."""
    from viewer.core.paths import user_data_dir
    from viewer.core.private_files import repair_data_dir

    repair_data_dir(user_data_dir())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_join_point_values(sys.argv[1:] if argv is None else list(argv)))
    if args.command is None:  # plain `radsight` opens the viewer
        args = build_parser().parse_args(["open"])
    try:
        _secure_data_dir()
        return args.func(args)
    except RadSightError as exc:
        print(f"radsight {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"radsight {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("RADSIGHT_DEBUG"):
            raise
        print(f"radsight {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set RADSIGHT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
