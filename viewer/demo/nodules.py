"""Lung nodules with a known growth law, and where to put them.

A nodule is an ellipsoid (random orientation), so its true volume is analytic: V = 4/3 pi a b c.
Growth follows the volume doubling time: V(t) = V(t_ref) * 2 ** ((t - t_ref) / VDT), realised by
scaling all three semi-axes by the cube root. A negative VDT is a halving time (shrinking). A
part-solid nodule is a ground-glass ellipsoid with a concentric solid core whose semi-axes are a
fixed fraction of the nodule's.

Placement uses the lung's signed distance: the whole nodule (at its largest size over the
placement horizon) stays at least 1 mm inside the lung, clear of the airways and of vessels of
2 mm radius or more; small twigs it would cut are pruned from the vessel tree. The exceptions are
deliberate: the juxtapleural nodule pokes 1 mm through the pleura into the chest wall, and the
juxtavascular one overlaps the wall of a 1.5-3 mm radius vessel by about 0.6 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from viewer.demo.anatomy import PLEURAL_GAP_MM, ChestAnatomy, cage_sdf
from viewer.demo.shapes import Capsules, OrientedEllipsoid, random_rotation

KINDS = ("solid", "part-solid", "ground-glass")
STATUSES = ("growing", "stable", "new", "shrinking")
LUNG_MARGIN_MM = 1.0
AIRWAY_CLEARANCE_MM = 2.0
VESSEL_CLEARANCE_MM = 1.0
PRUNABLE_RADIUS_MM = 2.0


@dataclass(frozen=True)
class Region:
    """Where a nodule may go, anatomy frame: which lung (+1 left, -1 right) and z / y ranges."""

    side: int
    z_mm: tuple[float, float]
    y_mm: tuple[float, float] = (-80.0, 80.0)


@dataclass(frozen=True)
class NoduleSpec:
    """What a nodule is; `diameter_mm` is the equivalent-sphere diameter at `reference_day`."""

    id: str
    kind: str
    status: str
    diameter_mm: float
    vdt_days: float | None
    region: Region
    reference_day: float = 0.0
    onset_day: float | None = None   # status "new": absent before this day
    juxtapleural: bool = False
    juxtavascular: bool = False
    core_fraction: float | None = None  # part-solid: core semi-axes / nodule semi-axes

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"nodule {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if self.status not in STATUSES:
            raise ValueError(f"nodule {self.id}: status {self.status!r} is not one of {STATUSES}")
        if (self.kind == "part-solid") != (self.core_fraction is not None):
            raise ValueError(f"nodule {self.id}: a core_fraction is needed for part-solid "
                             "nodules and only for them")
        if self.vdt_days == 0:
            raise ValueError(f"nodule {self.id}: a volume doubling time of 0 days is meaningless")


# The demo's cast: every kind, every status, both attachment cases, and one 4-5 mm nodule.
CATALOGUE: tuple[NoduleSpec, ...] = (
    NoduleSpec("N1", "solid", "growing", 8.0, 200.0, Region(-1, (-70.0, -25.0), (-10.0, 60.0))),
    NoduleSpec("N2", "part-solid", "growing", 14.0, 400.0, Region(1, (20.0, 55.0), (-50.0, 30.0)),
               core_fraction=0.45),
    NoduleSpec("N3", "ground-glass", "stable", 12.0, None, Region(-1, (15.0, 55.0), (-40.0, 40.0))),
    NoduleSpec("N4", "solid", "new", 5.0, 180.0, Region(1, (-70.0, -25.0), (-20.0, 60.0)),
               reference_day=91.0, onset_day=60.0),
    NoduleSpec("N5", "solid", "shrinking", 10.0, -150.0, Region(-1, (-40.0, 0.0), (-70.0, -20.0))),
    NoduleSpec("N6", "solid", "stable", 7.0, None, Region(-1, (-30.0, 40.0), (-40.0, 40.0)),
               juxtapleural=True),
    NoduleSpec("N7", "solid", "growing", 6.0, 300.0, Region(1, (-50.0, 40.0)), juxtavascular=True),
    NoduleSpec("N8", "solid", "stable", 4.5, None, Region(1, (-20.0, 30.0), (-60.0, 60.0))),
)


@dataclass(frozen=True)
class PlacedNodule:
    spec: NoduleSpec
    index: int                      # 1-based; label value LABEL_NODULE_BASE + index
    centre: np.ndarray              # anatomy frame, mm
    rotation: np.ndarray            # columns: the semi-axes' directions
    reference_semi_axes: np.ndarray  # at spec.reference_day
    hu: float
    core_hu: float | None = None

    def present(self, day: float) -> bool:
        return self.spec.onset_day is None or day >= self.spec.onset_day

    def scale(self, day: float) -> float:
        """Linear size factor relative to the reference day: the cube root of the volume ratio."""
        if self.spec.vdt_days is None:
            return 1.0
        return float(2.0 ** ((day - self.spec.reference_day) / (3.0 * self.spec.vdt_days)))

    def semi_axes(self, day: float) -> np.ndarray:
        return self.reference_semi_axes * self.scale(day)

    def volume_mm3(self, day: float) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi_axes(day)))

    def solid_volume_mm3(self, day: float) -> float | None:
        if self.spec.core_fraction is None:
            return None
        return self.volume_mm3(day) * self.spec.core_fraction ** 3

    def ellipsoid(self, day: float) -> OrientedEllipsoid:
        return OrientedEllipsoid(self.centre, self.semi_axes(day), self.rotation)

    def core_ellipsoid(self, day: float) -> OrientedEllipsoid | None:
        if self.spec.core_fraction is None:
            return None
        return OrientedEllipsoid(self.centre, self.semi_axes(day) * self.spec.core_fraction,
                                 self.rotation)

    def _scale_range(self, horizon_day: float) -> tuple[float, float]:
        """Smallest and largest linear scale while present up to the horizon (growth is
        monotonic, so the ends of the interval suffice)."""
        first = self.spec.onset_day if self.spec.onset_day is not None else 0.0
        ends = (self.scale(first), self.scale(horizon_day))
        return min(ends), max(ends)

    def largest_ellipsoid(self, horizon_day: float) -> OrientedEllipsoid:
        return OrientedEllipsoid(self.centre, self.reference_semi_axes * self._scale_range(horizon_day)[1],
                                 self.rotation)

    def smallest_ellipsoid(self, horizon_day: float) -> OrientedEllipsoid:
        return OrientedEllipsoid(self.centre, self.reference_semi_axes * self._scale_range(horizon_day)[0],
                                 self.rotation)


def axial_diameters_mm(semi_axes: np.ndarray, rotation: np.ndarray) -> tuple[float, float]:
    """Long and short axis (mm) of the ellipsoid's largest axial cross-section.

    Parallel plane sections of an ellipsoid are similar ellipses, the largest passing through the
    centre, so this is exact: with A = R diag(1/a^2) R^T the central axial section is
    u^T A_xy u = 1, whose semi-axes are 1/sqrt of the eigenvalues of A's upper-left 2x2 block.
    """
    a = rotation @ np.diag(1.0 / np.asarray(semi_axes, dtype=float) ** 2) @ rotation.T
    eig = np.linalg.eigvalsh(a[:2, :2])
    semi = 1.0 / np.sqrt(eig)
    return float(2.0 * semi.max()), float(2.0 * semi.min())


def tube_clearance(tubes: Capsules, ellipsoid: OrientedEllipsoid) -> np.ndarray:
    """Approximate gap (mm) between each tube and the ellipsoid; negative where they overlap.

    Samples each tube's axis every 0.5 mm and subtracts the local tube radius from the
    ellipsoid's signed distance; tubes whose boxes are more than 5 mm from the ellipsoid's box
    get +inf without sampling.
    """
    out = np.full(len(tubes), np.inf)
    if len(tubes) == 0:
        return out
    reach = ellipsoid.bounds(margin=5.0)
    r = np.maximum(tubes.ra, tubes.rb)[:, None]
    near = np.flatnonzero(np.all(np.minimum(tubes.a, tubes.b) - r <= reach[1], axis=1)
                          & np.all(np.maximum(tubes.a, tubes.b) + r >= reach[0], axis=1))
    if len(near) == 0:
        return out
    a, b = tubes.a[near], tubes.b[near]
    lengths = np.linalg.norm(b - a, axis=1)
    counts = np.ceil(lengths / 0.5).astype(int) + 1
    seg = np.repeat(np.arange(len(near)), counts)
    t = np.concatenate([np.linspace(0.0, 1.0, c) for c in counts])
    points = a[seg] + t[:, None] * (b - a)[seg]
    radius = tubes.ra[near][seg] + t * (tubes.rb[near][seg] - tubes.ra[near][seg])
    gap = ellipsoid.sdf(points[:, 0], points[:, 1], points[:, 2]) - radius
    found = np.full(len(near), np.inf)
    np.minimum.at(found, seg, gap)
    out[near] = found
    return out


def _sample_shape(spec: NoduleSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ratios = rng.uniform(0.8, 1.25, size=3)
    ratios /= np.prod(ratios) ** (1.0 / 3.0)
    return spec.diameter_mm / 2.0 * ratios, random_rotation(rng)


def _sample_hu(spec: NoduleSpec, rng: np.random.Generator) -> tuple[float, float | None]:
    if spec.kind == "solid":
        return float(rng.uniform(15.0, 45.0)), None
    if spec.kind == "ground-glass":
        return float(rng.uniform(-650.0, -580.0)), None
    return float(rng.uniform(-630.0, -570.0)), float(rng.uniform(10.0, 40.0))


class PlacementError(RuntimeError):
    pass


class _Placer:
    """Finds a centre for each nodule; keeps what has been placed and which tubes must stay."""

    def __init__(self, anatomy: ChestAnatomy, horizon_day: float, rng: np.random.Generator):
        self.anatomy = anatomy
        self.horizon = horizon_day
        self.rng = rng
        self.vessels = anatomy.vessels
        self.airway_outer = anatomy.airway_outer()
        self.protected = np.zeros(len(self.vessels), dtype=bool)
        self.allowed_touch: dict[int, np.ndarray] = {}
        self.placed: list[PlacedNodule] = []

    def _vessel_radius(self) -> np.ndarray:
        return np.maximum(self.vessels.ra, self.vessels.rb)

    def _fits(self, nodule: PlacedNodule, check_lung: bool = True) -> bool:
        big = nodule.largest_ellipsoid(self.horizon)
        for other in self.placed:
            gap = np.linalg.norm(other.centre - nodule.centre)
            reach = big.semi_axes.max() + other.largest_ellipsoid(self.horizon).semi_axes.max()
            if gap < reach + 15.0:
                return False
        if check_lung and self.anatomy.lung_sdf_points(big.surface_points()).max() > -LUNG_MARGIN_MM:
            return False
        if tube_clearance(self.airway_outer, big).min() < AIRWAY_CLEARANCE_MM:
            return False
        clearance = tube_clearance(self.vessels, big)
        keep = self.protected | (self._vessel_radius() >= PRUNABLE_RADIUS_MM)
        if nodule.index in self.allowed_touch:
            keep &= ~self.allowed_touch[nodule.index]
        return bool(np.all(clearance[keep] >= VESSEL_CLEARANCE_MM))

    def _random_centres(self, region: Region, n: int) -> np.ndarray:
        x = region.side * self.rng.uniform(25.0, 130.0, n)
        y = self.rng.uniform(*region.y_mm, n)
        z = self.rng.uniform(*region.z_mm, n)
        return np.stack([x, y, z], axis=1)

    def _new(self, spec: NoduleSpec, index: int, centre) -> PlacedNodule:
        semi, rotation = _sample_shape(spec, self.rng)
        hu, core_hu = _sample_hu(spec, self.rng)
        return PlacedNodule(spec, index, np.asarray(centre, dtype=float), rotation, semi, hu, core_hu)

    def place_free(self, spec: NoduleSpec, index: int) -> PlacedNodule:
        for _ in range(60):
            centres = self._random_centres(spec.region, 200)
            depth = self.anatomy.lung_sdf_points(centres)
            for centre in centres[depth < -(spec.diameter_mm + 2.0)]:
                nodule = self._new(spec, index, centre)
                if self._fits(nodule):
                    return nodule
        raise PlacementError(f"could not place nodule {spec.id} ({spec.kind}, {spec.diameter_mm} mm) "
                             f"in its region {spec.region}; try another seed")

    def place_juxtapleural(self, spec: NoduleSpec, index: int) -> PlacedNodule:
        """Put the nodule against the costal pleura: slide it out along the lung surface normal
        until it reaches 1 mm into the chest wall."""
        lung = self.anatomy.lung_sdf_points
        for _ in range(200):
            centres = self._random_centres(spec.region, 400)
            depth = lung(centres)
            # Keep points whose nearest lung surface is the cage (costal pleura), not the
            # mediastinum or the diaphragm.
            cage = cage_sdf(centres[:, 0], centres[:, 1], centres[:, 2])
            costal = np.abs(cage + PLEURAL_GAP_MM - depth) < 0.2
            for p in centres[costal & (depth < -2.0) & (depth > -8.0)]:
                grad = np.array([lung(p + e)[0] - lung(p - e)[0] for e in np.eye(3) * 0.5])
                normal = grad / np.linalg.norm(grad)
                nodule = self._new(spec, index, p)
                shape = nodule.largest_ellipsoid(self.horizon)

                def protrusion(s: float) -> float:
                    return float(lung(replace(shape, centre=p + s * normal).surface_points()).max())

                lo, hi = -spec.diameter_mm * 2.0, spec.diameter_mm
                if not (protrusion(lo) < 1.0 < protrusion(hi)):
                    continue
                for _ in range(30):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if protrusion(mid) < 1.0 else (lo, mid)
                centre = p + (lo + hi) / 2 * normal
                nodule = replace(nodule, centre=centre)
                if lung(centre)[0] < -LUNG_MARGIN_MM and self._fits(nodule, check_lung=False):
                    return nodule
        raise PlacementError(f"could not place juxtapleural nodule {spec.id}; try another seed")

    def place_juxtavascular(self, spec: NoduleSpec, index: int) -> PlacedNodule:
        """Put the nodule beside a vessel of 1.5-3 mm radius (thick enough to be labelled even
        on the coarse test grid) so that it overlaps the vessel wall by about
        0.6 mm at its smallest size (a growing nodule then overlaps more)."""
        v = self.vessels
        radius = self._vessel_radius()
        mid = (v.a + v.b) / 2
        length = np.linalg.norm(v.b - v.a, axis=1)
        side_ok = np.sign(mid[:, 0]) == spec.region.side
        z_ok = (mid[:, 2] > spec.region.z_mm[0]) & (mid[:, 2] < spec.region.z_mm[1])
        deep = self.anatomy.lung_sdf_points(mid) < -12.0
        candidates = np.flatnonzero((np.minimum(v.ra, v.rb) >= 1.5) & (radius <= 3.0)
                                    & (length > 6.0) & side_ok & z_ok & deep)
        self.rng.shuffle(candidates)
        for seg in candidates[:200]:
            axis = (v.b[seg] - v.a[seg]) / length[seg]
            out = np.cross(axis, self.rng.standard_normal(3))
            out /= np.linalg.norm(out)
            nodule = self._new(spec, index, mid[seg])
            small = nodule.smallest_ellipsoid(self.horizon)
            one = v.subset(np.arange(len(v)) == seg)

            def overlap(s: float) -> float:
                return float(tube_clearance(one, replace(small, centre=mid[seg] + s * out))[0])

            lo, hi = 0.0, radius[seg] + small.semi_axes.max() + 3.0
            if not (overlap(lo) < -0.6 < overlap(hi)):
                continue
            for _ in range(30):
                m = (lo + hi) / 2
                lo, hi = (m, hi) if overlap(m) < -0.6 else (lo, m)
            centre = mid[seg] + (lo + hi) / 2 * out
            neighbours = np.zeros(len(v), dtype=bool)
            neighbours[seg] = True
            if v.parent[seg] >= 0:
                neighbours[v.parent[seg]] = True
            neighbours |= v.parent == seg
            self.allowed_touch[index] = neighbours
            nodule = replace(nodule, centre=centre)
            if v.sdf_points(centre[None])[0] > 0.5 and self._fits(nodule):
                ancestors = seg
                while ancestors >= 0:
                    self.protected[ancestors] = True
                    ancestors = v.parent[ancestors]
                return nodule
            del self.allowed_touch[index]
        raise PlacementError(f"could not place juxtavascular nodule {spec.id}; try another seed")

    def pruned_vessels(self) -> Capsules:
        """The vessel tree without the small twigs that would run through a nodule."""
        cut = np.zeros(len(self.vessels), dtype=bool)
        for nodule in self.placed:
            big = nodule.largest_ellipsoid(self.horizon)
            hit = tube_clearance(self.vessels, big) < VESSEL_CLEARANCE_MM
            hit &= ~self.protected
            if nodule.index in self.allowed_touch:
                hit &= ~self.allowed_touch[nodule.index]
            cut |= hit
        doomed = self.vessels.descendants(np.flatnonzero(cut)) & ~self.protected
        return self.vessels.subset(~doomed)


def place_nodules(anatomy: ChestAnatomy, seed: int, horizon_day: float,
                  specs: tuple[NoduleSpec, ...] = CATALOGUE) -> tuple[list[PlacedNodule], Capsules]:
    """Place the catalogue in this anatomy; returns the nodules and the pruned vessel tree.

    Attached nodules go first (they need a particular vessel or pleural spot), the free ones
    after. Only `seed` decides the result, not the number of visits, so visit 0 of a 2-visit and
    of a 3-visit set are the same picture.
    """
    rng = np.random.default_rng([seed, 2])
    placer = _Placer(anatomy, horizon_day, rng)
    order = sorted(range(len(specs)), key=lambda i: (not specs[i].juxtavascular,
                                                     not specs[i].juxtapleural, i))
    placed: dict[int, PlacedNodule] = {}
    for i in order:
        spec = specs[i]
        if spec.juxtavascular:
            nodule = placer.place_juxtavascular(spec, i + 1)
        elif spec.juxtapleural:
            nodule = placer.place_juxtapleural(spec, i + 1)
        else:
            nodule = placer.place_free(spec, i + 1)
        placer.placed.append(nodule)
        placed[i] = nodule
    return [placed[i] for i in range(len(specs))], placer.pruned_vessels()
