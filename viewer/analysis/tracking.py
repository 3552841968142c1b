"""Longitudinal nodule matching: one track per nodule across a patient's studies, with a stable
tracking UID, its status at every visit, and its growth between visits.

How it works:
- time points are ordered by study date; every follow-up must carry its registration to the
  time point before it, and composing them maps every nodule into the baseline's LPS frame;
- at each follow-up its nodules are assigned to the open tracks by optimal assignment
  (scipy's linear_sum_assignment) on the registered centre distance; a pair is accepted only
  within a gate that grows with the nodule (max(MIN_GATE_MM, GATE_DIAMETERS x the larger mean
  diameter)), because registration error and growth move a large nodule's centre more;
- a track not seen at a visit stays open for `max_gap` visits (by default one), matched at its
  last seen position with a small penalty per missed visit so a track seen at the previous
  visit wins a tie; seen again, it keeps its UID; a nodule matched to no track starts one;
- status per visit: "baseline" (seen at the first time point), "new" (first seen at a
  follow-up), "persisting" (seen now and before), "missed" (not seen now but seen again later:
  most likely missed by detection), "resolved" (not seen now nor later), None before it exists.

The tracking UID is a DICOM UID (2.25.<UUID as an integer>) derived by name (UUID version 5)
from the baseline study UID, the study where the track starts and the track's first centre in
that study's own frame, so re-running the tracker on the same inputs, or with more follow-ups added, gives the
same UID; a nodule that already carries a `tracking_uid` (stored by an earlier analysis) gives its
track that UID instead, so a UID once reported never changes. Human labels "N1", "N2", ... order the tracks by their latest volume, largest first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from viewer.analysis.growth import DEFAULT_RELATIVE_ERROR, Growth, growth
from viewer.analysis.timepoint import StudyMismatchError, TimePoint, check_pair

MIN_GATE_MM = 5.0
GATE_DIAMETERS = 1.0
GAP_PENALTY_MM = 1.0
_NO_MATCH = 1e9

STATUSES = ("baseline", "new", "persisting", "missed", "resolved")


@dataclass(frozen=True)
class Observation:
    """A track's nodule at one time point (indices into Tracking.timepoints and its nodules)."""

    timepoint: int
    nodule: int
    centre_baseline_lps_mm: tuple[float, float, float]
    volume_mm3: float
    mean_diameter_mm: float


@dataclass(frozen=True)
class Step:
    """Growth between two consecutive observations of a track (time point indices)."""

    prior: int
    current: int
    growth: Growth


@dataclass(frozen=True)
class Track:
    uid: str
    label: str
    observations: tuple[Observation, ...]
    statuses: tuple[str | None, ...]    # one per time point
    steps: tuple[Step, ...]             # consecutive observations
    overall: Growth | None              # first observation to the last

    def at(self, timepoint: int) -> Observation | None:
        return next((o for o in self.observations if o.timepoint == timepoint), None)

    def step_to(self, timepoint: int) -> Step | None:
        return next((s for s in self.steps if s.current == timepoint), None)


