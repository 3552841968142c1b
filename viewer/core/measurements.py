"""Reader measurements on a volume: line, angle, ellipse and polygon ROI.

Points are LPS millimetres, so a measurement means the same thing in every view and survives
re-reading the series. Each value carries its UCUM unit and coded concept (DESIGN.md), which is
what the SR export will translate. ROI statistics sample the volume on the ROI's plane at a
quarter of the finest voxel spacing (nearest voxel), so they do not depend on the screen zoom.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import numpy as np
from matplotlib.path import Path as PolygonPath

from viewer.core.volume import Volume

KINDS = ("line", "angle", "ellipse", "polygon")

# (code value, coding scheme, meaning) and UCUM units.
CONCEPTS = {
    "length_mm": (("410668003", "SCT", "Length"), "mm"),
    "angle_deg": (("1483009", "SCT", "Angle"), "deg"),
    "area_mm2": (("42798000", "SCT", "Area"), "mm2"),
    "mean": (("373098007", "SCT", "Mean"), None),
    "sd": (("386136009", "SCT", "Standard deviation"), None),
    "min": (("255605001", "SCT", "Minimum"), None),
    "max": (("56851009", "SCT", "Maximum"), None),
}


@dataclass(frozen=True)
class MeasuredValue:
    name: str
    value: float
    unit: str
    concept: tuple[str, str, str]


@dataclass(frozen=True)
class Measurement:
    """Line: 2 points. Angle: 3 (vertex in the middle). Ellipse: centre, end of one semi-axis,
    end of the other. Polygon: 3 or more vertices on one plane."""

    kind: str
    points: tuple[tuple[float, float, float], ...]
    label: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown measurement kind {self.kind!r}; use one of {', '.join(KINDS)}")
        need = {"line": 2, "angle": 3, "ellipse": 3}.get(self.kind)
        n = len(self.points)
        if (need is not None and n != need) or (self.kind == "polygon" and n < 3):
            raise ValueError(f"a {self.kind} needs {need or 'at least 3'} points; got {n}")
        pts = tuple(tuple(float(c) for c in p) for p in self.points)
        if not all(len(p) == 3 and all(math.isfinite(c) for c in p) for p in pts):
            raise ValueError("measurement points must be finite (x, y, z) LPS mm")
        object.__setattr__(self, "points", pts)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.points)

    def values(self, volume: Volume | None = None) -> list[MeasuredValue]:
        p = self.array
        if self.kind == "line":
            return [_value("length_mm", float(np.linalg.norm(p[1] - p[0])))]
        if self.kind == "angle":
            a, b = p[0] - p[1], p[2] - p[1]
            cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
            return [_value("angle_deg", math.degrees(math.acos(float(np.clip(cos, -1, 1)))))]
        inside, area = self._region()
        result = [_value("area_mm2", area)]
        if volume is not None:
            samples = _sample(volume, inside)
            if samples.size:
                unit = volume.unit or "1"
                result += [_value("mean", float(samples.mean()), unit), _value("sd", float(samples.std(ddof=0)), unit),
                           _value("min", float(samples.min()), unit), _value("max", float(samples.max()), unit)]
        return result

    def _plane(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Origin and two in-plane unit axes of the ROI's plane."""
        p = self.array
        if self.kind == "ellipse":
            u = p[1] - p[0]
            v = p[2] - p[0]
            u_hat = u / np.linalg.norm(u)
            v = v - (v @ u_hat) * u_hat
            return p[0], u_hat, v / np.linalg.norm(v)
        centred = p - p.mean(axis=0)
        _, s, vt = np.linalg.svd(centred)
        if s[1] < 1e-9:
            raise ValueError("polygon points are collinear")
        return p.mean(axis=0), vt[0], vt[1]

    def _region(self):
        origin, u, v = self._plane()
        p = self.array
        if self.kind == "ellipse":
            a = float(np.linalg.norm(p[1] - p[0]))
            b = float(abs((p[2] - p[0]) @ v))
            if a <= 0 or b <= 0:
                raise ValueError("ellipse has a zero axis")

            def inside(uu, vv):
                return (uu / a) ** 2 + (vv / b) ** 2 <= 1.0

            return (origin, u, v, (-a, a, -b, b), inside), math.pi * a * b
        uv = np.stack([(p - origin) @ u, (p - origin) @ v], axis=1)
        x, y = uv[:, 0], uv[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))  # shoelace
        path = PolygonPath(uv)

        def inside(uu, vv):
            return path.contains_points(np.stack([uu.ravel(), vv.ravel()], axis=1)).reshape(uu.shape)

        return (origin, u, v, (x.min(), x.max(), y.min(), y.max()), inside), area

    def to_json(self, volume: Volume | None = None) -> dict:
        return {"id": self.id, "kind": self.kind, "label": self.label, "points_lps_mm": [list(p) for p in self.points],
                "values": [{"name": m.name, "value": m.value, "unit": m.unit, "concept": list(m.concept)}
                           for m in self.values(volume)]}


def _value(name: str, value: float, unit: str | None = None) -> MeasuredValue:
    concept, default_unit = CONCEPTS[name]
    return MeasuredValue(name, value, unit or default_unit or "1", concept)


def _sample(volume: Volume, region) -> np.ndarray:
    origin, u, v, (u0, u1, v0, v1), inside = region
    step = min(volume.spacing) / 4
    uu, vv = np.meshgrid(np.arange(u0, u1 + step / 2, step), np.arange(v0, v1 + step / 2, step))
    keep = inside(uu, vv)
    points = origin + uu[keep][:, None] * u + vv[keep][:, None] * v
    ijk = np.rint(volume.lps_to_index(points)).astype(int)
    nz, ny, nx = volume.shape
    ok = (ijk >= 0).all(axis=1) & (ijk[:, 0] < nx) & (ijk[:, 1] < ny) & (ijk[:, 2] < nz)
    ijk = ijk[ok]
    return volume.voxels[ijk[:, 2], ijk[:, 1], ijk[:, 0]].astype(np.float64)
