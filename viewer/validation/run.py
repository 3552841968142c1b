"""The validation run: every case of a data folder through the validated method, matched against
its reference lesions, and the figures a hospital needs before using the method on its own scans.

One case at a time (load, attach references, run, match, draw), so memory holds one series. A
case that fails (not a chest CT, a model that refuses it) is reported with the reason and the
run goes on; its lesions count as missed, since that is what a user would get.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer import __version__
from viewer.core.errors import RadSightError
from viewer.validation.discovery import Case, Discovery, discover
from viewer.validation.froc import froc
from viewer.validation.lesion import ReferenceLesion, Target
from viewer.validation.matching import DUPLICATE, EXCLUDED, HIT, Finding, MatchResult, dice, match

Log = Callable[[str], None]
LUNA16_MIN_DIAMETER_MM = 3.0
GEOMETRY_RANK = {"mask": 3, "boxes": 2, "centre and diameter": 1}


@dataclass
class Options:
    min_diameter_mm: float = LUNA16_MIN_DIAMETER_MM
    thumbnails: bool = True
    description: str = ""


@dataclass
class _Totals:
    hit_scores: list[float] = field(default_factory=list)
    fp_scores: list[float] = field(default_factory=list)
    lesions: int = 0
    scans: int = 0


def validate(data: Path | str, method, out: Path | str | None = None, options: Options | None = None,
             progress=None, log: Log | None = None, cancelled=None) -> dict:
    """Run `method` (viewer.validation.methods) on every case under `data` and return the JSON of
    the run; with `out`, thumbnails are written under it (validation.json / .html by the caller)."""
    data, options = Path(data), options or Options()
    say = log or (lambda message: None)
    if not data.is_dir():
        raise RadSightError(f"{data}: not a folder; give the folder that holds the studies and their references")
    found = discover(data, progress=progress)
    if not found.cases:
        raise RadSightError(f"{data}: no CT series and no NIfTI/NRRD image found; nothing to validate "
                            f"({len(found.skipped_series)} other series, {len(found.warnings)} problems)")
    say(f"{len(found.cases)} cases, {len(found.references)} reference files")
    out = Path(out) if out is not None else None
    totals = _Totals()
    cases, lesion_rows, fp_rows, ignored_rows, pointing = [], [], [], [], []
    used = set()
    extra: dict = {"dice_per_case": []}
    for n, case in enumerate(found.cases, 1):
        if cancelled is not None and cancelled():
            break
        record, lesions, result, case_extra = _run_case(n, len(found.cases), case, found, method, options, out,
                                                        progress, say, cancelled, used, pointing)
        cases.append(record)
        totals.scans += 1
        counted = [lesion for lesion in lesions if lesion.counts]
        totals.lesions += len(counted)
        if result is not None:
            for m in result.matches:
                if m.outcome == HIT:
                    totals.hit_scores.append(m.finding.score)
                elif m.outcome not in (DUPLICATE, EXCLUDED):
                    totals.fp_scores.append(m.finding.score)
        rows = case_extra.pop("rows")
        lesion_rows += rows["lesions"]
        fp_rows += rows["false_positives"]
        ignored_rows += rows["ignored"]
        if "dice" in case_extra:
            extra["dice_per_case"].append({"case": record["case"], "dice": case_extra["dice"]})
    warnings = list(found.warnings)
    for reference in found.references:
        if id(reference) not in used:
            warnings.append(f"reference not used: {reference.path} ({reference.format}) matched no case: it refers to "
                            f"{reference.refers_to()}")
    figures = _figures(totals, cases, lesion_rows, fp_rows, pointing, method, extra)
    return {
        "data": str(data), "date": dt.date.today().isoformat(), "radsight_version": __version__,
        "description": options.description or _default_description(data, cases, totals),
        "method": {"kind": method.kind, "models": [{"id": m.id, "version": m.version} for m in method.models]},
        "rules": {"hit": "detection centre inside the lesion (mask, box stack, LIDC contour union) or within "
                         "diameter/2 of a centre reference; one lesion credited once (highest score)",
                  "ignored": "detections inside an already credited lesion or inside excluded findings "
                             "(LUNA16: neither hits nor false positives)",
                  "min_diameter_mm": options.min_diameter_mm},
        "figures": figures, "cases": cases, "lesions": lesion_rows, "false_positives": fp_rows,
        "ignored_detections": ignored_rows, "skipped_series": found.skipped_series, "warnings": warnings,
    }


def _run_case(n: int, total: int, case: Case, found: Discovery, method, options: Options, out: Path | None,
              progress, say: Log, cancelled, used: set, pointing: list):
    from viewer.dicom import load_series
    from viewer.dicom.load import load_volume_file

    name = f"case {n} of {total}"
    record: dict = {"case": case.name, "error": None}
    rows: dict = {"lesions": [], "false_positives": [], "ignored": []}
    started = time.monotonic()
    try:
        if case.series is not None:
            volume = load_series(case.series, progress=progress, cancelled=cancelled)
            target = Target.from_series(case.series, volume, case.folder_key)
        else:
            volume = load_volume_file(case.image_file)
            target = Target(volume, {}, case.folder_key)
    except RadSightError as exc:
        record["error"] = f"cannot be loaded: {exc}"
        say(f"{name}: cannot be loaded")
        return record, [], None, {"rows": rows}
    record.update(series_uid=target.series_uid, shape_zyx=list(volume.shape),
                  spacing_xyz=[round(v, 4) for v in volume.spacing], load_seconds=round(time.monotonic() - started, 2))
    lesions, references, notes = _attach(target, found, options, used)
    record.update(references=references, notes=notes, lesions=sum(1 for l in lesions if l.counts),
                  excluded_findings=sum(1 for l in lesions if not l.counts))
    say(f"{name}: {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} voxels, {record['lesions']} reference "
        f"lesion(s) from {len(references)} file(s); running the {method.kind}")
    started = time.monotonic()
    case_extra: dict = {}
    try:
        findings, case_extra = method.findings(volume, progress=progress, cancelled=cancelled)
    except RadSightError as exc:
        record["error"] = f"{method.kind} failed: {exc}"
        findings = []
        say(f"{name}: {method.kind} failed: {exc}")
    record["seconds"] = round(time.monotonic() - started, 2)
    result = match(findings, lesions)
    record.update(detections=len(findings), hits=len(result.credited),
                  false_positives=len(result.false_positives))
    tag = f"c{n:02d}"
    started = time.monotonic()
    for lesion in lesions:
        rows["lesions"].append(_lesion_row(case.name, tag, volume, lesion, result, out, options))
        if method.kind == "classification" and lesion.counts and record["error"] is None:
            try:
                explained = method.explain(volume, lesion)
            except RadSightError as exc:
                explained = {"error": str(exc)}
            rows["lesions"][-1]["explanation"] = explained
            pointing.append(explained)
    if method.kind == "classification":  # the explanations are the work timed
        record["seconds"] = round(record["seconds"] + time.monotonic() - started, 2)
    for m in result.matches:
        if m.outcome == HIT:
            continue
        row = {"case": case.name, **m.finding.to_json(), "outcome": m.outcome}
        if m.lesion is not None:
            row["lesion"] = m.lesion.id
        if out is not None and options.thumbnails:
            row["thumbnail"] = _picture(out, f"{tag}-{m.finding.id}", volume, m.finding.centre_lps_mm, None, m.finding,
                                        m.finding.diameter_mm, f"{m.finding.id} {m.outcome}")
        (rows["false_positives"] if m.outcome not in (DUPLICATE, EXCLUDED) else rows["ignored"]).append(row)
    if case_extra.get("pattern"):
        record["pattern"] = case_extra.pop("pattern")
        say(f"{name}: {record['pattern']['description']}")
    if "label_mask" in case_extra:
        label = case_extra.pop("label_mask")
        case_extra["dice"] = _case_dice(label, [l for l in lesions if l.counts and l.mask is not None], volume)
        record["dice"] = case_extra["dice"]
    case_extra["rows"] = rows
    say(f"{name}: {record['detections']} findings, {record['hits']} hit(s), {record['false_positives']} false "
        f"positive(s), {record['seconds']:.0f} s")
    return record, lesions, result, case_extra


def _attach(target: Target, found: Discovery, options: Options, used: set):
    lesions: list[ReferenceLesion] = []
    references, notes = [], []
    for reference in found.references:
        try:
            attachment = reference.attach(target)
        except Exception as exc:  # a reference that breaks on this series must not stop the run
            notes.append(f"{reference.path}: cannot be placed on this series ({type(exc).__name__}: {exc})")
            continue
        if attachment is None:
            continue
        used.add(id(reference))
        references.append({"file": reference.path, "format": reference.format, "matched_by": attachment.matched_by,
                           "lesions": len(attachment.lesions)})
        notes += attachment.notes
        lesions += attachment.lesions
    lesions = _merge(lesions)
    out = []
    for lesion in lesions:
        if lesion.counts and lesion.diameter_mm is not None and lesion.diameter_mm < options.min_diameter_mm:
            lesion = dataclasses.replace(lesion, counts=False, excluded_because=(
                f"{lesion.diameter_mm:.1f} mm across: smaller than {options.min_diameter_mm:g} mm (LUNA16 counts "
                "nodules of 3 mm and more)"))
        out.append(lesion)
    return out, references, notes


def _merge(lesions: list[ReferenceLesion]) -> list[ReferenceLesion]:
    """One lesion where two reference files describe the same one (each one's centre inside the
    other, e.g. an LIDC XML and its LUNA16 row): the richer geometry is kept, the other file
    named in `also_in`."""
    kept: list[ReferenceLesion] = []
    for lesion in sorted(lesions, key=lambda l: -GEOMETRY_RANK[l.geometry]):
        twin = next((k for k, other in enumerate(kept) if other.source != lesion.source
                     and other.contains(np.asarray(lesion.centre_lps_mm)[None])[0]
                     and lesion.contains(np.asarray(other.centre_lps_mm)[None])[0]), None)
        if twin is None:
            kept.append(lesion)
        else:
            kept[twin] = dataclasses.replace(kept[twin], also_in=kept[twin].also_in + (lesion.source,))
    return kept


def _lesion_row(case: str, tag: str, volume, lesion: ReferenceLesion, result: MatchResult, out: Path | None,
                options: Options) -> dict:
    hit = result.hit_of(lesion)
    row = {"case": case, **lesion.to_json(), "found": hit is not None if lesion.counts else None}
    if hit is not None:
        f = hit.finding
        row["detection"] = f.to_json()
        if lesion.volume_mm3 and f.volume_mm3 is not None:
            row["volume_error_pct"] = round(100.0 * (f.volume_mm3 - lesion.volume_mm3) / lesion.volume_mm3, 1)
        if lesion.diameter_mm and f.diameter_mm is not None:
            row["diameter_error_mm"] = round(f.diameter_mm - lesion.diameter_mm, 2)
        if lesion.mask is not None and f.mask is not None:
            try:
                row["dice"] = round(dice(lesion.mask, f.mask), 4)
            except ValueError:
                pass
    if out is not None and options.thumbnails:
        title = f"{lesion.id} {'found' if hit else 'missed' if lesion.counts else 'excluded'}"
        row["thumbnail"] = _picture(out, f"{tag}-{lesion.id}", volume, lesion.centre_lps_mm, lesion,
                                    hit.finding if hit else None, lesion.diameter_mm, title)
    return row


def _picture(out: Path, name: str, volume, centre, lesion, finding: Finding | None, diameter, title: str) -> str:
    from viewer.validation.thumbnails import crop_picture

    size = float(np.clip(2.0 * (diameter or 10.0), 30.0, 120.0))
    path = crop_picture(volume, centre, out / "thumbnails" / f"{name}.png", lesion, finding, size, title)
    return str(path.relative_to(out))


def _case_dice(label: np.ndarray, lesions: list[ReferenceLesion], volume) -> float | None:
    """Dice of a model's whole lesion label against the union of the reference masks."""
    if not lesions:
        return None
    reference = np.zeros(volume.shape, bool)
    for lesion in lesions:
        offset = np.rint(volume.lps_to_index(lesion.mask.affine[:3, 3])).astype(int)[::-1]
        z, y, x = offset
        dz, dy, dx = lesion.mask.shape
        reference[z:z + dz, y:y + dy, x:x + dx] |= np.asarray(lesion.mask.voxels) > 0
    total = int(reference.sum() + label.sum())
    return round(2.0 * int((reference & label).sum()) / total, 4) if total else None


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    a = np.asarray(values, float)
    return {"n": len(a), "mean": round(float(a.mean()), 3), "median": round(float(np.median(a)), 3),
            "mean_abs": round(float(np.abs(a).mean()), 3), "min": round(float(a.min()), 3),
            "max": round(float(a.max()), 3)}