@dataclass(frozen=True)
class Tracking:
    timepoints: tuple[TimePoint, ...]   # sorted by date
    days: tuple[int, ...]               # days after the baseline
    tracks: tuple[Track, ...]           # ordered by label
    relative_error: float
    warnings: tuple[str, ...] = ()

    def index_of(self, timepoint: int | str) -> int:
        """Index of a time point given by index or Study Instance UID."""
        if isinstance(timepoint, str):
            for n, tp in enumerate(self.timepoints):
                if tp.study_uid == timepoint:
                    return n
            raise KeyError(f"study {timepoint} is not among the tracked time points")
        if not 0 <= timepoint < len(self.timepoints):
            raise IndexError(f"time point {timepoint} out of range (0-{len(self.timepoints) - 1})")
        return timepoint

    def track_of(self, timepoint: int | str, nodule: int) -> Track:
        """The track of nodule `nodule` (index in that time point's list)."""
        t = self.index_of(timepoint)
        for track in self.tracks:
            seen = track.at(t)
            if seen is not None and seen.nodule == nodule:
                return track
        raise KeyError(f"nodule {nodule} of time point {t} is on no track "
                       f"(that time point has {len(self.timepoints[t].nodules)} nodules)")

    def prior_json(self, timepoint: int | str, nodule: int) -> dict | None:
        """DESIGN.md's NODULE "prior": the same nodule at its previous observation and the growth
        since; None for a nodule first seen at this time point."""
        t = self.index_of(timepoint)
        track = self.track_of(t, nodule)
        step = track.step_to(t)
        if step is None:
            return None
        g = step.growth.to_json()
        return {"tracking_uid": track.uid, "days": g["days"],
                "volume_mm3": round(track.at(step.prior).volume_mm3, 1),
                "volume_change_pct": g["volume_change_pct"], "vdt_days": g["vdt_days"],
                "vdt_interval_days": g["vdt_interval_days"]}

    def to_json(self) -> dict:
        def step_json(step: Step) -> dict:
            return {"prior_timepoint": step.prior, "timepoint": step.current, **step.growth.to_json()}

        return {
            "baseline_study_uid": self.timepoints[0].study_uid,
            "relative_error": self.relative_error,
            "timepoints": [{"study_uid": tp.study_uid, "day": day, "n_nodules": len(tp.nodules),
                            "registration": tp.registration.to_json() if tp.registration and n else None}
                           for n, (tp, day) in enumerate(zip(self.timepoints, self.days))],
            "tracks": [{"tracking_uid": tr.uid, "id": tr.label, "statuses": list(tr.statuses),
                        "observations": [{"timepoint": o.timepoint, "nodule": o.nodule,
                                          "centre_baseline_lps_mm": [round(v, 2) for v in o.centre_baseline_lps_mm],
                                          "volume_mm3": round(o.volume_mm3, 1),
                                          "mean_diameter_mm": round(o.mean_diameter_mm, 2)}
                                         for o in tr.observations],
                        "growth": [step_json(s) for s in tr.steps],
                        "overall": tr.overall.to_json() if tr.overall else None}
                       for tr in self.tracks],
            "warnings": list(self.warnings),
        }


def track(timepoints: Sequence[TimePoint], relative_error: float = DEFAULT_RELATIVE_ERROR,
          max_gap: int = 1) -> Tracking:
    """Match the nodules of a patient's studies (any order; sorted by date here)."""
    if not timepoints:
        raise StudyMismatchError("no time points to track")
    if not 0 < relative_error < 1:
        raise ValueError(f"relative_error must be a fraction between 0 and 1; got {relative_error}")
    ordered = tuple(sorted(timepoints, key=lambda tp: tp.study_date))
    warnings = _validate(ordered)
    days = tuple((tp.study_date - ordered[0].study_date).days for tp in ordered)
    centres = _baseline_centres(ordered)

    # Each open track: list of (timepoint, nodule) observations.
    tracks: list[list[tuple[int, int]]] = [[(0, n)] for n in range(len(ordered[0].nodules))]
    for t in range(1, len(ordered)):
        open_tracks = [k for k, obs in enumerate(tracks) if t - 1 - obs[-1][0] <= max_gap]
        pairs = _assign([tracks[k][-1] for k in open_tracks], t, ordered, centres)
        matched = set()
        for row, n in pairs:
            tracks[open_tracks[row]].append((t, n))
            matched.add(n)
        tracks.extend([[(t, n)] for n in range(len(ordered[t].nodules)) if n not in matched])

    built = [_build(obs, ordered, days, centres, relative_error) for obs in tracks]
    built.sort(key=lambda tr: (-tr[1], tr[0].uid))
    labelled = tuple(Track(tr.uid, f"N{n + 1}", tr.observations, tr.statuses, tr.steps, tr.overall)
                     for n, (tr, _) in enumerate(built))
    return Tracking(ordered, days, labelled, relative_error, tuple(warnings))


def _validate(ordered: tuple[TimePoint, ...]) -> list[str]:
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for n, tp in enumerate(ordered):
        if tp.study_uid in seen:
            raise StudyMismatchError(f"study {tp.study_uid} is given twice as a time point")
        seen[tp.study_uid] = n
    for prior, current in zip(ordered, ordered[1:]):
        if prior.facts is not None and current.facts is not None:
            warnings.extend(check_pair(prior.facts, current.facts))
        elif current.study_date == prior.study_date:
            raise StudyMismatchError(f"studies {prior.study_uid} and {current.study_uid} are dated the "
                                     "same day: a follow-up must be at least a day after its prior")
        reg = current.registration
        if reg is None:
            raise StudyMismatchError(
                f"study {current.study_uid} has no registration to its prior {prior.study_uid}: register "
                "it (viewer.analysis.registration.register) or use Registration.identity() when both "
                "share a Frame of Reference")
        if reg.prior_study_uid is not None and reg.prior_study_uid != prior.study_uid:
            raise StudyMismatchError(
                f"study {current.study_uid} is registered to study {reg.prior_study_uid}, but its prior "
                f"by date is {prior.study_uid}: register each follow-up to the study just before it")
        if reg.current_study_uid is not None and reg.current_study_uid != current.study_uid:
            raise StudyMismatchError(f"the registration given with study {current.study_uid} maps study "
                                     f"{reg.current_study_uid}")
    return warnings


