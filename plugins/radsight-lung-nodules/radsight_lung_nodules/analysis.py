"""The `radsight analyze` step of the lung-nodule plugin: detect and measure the nodules of the
study, and with `--prior` studies register each visit to the one before, track every nodule
across the visits and fill the NODULE records' tracking and growth fields (DESIGN.md contract).

Priors are compared on what the reader decided about them where that is known: nodules stored
for a prior series (from an earlier analyze or from the viewer) are used, less those the reader
rejected; a prior never analysed is detected afresh with the same models.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from viewer.analysis.detection import Detection, detect_in_study
from viewer.analysis.guidelines import LUNG_RADS_MANAGEMENT, Assessment, fleischner_2017, worst
from viewer.analysis.patterns import LUNG_RADS_CATEGORY as PATTERN_CATEGORY
from viewer.analysis.patterns import LUNG_RADS_RULE as PATTERN_RULE
from viewer.analysis.patterns import OpacityPattern, split_pattern
from viewer.analysis.registration import Registration, register
from viewer.analysis.timepoint import TimePoint, check_pair
from viewer.analysis.tracking import Track, Tracking, track
from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.dicom import load_series, open_path
from viewer.dicom.study_facts import StudyFacts, read_study_facts
from viewer.inference.domain import detector_sensitivity
from viewer.inference.registry import discover
from radsight_lung_nodules.records import detection_record, lung_rads

GUIDELINES = ("lung-rads", "fleischner")
REGISTRATION_CACHE_VERSION = 1  # bump when register() changes, so older results are not reused


@dataclass
class _Visit:
    facts: StudyFacts
    volume: Volume
    series_key: str
    nodules: list            # NoduleLike: detections' measurements or stored records
    detections: list[Detection] | None = None  # only for the analysed (current) study


def run(context) -> dict:
    progress = context.progress or (lambda done, total, message: None)
    guideline = context.options.get("guideline", "lung-rads")
    if guideline not in GUIDELINES:
        raise RadSightError(f"unknown guideline {guideline!r}: choose one of {', '.join(GUIDELINES)}")
    volume = context.volume
    series_key = context.summary.get("series_key") or str(volume.source.series_uid)
    current_facts = read_study_facts(context.study_path, volume.source.study_uid)
    priors = [_prior_facts(Path(p), current_facts) for p in context.prior_paths]

    progress(0, 1, "nodules: detection in the current study")
    pattern, detections = split_pattern(_detect_current(context))
    current = _Visit(current_facts, volume, series_key, [d.measurement for d in detections], detections)

    visits = [_load_prior(facts, path, context, progress) for facts, path in sorted(priors, key=lambda p: p[0].study_date)]
    visits.append(current)
    tracking = _track(visits, progress, context.store)
    if context.store is not None:
        _label_prior_rows(context.store, visits[:-1], tracking)

    present = _records(current, visits, tracking, guideline)  # in detection order, one per detection
    if context.store is not None:
        _store(context.store, current, present)
    records = sorted(present, key=_label_order) + _resolved(tracking, len(visits) - 1)
    assessment = _with_pattern(_study_assessment(records, guideline, context.summary), pattern, guideline)
    longitudinal = tracking.to_json()
    found = {"nodules": records, "pattern": pattern.to_json() if pattern else None, "assessment": assessment}
    out = Path(context.out_dir) / "nodules.json"
    out.write_text(json.dumps({**found, "longitudinal": longitudinal}, indent=1))
    progress(1, 1, f"nodules: {len(present)} found" + (f"; {pattern.description}" if pattern else ""))
    return {**found, "outputs": {"nodules": str(out)}, "longitudinal": longitudinal}


def _prior_facts(path: Path, current: StudyFacts) -> tuple[StudyFacts, Path]:
    if not path.exists():
        raise RadSightError(f"prior {path}: no such file or folder")
    facts = read_study_facts(path)
    check_pair(facts, current)
    return facts, path


def _detect_current(context) -> list[Detection]:
    """Detection reusing the segmentation the models made in this run (read back from its SEG)."""
    found = context.mask_with("lung")
    return detect_in_study(context.volume, provider=context.provider, progress=context.progress,
                           mask=found[0] if found else None)


def _load_prior(facts: StudyFacts, path: Path, context, progress) -> _Visit:
    series_list, _ = open_path(path)
    series_list = [s for s in series_list if (s.first.study_uid == facts.study_uid)] or series_list
    if not series_list:
        raise RadSightError(f"prior {path}: no image series")
    series = max(series_list, key=lambda s: len(s.records))
    volume = load_series(series)
    stored = _stored_nodules(context.store, series.key)
    if stored is None:
        progress(0, 1, f"nodules: detection in the prior of {facts.study_date}")
        stored = [d.measurement for d in detect_in_study(volume, provider=context.provider)]
    return _Visit(facts, volume, series.key, stored)


def _stored_nodules(store, series_key: str) -> list | None:
    """The prior's nodules as the reader left them (rejected ones out, edits in); None if none stored."""
    if store is None:
        return None
    rows = store.nodules(series_key)
    if not rows:
        return None
    kept = []
    for row in rows:
        decision = row.get("decision") or {}
        if (decision.get("decision") if isinstance(decision, dict) else decision) == "rejected":
            continue
        record = row.get("current") or row["record"]
        kept.append(SimpleNamespace(centre_lps_mm=tuple(record["centre_lps_mm"]), volume_mm3=float(record["volume_mm3"]),
                                    mean_diameter_mm=float(record["mean_diameter_mm"]), row_id=row["id"],
                                    tracking_uid=row.get("tracking_uid") or None))
    return kept


