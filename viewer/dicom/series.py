"""Group scanned frames into series that can each become one volume.

Grouping is by Series Instance UID; a series that mixes image sizes or orientations is split
into parts (each named `<uid>#<n>`) with a warning saying why, as 3D Slicer and dcm2niix do.
Frames at the same position are told apart by acquisition, temporal position, echo or image
type; true duplicates are dropped with a warning naming the files.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from viewer.core.volume import GeometryWarning
from viewer.dicom.geometry import POSITION_TOLERANCE_MM, StackPlan, orthonormal_axes, plan_stack
from viewer.dicom.header import SliceRecord

ORIENTATION_TOLERANCE = 1e-3


@dataclass
class Series:
    """Frames that form one volume, with what was found wrong on the way."""

    key: str
    records: list[SliceRecord]
    warnings: list[GeometryWarning] = field(default_factory=list)
    _plan: StackPlan | None = None

    @property
    def first(self) -> SliceRecord:
        return self.records[0]

    @property
    def label(self) -> str:
        number = self.first.series_number
        desc = self.first.series_description
        return f"series {number if number is not None else '?'}" + (f" '{desc}'" if desc else "")

    @property
    def plan(self) -> StackPlan:
        if self._plan is None:
            self._plan = plan_stack(self.records, self.label)
        return self._plan

    @property
    def file_count(self) -> int:
        return len({r.path for r in self.records})

    @property
    def all_warnings(self) -> list[GeometryWarning]:
        return list(self.warnings) + list(self.plan.warnings)


def _shape_key(r: SliceRecord) -> tuple:
    return (r.rows, r.cols, r.position is not None and r.orientation is not None, r.samples_per_pixel)


def _split_by_shape(records: list[SliceRecord]) -> list[list[SliceRecord]]:
    """Parts of equal size and orientation (orientations equal within 1e-3)."""
    parts: list[tuple[tuple, np.ndarray | None, list[SliceRecord]]] = []
    for r in records:
        key = _shape_key(r)
        orient = np.asarray(r.orientation) if r.orientation is not None else None
        for pkey, porient, members in parts:
            if pkey == key and (orient is None or np.max(np.abs(porient - orient)) < ORIENTATION_TOLERANCE):
                members.append(r)
                break
        else:
            parts.append((key, orient, [r]))
    return [members for _, _, members in parts]


def _describe_part(records: list[SliceRecord]) -> str:
    r = records[0]
    if r.orientation is None:
        plane = "no orientation"
    else:
        normal = np.abs(orthonormal_axes(r.orientation)[2])
        plane = ("sagittal", "coronal", "axial")[int(np.argmax(normal))]
        if np.max(normal) < 0.98:
            plane = "oblique " + plane
    return f"{len(records)} x {r.cols}x{r.rows} {plane}"


def _duplicate_groups(records: list[SliceRecord]) -> list[list[SliceRecord]]:
    if records[0].position is None or records[0].orientation is None or len(records) < 2:
        return []
    normal = orthonormal_axes(records[0].orientation)[2]
    pos = np.array([r.position for r in records])
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    groups, current = [], [records[order[0]]]
    for a, b in zip(order[:-1], order[1:]):
        if abs(dist[b] - dist[a]) <= POSITION_TOLERANCE_MM and np.linalg.norm(pos[b] - pos[a]) <= 10 * POSITION_TOLERANCE_MM:
            current.append(records[b])
        else:
            if len(current) > 1:
                groups.append(current)
            current = [records[b]]
    if len(current) > 1:
        groups.append(current)
    return groups


def _resolve_duplicates(records: list[SliceRecord], label: str) -> tuple[list[list[SliceRecord]], list[GeometryWarning]]:
    """Split frames sharing positions by acquisition/temporal/echo keys; drop true duplicates."""
    if not _duplicate_groups(records):
        return [records], []
    by_key: dict[tuple, list[SliceRecord]] = defaultdict(list)
    for r in records:
        by_key[r.split_key].append(r)
    warnings: list[GeometryWarning] = []
    if len(by_key) > 1:
        parts = list(by_key.values())
        warnings.append(GeometryWarning("split_acquisitions", (
            f"{label}: frames share positions but differ in acquisition, temporal position, echo "
            f"or image type; split into {len(parts)} volumes")))
    else:
        parts = [records]
    cleaned = []
    for part in parts:
        dropped = []
        keep = {id(r) for r in part}
        for group in _duplicate_groups(part):
            group = sorted(group, key=lambda r: (r.instance_number is None, r.instance_number or 0, str(r.path)))
            for extra in group[1:]:
                keep.discard(id(extra))
                dropped.append((group[0], extra))
        if dropped:
            same = sum(1 for a, b in dropped if a.sop_instance_uid == b.sop_instance_uid)
            a, b = dropped[0]
            warnings.append(GeometryWarning("duplicate_positions", (
                f"{label}: {len(dropped)} frame(s) at positions already taken ({same} identical "
                f"SOP Instance UIDs; e.g. {b.path.name} repeats {a.path.name}); kept the one with "
                "the lowest Instance Number")))
        cleaned.append([r for r in part if id(r) in keep])
    return cleaned, warnings


def group_series(records: list[SliceRecord]) -> list[Series]:
    """Series in a stable order (study, series number, uid); split parts keep their uid + '#n'."""
    by_uid: dict[str, list[SliceRecord]] = defaultdict(list)
    for r in records:
        by_uid[r.series_uid or f"no-series-uid:{r.path.parent}"].append(r)
    result: list[Series] = []
    for uid, members in by_uid.items():
        label_series = Series(uid, members)
        shape_parts = _split_by_shape(members)
        warnings: list[GeometryWarning] = []
        if len(shape_parts) > 1:
            described = ", ".join(_describe_part(p) for p in shape_parts)
            warnings.append(GeometryWarning("split_series", (
                f"{label_series.label}: images of different sizes or orientations ({described}); "
                f"split into {len(shape_parts)} volumes")))
        parts: list[tuple[list[SliceRecord], list[GeometryWarning]]] = []
        for shape_part in shape_parts:
            if shape_part[0].position is None and len(shape_part) > 1 and all(r.number_of_frames == 1 for r in shape_part) \
                    and shape_part[0].modality in ("CR", "DX", "MG", "XA", "RF", "IO", "PX"):
                parts.extend(([r], []) for r in shape_part)  # separate projection images
                continue
            sub_parts, dup_warnings = _resolve_duplicates(shape_part, label_series.label)
            parts.extend((p, dup_warnings) for p in sub_parts)
        for n, (part, dup_warnings) in enumerate(parts, 1):
            key = uid if len(parts) == 1 else f"{uid}#{n}"
            result.append(Series(key, part, warnings + dup_warnings))
    result.sort(key=lambda s: (s.first.study_uid, s.first.series_number if s.first.series_number is not None else 1 << 30, s.key))
    return result
