"""One study in a patient's series of scans, as the longitudinal tracker sees it, and the checks
that two studies may be compared at all.

Comparing a study with the wrong prior invents growth: another patient's scan, a scan of another
body region, or a "prior" made after the current one. `check_pair` refuses each with a message
that says which fact differs, never the patient's values themselves.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from viewer.analysis.registration import Registration
from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.dicom.study_facts import StudyFacts

# Body Part Examined (0018,0015) defined terms (PS3.16 Annex L) that share the chest; terms not
# listed are compared as written.
_REGIONS: dict[str, frozenset[str]] = {
    "CHEST": frozenset({"chest"}), "THORAX": frozenset({"chest"}), "LUNG": frozenset({"chest"}),
    "BREAST": frozenset({"chest"}), "HEART": frozenset({"chest"}),
    "CHESTABDOMEN": frozenset({"chest", "abdomen"}), "ABDOMEN": frozenset({"abdomen"}),
    "CHESTABDPELVIS": frozenset({"chest", "abdomen", "pelvis"}),
    "ABDOMENPELVIS": frozenset({"abdomen", "pelvis"}), "PELVIS": frozenset({"pelvis"}),
    "NECKCHEST": frozenset({"neck", "chest"}), "NECK": frozenset({"neck"}),
    "HEADNECK": frozenset({"head", "neck"}), "HEAD": frozenset({"head"}), "BRAIN": frozenset({"head"}),
    "WHOLEBODY": frozenset({"head", "neck", "chest", "abdomen", "pelvis"}),
}


class StudyMismatchError(RadSightError):
    """Two studies cannot be compared as prior and current; the message says which fact differs."""


@runtime_checkable
class NoduleLike(Protocol):
    """What the tracker needs of a nodule (viewer.analysis.nodules.NoduleMeasurement has it)."""

    centre_lps_mm: Sequence[float]
    volume_mm3: float
    mean_diameter_mm: float


@dataclass(frozen=True)
class TimePoint:
    """A study with its nodules (in its own LPS frame) and its registration to the previous
    time point (None for the first, and for the baseline once sorted)."""

    study_uid: str
    study_date: dt.date
    nodules: tuple[NoduleLike, ...]
    registration: Registration | None = None
    volume: Volume | None = None
    facts: StudyFacts | None = None

    def __post_init__(self) -> None:
        if not self.study_uid:
            raise StudyMismatchError("a time point needs its Study Instance UID (0020,000D)")
        date = self.study_date
        if isinstance(date, dt.datetime):
            date = date.date()
        if not isinstance(date, dt.date):
            raise StudyMismatchError(f"study {self.study_uid} has no Study Date (0008,0020) "
                                     f"(got {type(date).__name__}): it cannot be placed in time")
        object.__setattr__(self, "study_date", date)
        nodules = tuple(self.nodules)
        for n, nodule in enumerate(nodules):
            _check_nodule(nodule, n, self.study_uid)
        object.__setattr__(self, "nodules", nodules)

    @staticmethod
    def from_facts(facts: StudyFacts, nodules: Sequence[NoduleLike], registration: Registration | None = None,
                   volume: Volume | None = None) -> "TimePoint":
        """A time point dated by its DICOM header; refuses a study without a date."""
        if facts.study_uid is None:
            raise StudyMismatchError(f"{facts.source}: no Study Instance UID (0020,000D) in the header")
        if facts.study_date is None:
            why = "; ".join(facts.problems) or "the tag is empty or missing"
            raise StudyMismatchError(f"{facts.source}: study {facts.study_uid} has no usable Study Date "
                                     f"(0008,0020) ({why}); without it the study cannot be compared with a prior")
        return TimePoint(facts.study_uid, facts.study_date, tuple(nodules), registration, volume, facts)


def _check_nodule(nodule, n: int, study_uid: str) -> None:
    where = f"nodule {n + 1} of study {study_uid}"
    try:
        centre = [float(v) for v in nodule.centre_lps_mm]
        volume, diameter = float(nodule.volume_mm3), float(nodule.mean_diameter_mm)
    except (AttributeError, TypeError, ValueError) as exc:
        raise StudyMismatchError(f"{where} lacks centre_lps_mm, volume_mm3 or mean_diameter_mm "
                                 f"as numbers ({exc})") from None
    if len(centre) != 3 or not all(map(math.isfinite, centre)):
        raise StudyMismatchError(f"{where}: centre_lps_mm must be 3 finite numbers; got {centre}")
    if not (volume > 0 and math.isfinite(volume)) or not (diameter > 0 and math.isfinite(diameter)):
        raise StudyMismatchError(f"{where}: volume {volume} mm3 and mean diameter {diameter} mm must "
                                 "be positive (a nodule that is not there is left out of the list)")


def check_pair(prior: StudyFacts, current: StudyFacts) -> list[str]:
    """Refuse a prior that cannot be compared with the current study; return soft warnings
    (facts that could not be checked)."""
    names = f"prior {prior.source or prior.study_uid}, current {current.source or current.study_uid}"
    if prior.study_uid is not None and prior.study_uid == current.study_uid:
        raise StudyMismatchError(f"the prior and the current are the same study ({names}); "
                                 "choose an earlier study as the prior")
    differ = prior.patient_differences(current)
    if differ:
        raise StudyMismatchError(f"the prior and the current study belong to different patients: "
                                 f"{' and '.join(differ)} differ (values not shown) ({names}); "
                                 "choose a prior of the same patient")
    missing = [which for which, facts in (("prior", prior), ("current", current)) if facts.study_date is None]
    if missing:
        why = "; ".join(p for f in (prior, current) for p in f.problems if "Date" in p)
        raise StudyMismatchError(f"the {' and the '.join(missing)} {'study has' if len(missing) == 1 else 'studies have'} "
                                 f"no usable Study Date (0008,0020){' (' + why + ')' if why else ''}, so the "
                                 f"interval between them is unknown ({names}); growth cannot be assessed "
                                 "without dates")
    days = (current.study_date - prior.study_date).days
    if days < 0:
        raise StudyMismatchError(f"the prior is dated {-days} days after the current study ({names}); "
                                 "swap them: the prior must be the older study")
    if days == 0:
        raise StudyMismatchError(f"the prior and the current study are dated the same day ({names}); "
                                 "a prior must be older by at least a day for an interval and a VDT")
    if prior.body_part and current.body_part:
        a = _REGIONS.get(prior.body_part.replace(" ", "").replace("_", ""), frozenset({prior.body_part}))
        b = _REGIONS.get(current.body_part.replace(" ", "").replace("_", ""), frozenset({current.body_part}))
        if not a & b:
            raise StudyMismatchError(f"the prior shows {prior.body_part} and the current {current.body_part} "
                                     f"(Body Part Examined (0018,0015)) ({names}): no common body region "
                                     "to compare")
    warnings = []
    unknown = prior.patient_unknown(current)
    if unknown:
        warnings.append(f"{' and '.join(unknown)} missing in the prior or the current study: that they "
                        "belong to the same patient could not be checked")
    if prior.modality and current.modality and prior.modality != current.modality:
        warnings.append(f"the prior is {prior.modality} and the current {current.modality}: "
                        "volumes may not be comparable")
    return warnings