def _track(visits: list[_Visit], progress, store) -> Tracking:
    """Track across the visits (one visit: every nodule starts a track, so it has its UID from
    the first analysis on and keeps it when follow-ups come)."""
    first = visits[0]
    if len(visits) == 1 and first.facts.study_date is None:
        # Nothing to compare with, so a missing Study Date harms nothing: the day count is 0.
        timepoints = [TimePoint(first.facts.study_uid, dt.date.min, tuple(first.nodules), None, first.volume,
                                first.facts)]
        return track(timepoints)
    timepoints = [TimePoint.from_facts(first.facts, first.nodules, volume=first.volume)]
    for n in range(1, len(visits)):
        progress(n, len(visits), f"nodules: registering visit {n + 1} of {len(visits)} to its prior")
        registration = _registration(visits[n - 1], visits[n], store)
        timepoints.append(TimePoint.from_facts(visits[n].facts, visits[n].nodules, registration, visits[n].volume))
    return track(timepoints)


def _registration(prior: _Visit, current: _Visit, store) -> Registration:
    """register(), or the stored result of registering the same two series before: a third visit
    needs the first two in register again, and that pair has not changed."""
    cache = None
    if store is not None and getattr(store, "path", None):
        key = hashlib.sha256(f"{prior.series_key}|{current.series_key}|{REGISTRATION_CACHE_VERSION}".encode()).hexdigest()
        cache = Path(store.path).parent / "registrations" / f"{key[:32]}.json"
        if cache.is_file():
            try:
                saved = json.loads(cache.read_text())
                found = Registration.from_matrix(saved["matrix"], prior_study_uid=prior.facts.study_uid,
                                                 current_study_uid=current.facts.study_uid, method=saved["method"])
                return replace(found, metric=saved["metric"], lung_overlap=saved["lung_overlap"],
                               correlation=saved["correlation"], seconds=saved["seconds"])
            except (OSError, ValueError, KeyError, TypeError, RadSightError):
                pass  # unreadable cache: register again and overwrite it
    registration = replace(register(prior.volume, current.volume), prior_study_uid=prior.facts.study_uid,
                           current_study_uid=current.facts.study_uid)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"matrix": registration.matrix.tolist(), "method": registration.method,
                                     "metric": registration.metric, "lung_overlap": registration.lung_overlap,
                                     "correlation": registration.correlation, "seconds": registration.seconds}))
    return registration


def _label_prior_rows(store, priors: list[_Visit], tracking: Tracking) -> None:
    """Give the priors' stored nodules the tracking UID their track has now, where they had none."""
    for t, visit in enumerate(priors):
        for n, nodule in enumerate(visit.nodules):
            row_id = getattr(nodule, "row_id", None)
            if row_id is None or getattr(nodule, "tracking_uid", None):
                continue
            store.set_nodule_tracking_uid(row_id, tracking.track_of(t, n).uid)


def _records(current: _Visit, visits: list[_Visit], tracking: Tracking, guideline: str) -> list[dict]:
    """One NODULE record per detection of the current visit, in the detections' order."""
    records = []
    t = len(visits) - 1
    for n, detection in enumerate(current.detections):
        m = detection.measurement
        tr = tracking.track_of(t, n)
        prior = tracking.prior_json(t, n)
        record = detection_record(detection, tr.label, tracking_uid=tr.uid, prior=prior)
        step = tr.step_to(t)
        if prior is not None:
            before = tr.at(step.prior)
            prior["mean_diameter_mm"] = round(before.mean_diameter_mm, 1)
            prior["study_uid"] = tracking.timepoints[step.prior].study_uid
            prior["growing"] = step.growth.growing
            prior["assessment"] = step.growth.assessment
        record["status"] = tr.statuses[t]
        record["history"] = _history(tracking, tr)
        if t > 0:
            record["lung_rads"] = lung_rads(m, baseline=False, new=prior is None,
                                            growing=bool(step and step.growth.growing))
        if guideline == "fleischner":
            record["fleischner"] = _fleischner(m, multiple=len(current.detections) > 1)
        records.append(record)
    return records


def _label_order(record: dict) -> int:
    """N1, N2, ... N10 in numeric order (the tracker labels by latest volume, largest first)."""
    return int(record["id"][1:]) if record["id"][1:].isdigit() else 0