def _figures(totals: _Totals, cases: list[dict], lesion_rows: list[dict], fp_rows: list[dict], pointing: list[dict],
             method, extra: dict) -> dict:
    ran = [c for c in cases if c.get("seconds") is not None]
    figures: dict = {
        "cases": len(cases), "cases_failed": sum(1 for c in cases if c["error"]), "lesions": totals.lesions,
        "excluded_findings": sum(1 for r in lesion_rows if not r["counts"]),
        "seconds_per_study": _stats([c["seconds"] for c in ran]),
        "load_seconds_per_study": _stats([c["load_seconds"] for c in cases if "load_seconds" in c]),
    }
    if method.kind != "classification":
        figures.update(
            detections=sum(c.get("detections", 0) for c in cases), hits=len(totals.hit_scores),
            false_positives=len(totals.fp_scores),
            sensitivity=round(len(totals.hit_scores) / totals.lesions, 4) if totals.lesions else None,
            false_positives_per_scan=round(len(totals.fp_scores) / totals.scans, 3) if totals.scans else None,
            false_positives_by_kind=_by_kind(fp_rows),
            froc=froc(totals.hit_scores, totals.fp_scores, totals.lesions, totals.scans).to_json()
            if totals.lesions else None)
        figures["cpm"] = figures["froc"]["cpm"] if figures["froc"] else None
        figures.update(volume_error_pct=_stats([r["volume_error_pct"] for r in lesion_rows if "volume_error_pct" in r]),
                       diameter_error_mm=_stats([r["diameter_error_mm"] for r in lesion_rows if "diameter_error_mm" in r]),
                       dice=_stats([r["dice"] for r in lesion_rows if "dice" in r]))
        if method.kind == "segmentation":
            figures["dice_per_case"] = extra["dice_per_case"]
    else:
        done = [p for p in pointing if "peak_inside" in p]
        figures["pointing_game"] = {
            "lesions": len(done), "peak_inside": sum(p["peak_inside"] for p in done),
            "rate": round(sum(p["peak_inside"] for p in done) / len(done), 4) if done else None,
            "mass_inside": _stats([p["mass_inside"] for p in done]),
            "peak_distance_mm": _stats([p["peak_distance_mm"] for p in done]),
            "failed": len(pointing) - len(done)}
    return figures


def _by_kind(rows: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for row in rows:
        key = row.get("kind") or row.get("type") or "unspecified"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _default_description(data: Path, cases: list[dict], totals: _Totals) -> str:
    return f"{len(cases)} CT series with {totals.lesions} reference lesions in folder '{data.name}'"