def _baseline_centres(ordered: tuple[TimePoint, ...]) -> list[np.ndarray]:
    """Every time point's nodule centres mapped into the baseline frame (N x 3 each)."""
    out = []
    for t, tp in enumerate(ordered):
        points = np.array([n.centre_lps_mm for n in tp.nodules], dtype=np.float64).reshape(-1, 3)
        for back in range(t, 0, -1):
            points = ordered[back].registration.to_prior(points).reshape(-1, 3)
        out.append(points)
    return out


def _assign(last: list[tuple[int, int]], t: int, ordered: tuple[TimePoint, ...],
            centres: list[np.ndarray]) -> list[tuple[int, int]]:
    """(row in `last`, nodule of time point t) pairs by optimal assignment within the gates."""
    current = ordered[t].nodules
    if not last or not current:
        return []
    cost = np.full((len(last), len(current)), _NO_MATCH)
    for row, (tp, n) in enumerate(last):
        distance = np.linalg.norm(centres[t] - centres[tp][n], axis=1)
        size = ordered[tp].nodules[n].mean_diameter_mm
        for col, nodule in enumerate(current):
            gate = max(MIN_GATE_MM, GATE_DIAMETERS * max(size, nodule.mean_diameter_mm))
            if distance[col] <= gate:
                cost[row, col] = distance[col] + GAP_PENALTY_MM * (t - 1 - tp)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < _NO_MATCH]


def _given_uid(obs: list[tuple[int, int]], ordered: tuple[TimePoint, ...]) -> str | None:
    """The tracking UID an earlier analysis already gave this track (a stored nodule carries it),
    earliest observation first: once reported, a UID is kept, not derived again."""
    for t, n in obs:
        given = getattr(ordered[t].nodules[n], "tracking_uid", None)
        if given:
            return str(given)
    return None


def _build(obs: list[tuple[int, int]], ordered: tuple[TimePoint, ...], days: tuple[int, ...],
           centres: list[np.ndarray], relative_error: float) -> tuple[Track, float]:
    observations = tuple(
        Observation(t, n, tuple(float(v) for v in centres[t][n]), float(ordered[t].nodules[n].volume_mm3),
                    float(ordered[t].nodules[n].mean_diameter_mm)) for t, n in obs)
    seen = {o.timepoint for o in observations}
    first, last = observations[0].timepoint, observations[-1].timepoint
    statuses = []
    for t in range(len(ordered)):
        if t < first:
            statuses.append(None)
        elif t in seen:
            statuses.append("baseline" if t == 0 else "new" if t == first else "persisting")
        else:
            statuses.append("missed" if t < last else "resolved")

    def between(a: Observation, b: Observation) -> Growth:
        return growth(float(days[b.timepoint] - days[a.timepoint]), a.volume_mm3, b.volume_mm3,
                      a.mean_diameter_mm, b.mean_diameter_mm, relative_error)

    steps = tuple(Step(a.timepoint, b.timepoint, between(a, b)) for a, b in zip(observations, observations[1:]))
    overall = between(observations[0], observations[-1]) if len(observations) > 1 else None
    origin = ordered[first].nodules[observations[0].nodule].centre_lps_mm
    # A name-based UUID (RFC 4122 version 5) in the 2.25 arc (ITU-T X.667): deterministic, unlike
    # pydicom's generate_uid(prefix=None), which ignores its entropy and returns a random UUID.
    name = "|".join([ordered[0].study_uid, ordered[first].study_uid, ",".join(f"{float(v):.1f}" for v in origin)])
    uid = _given_uid(obs, ordered) or f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"
    return Track(uid, "", observations, tuple(statuses), steps, overall), observations[-1].volume_mm3