def _resolved(tracking: Tracking, t: int) -> list[dict]:
    """Tracks seen before but not at this visit: listed so the reader sees what went away, with
    no measurement invented for today."""
    gone = []
    for tr in tracking.tracks:
        if tr.statuses[t] in ("resolved", "missed") and tr.at(t) is None and tr.observations:
            last = tr.observations[-1]
            gone.append({"id": tr.label, "tracking_uid": tr.uid, "status": "resolved", "present": False,
                         "last_seen_study_uid": tracking.timepoints[last.timepoint].study_uid,
                         "last_volume_mm3": round(last.volume_mm3, 1), "history": _history(tracking, tr)})
    return gone


def _history(tracking: Tracking, tr: Track) -> list[dict]:
    """The track at every visit it was seen: date, day, volume, mean diameter, status."""
    points = []
    for o in tr.observations:
        facts = tracking.timepoints[o.timepoint].facts
        points.append({"study_uid": facts.study_uid if facts else None,
                       "date": facts.study_date.isoformat() if facts and facts.study_date else None,
                       "day": tracking.days[o.timepoint], "volume_mm3": round(float(o.volume_mm3), 1),
                       "mean_diameter_mm": round(float(o.mean_diameter_mm), 1), "status": tr.statuses[o.timepoint]})
    return points


def _fleischner(m, multiple: bool) -> dict | None:
    try:
        a = fleischner_2017(m.type, m.mean_diameter_mm, m.solid_mean_diameter_mm, multiple=multiple)
    except ValueError:
        return None
    return {"version": "2017", "category": a.category, "management": a.management, "rule": a.rule}


def _study_assessment(records: list[dict], guideline: str, analysis: dict | None = None) -> dict | None:
    """The study's category is its most suspicious nodule's (Lung-RADS); Fleischner follows the
    largest nodule's recommendation. It comes from AI alone, so it is "pending reader review";
    with no nodule it says "AI found no nodules" with the detector's measured sensitivity and
    proposes category 1, which only the reader's confirmation gives (viewer/report/prefill.py).
    `analysis`: the analyze JSON so far (its models and their input check, "domain")."""
    domain = (analysis or {}).get("domain") or {}
    ai = {"status": "pending reader review", "source": "ai", "outside_domain": domain.get("summary")}
    present = [r for r in records if r.get("present", True)]
    if guideline == "fleischner":
        found = [r for r in present if r.get("fleischner")]
        if not found:
            return None
        largest = max(found, key=lambda r: r["mean_diameter_mm"])
        return {"guideline": "Fleischner 2017", "nodule": largest["id"], **largest["fleischner"], **ai}
    pairs = [(Assessment(r["lung_rads"]["category"], r["lung_rads"]["management"], r["lung_rads"]["rule"]), r["id"])
             for r in present if r.get("lung_rads")]
    if not pairs:
        ran = {m["id"] for m in (analysis or {}).get("models") or ()}
        registry = discover()
        cards = [c for c in registry.cards if c.id in ran] or registry.cards
        return {"guideline": "Lung-RADS v2022", "category": None, "proposed_category": "1",
                "management": f"{LUNG_RADS_MANAGEMENT['1']} (category 1 once the reader confirms there is no nodule)",
                "rule": f"AI found no nodules: {detector_sensitivity(cards)}", "nodule": None, **ai}
    top = worst([a for a, _ in pairs])
    nodule = next(i for a, i in pairs if a is top)
    return {"guideline": "Lung-RADS v2022", "category": top.category, "management": top.management,
            "rule": top.rule, "nodule": nodule, **ai}


def _with_pattern(assessment: dict | None, pattern: OpacityPattern | None, guideline: str) -> dict | None:
    """Lung-RADS category 0 for multifocal opacities (viewer.analysis.patterns): a short-interval
    CT shows what resolves. Only a nodule or mass that is 4B or worse on its own still leads (with
    the pattern named), since its work-up should not wait for the infection to clear."""
    if pattern is None or guideline != "lung-rads" or assessment is None:
        return assessment
    category = assessment.get("category")
    if category in ("4B", "4X"):
        return {**assessment, "rule": f"{assessment['rule']}; also {pattern.description}"}
    return {**assessment, "category": PATTERN_CATEGORY, "proposed_category": None, "nodule": None,
            "management": LUNG_RADS_MANAGEMENT[PATTERN_CATEGORY] + " (short-interval follow-up CT, 1-3 months, "
                          "to confirm that the opacities resolve)",
            "rule": PATTERN_RULE, "pattern": pattern.description}


def _store(store, current: _Visit, records: list[dict]) -> None:
    """Replace this series' undecided AI nodules with the new ones (`records` pairs with
    current.detections one to one); decided ones stay as the reader left them."""
    for row in store.nodules(current.series_key):
        if row["source"] == "ai" and not row.get("decision"):
            store.delete_nodule(row["id"])
    for record, detection in zip(records, current.detections, strict=True):
        store.save_nodule(current.series_key, record, "ai", mask=detection.measurement.mask,
                          model=detection.models[0] if detection.models else None,
                          confidence=float(detection.score), study_uid=current.facts.study_uid)

