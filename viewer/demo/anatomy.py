"""The synthetic chest, defined analytically in the anatomy frame (LPS mm).

Why analytic: every structure is a signed-distance function, so it can be evaluated at any
world point. Each visit samples the same functions through its own rigid motion, partial volume
comes from a ramp of the distance over one voxel, and the ground truth (volumes, centres,
labels) is exact rather than re-measured.

Frame: x to the patient's left, y posterior, z superior; the origin is mid-chest just below the
carina. Sizes are those of a slim adult; the layout is textbook rather than traced from any
patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from viewer.demo.shapes import (Capsules, OrientedEllipsoid, capsules_bounds, capsules_sdf_xyz,
                                ellipse_sdf, ellipsoid_sdf, rotation_matrix, segment2d_sdf)
from viewer.demo.trees import TreeRoot, TreeStyle, grow_tree

# --- Hounsfield units -------------------------------------------------------------------------
HU_AIR = -1000.0
HU_FAT = -100.0
HU_MEDIASTINAL_FAT = -90.0
HU_MUSCLE = 40.0
HU_LIVER = 55.0
HU_LUNG = -855.0          # plus a small dependent (posterior) density gradient
HU_LUNG_GRADIENT = 25.0   # HU from the anterior to the posterior chest wall
HU_BLOOD = 40.0           # no contrast
HU_AIRWAY_WALL = 20.0
HU_ESOPHAGUS = 35.0
HU_CORTICAL = 900.0
HU_CANCELLOUS = 230.0
HU_DISC = 80.0
HU_CSF = 15.0
HU_TABLE = 60.0
CORTEX_MM = 1.3

# --- label values of labels.nii.gz ----------------------------------------------------------
LABEL_NAMES = {0: "background", 1: "left lung", 2: "right lung", 3: "airway lumen",
               4: "pulmonary vessels", 5: "heart and aorta", 6: "bone"}
LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, LABEL_AIRWAY, LABEL_VESSEL, LABEL_HEART, LABEL_BONE = 1, 2, 3, 4, 5, 6
LABEL_NODULE_BASE = 10  # nodule k (1-based, "N<k>") is 10 + k

# --- geometry (mm) ----------------------------------------------------------------------------
BODY_SEMI = (155.0, 112.0)         # skin: elliptic cylinder
FAT_MM = 12.0                      # subcutaneous fat
CAGE_SEMI = (127.0, 86.0)          # inner surface of the chest wall
CAGE_SHOULDER_Z = 10.0             # above this the cage closes as a half-ellipsoid
CAGE_DOME_MM = 102.0
PLEURAL_GAP_MM = 2.5               # lung surface lies this far inside the cage
MEDIASTINUM = ((0.0, -5.0), (24.0, 80.0))
SPINE_REGION = ((0.0, 62.0), (30.0, 34.0))
VERTEBRA = ((0.0, 48.0), (19.0, 16.0))
VERTEBRA_PERIOD_MM, VERTEBRA_HALF_HEIGHT_MM, VERTEBRA_PHASE_MM = 29.0, 12.0, 3.0
CANAL = ((0.0, 77.0), 8.5)
PARASPINAL = (((-32.0, 97.0), (22.0, 12.0)), ((32.0, 97.0), (22.0, 12.0)))
STERNUM = ((0.0, -92.0), (16.0, 6.0), (-75.0, 60.0))
TABLE_TOP_Y_MM, TABLE_THICKNESS_MM = 118.0, 7.0   # scanner frame: the table does not move
# Diaphragm domes: (apex z, apex x, apex y); the right one is higher (liver).
DOMES = ((-72.0, -65.0, 5.0), (-82.0, 65.0, 5.0))
DOME_DEPTH_MM, DOME_RADII = 42.0, (85.0, 95.0)


def cage_scale(z):
    """Cross-section scale of the chest cage at height z (1 below the shoulders)."""
    zz = np.maximum(np.asarray(z, dtype=float) - CAGE_SHOULDER_Z, 0.0) / CAGE_DOME_MM
    return np.sqrt(np.clip(1.0 - zz * zz, 0.0, 1.0))


def body_sdf(x, y, z):
    return ellipse_sdf(x, y, *BODY_SEMI)


def fat_inner_sdf(x, y, z):
    return ellipse_sdf(x, y, BODY_SEMI[0] - FAT_MM, BODY_SEMI[1] - FAT_MM)


def cage_sdf(x, y, z):
    zz = np.maximum(z - CAGE_SHOULDER_Z, 0.0)
    return ellipsoid_sdf(x, y, zz, CAGE_SEMI[0], CAGE_SEMI[1], CAGE_DOME_MM)


def dome_sdf(x, y, z):
    """Positive below the diaphragm, negative above; about a distance near the domes' tops."""
    heights = None
    for apex_z, apex_x, apex_y in DOMES:
        u, v = (x - apex_x) * (1.0 / DOME_RADII[0]), (y - apex_y) * (1.0 / DOME_RADII[1])
        h = apex_z - DOME_DEPTH_MM * (u * u + v * v)
        heights = h if heights is None else np.maximum(heights, h)
    return heights - z


def mediastinum_sdf(x, y, z):
    (cx, cy), (rx, ry) = MEDIASTINUM
    return ellipse_sdf(x - cx, y - cy, rx, ry)


def spine_region_sdf(x, y, z):
    (cx, cy), (rx, ry) = SPINE_REGION
    return ellipse_sdf(x - cx, y - cy, rx, ry)


def paraspinal_sdf(x, y, z):
    out = None
    for (cx, cy), (rx, ry) in PARASPINAL:
        d = ellipse_sdf(x - cx, y - cy, rx, ry)
        out = d if out is None else np.minimum(out, d)
    return out


def vertebra_z_sdf(z):
    """Distance in z to the nearest vertebral body slab (bodies repeat every 29 mm)."""
    u = np.mod(z - VERTEBRA_PHASE_MM, VERTEBRA_PERIOD_MM) - VERTEBRA_PERIOD_MM / 2
    return np.abs(u) - VERTEBRA_HALF_HEIGHT_MM


def vertebral_column_sdf(x, y, z):
    """Bodies and discs together (the discs are painted first, the bone over them)."""
    (cx, cy), (rx, ry) = VERTEBRA
    return ellipse_sdf(x - cx, y - cy, rx, ry)


def vertebral_bone_sdf(x, y, z):
    """Vertebral bodies plus the neural arch, transverse and spinous processes."""
    (cx, cy), (rx, ry) = VERTEBRA
    body = ellipse_sdf(x - cx, y - cy, rx, ry)
    (kx, ky), _ = CANAL
    ring = np.abs(np.sqrt((x - kx) ** 2 + (y - ky) ** 2) - 12.5) - 3.5
    arch = np.maximum(ring, 63.0 - y)
    processes = np.minimum(
        segment2d_sdf(x, y, (0.0, 92.0), (0.0, 104.0), 3.5),
        np.minimum(segment2d_sdf(x, y, (-10.0, 70.0), (-30.0, 77.0), 3.5),
                   segment2d_sdf(x, y, (10.0, 70.0), (30.0, 77.0), 3.5)))
    return np.maximum(np.minimum(body, np.minimum(arch, processes)), vertebra_z_sdf(z))


def canal_sdf(x, y, z):
    (kx, ky), r = CANAL
    return np.sqrt((x - kx) ** 2 + (y - ky) ** 2) - r


def sternum_sdf(x, y, z):
    (cx, cy), (rx, ry), (z0, z1) = STERNUM
    return np.maximum(ellipse_sdf(x - cx, y - cy, rx, ry), np.abs(z - (z0 + z1) / 2) - (z1 - z0) / 2)


def abdomen_sdf(x, y, z):
    """Inside the cage and below the diaphragm: liver and upper abdomen."""
    return np.maximum(cage_sdf(x, y, z), -dome_sdf(x, y, z))


@dataclass(frozen=True)
class Exclusion:
    """Something the lungs keep `margin` mm away from; `bounds` (anatomy frame, 2 x 3) is the
    box outside which it no longer shapes the lung surface."""

    name: str
    sdf: Callable
    margin: float
    bounds: np.ndarray


_HUGE = 1e4


def _capsule_chain(points, radii) -> Capsules:
    points = np.asarray(points, dtype=float)
    radii = np.asarray(radii, dtype=float)
    n = len(points) - 1
    return Capsules(points[:-1], points[1:], radii[:-1], radii[1:],
                    np.arange(-1, n - 1, dtype=int))


def _aorta() -> Capsules:
    return _capsule_chain([(8, -30, -18), (6, -26, 38), (22, -2, 54), (28, 20, 42), (30, 26, 0),
                           (30, 26, -160)], [14, 13.5, 13, 12.5, 12, 11.5])


def _esophagus() -> Capsules:
    return _capsule_chain([(6, 24, 160), (6, 24, -160)], [7, 7])


def _heart() -> OrientedEllipsoid:
    return OrientedEllipsoid(np.array([18.0, -28.0, -48.0]), np.array([62.0, 45.0, 52.0]),
                             rotation_matrix(0.0, 0.0, -30.0))


def _central_vessels() -> Capsules:
    """Pulmonary trunk and main pulmonary arteries (part of the vessel label)."""
    trunk = _capsule_chain([(26, -50, -10), (30, -36, 16)], [12, 12])
    right = _capsule_chain([(30, -36, 16), (14, -8, 14), (-10, -2, 10), (-36, -2, 6)],
                           [10.5, 10, 9.5, 9])
    left = _capsule_chain([(30, -36, 16), (40, -10, 20)], [10, 9])
    return Capsules.concat([trunk, right, left])


def _ribs() -> Capsules:
    """Twelve pairs of ribs as tube chains just outside the cage, sloping down anteriorly."""
    chains = []
    for side in (-1.0, 1.0):
        for k in range(12):
            z_back = 100.0 - 19.5 * k
            phi_end = 150.0 if k < 7 else 150.0 - 12.0 * (k - 6)
            phis = np.linspace(14.0, phi_end, 12)
            z = z_back - 38.0 * (phis - 14.0) / (150.0 - 14.0)
            s = cage_scale(z)
            rad = np.radians(phis)
            x = side * (CAGE_SEMI[0] * s + 7.0) * np.sin(rad)
            y = (CAGE_SEMI[1] * s + 7.0) * np.cos(rad)
            chains.append(_capsule_chain(np.stack([x, y, z], axis=1), np.full(len(phis), 4.2)))
    return Capsules.concat(chains)


def _box(low, high) -> np.ndarray:
    return np.array([low, high], dtype=float)


def airway_wall_mm(radius):
    """Bronchial wall thickness grows with the lumen (about 20 % of it, at least 0.6 mm)."""
    return 0.2 * np.asarray(radius) + 0.6


@dataclass(frozen=True)
class ChestAnatomy:
    """Everything but the nodules; `build(seed)` grows the seed-dependent vessel and airway
    trees inside the fixed body."""

    heart: OrientedEllipsoid
    aorta: Capsules
    esophagus: Capsules
    vessels: Capsules
    airways: Capsules       # lumen radii; the wall is airway_wall_mm(r) thick
    ribs: Capsules
    exclusions: tuple[Exclusion, ...] = field(default=())

    @staticmethod
    def build(seed: int) -> "ChestAnatomy":
        heart, aorta, esophagus = _heart(), _aorta(), _esophagus()
        base = ChestAnatomy(heart, aorta, esophagus, Capsules.empty(), Capsules.empty(), _ribs())
        base = replace(base, exclusions=base._make_exclusions())
        rng = np.random.default_rng([seed, 1])
        lung = base.lung_sdf_points
        vessels = Capsules.concat([
            _central_vessels(),
            grow_tree(_artery_roots() + _vein_roots(), TreeStyle(min_radius_mm=0.5), lung, rng),
        ])
        airways = Capsules.concat([
            _capsule_chain([(0, 8, 160), (0, 10, 22)], [8.5, 8.2]),
            _capsule_chain([(0, 10, 22), (-27, 14, 8)], [6.4, 6.0]),
            _capsule_chain([(0, 10, 22), (33, 16, 0)], [5.8, 5.4]),
            grow_tree(_bronchus_roots(), TreeStyle(min_radius_mm=1.0, length_per_radius=6.0,
                                                   lung_margin_mm=3.0), lung, rng),
        ])
        return replace(base, vessels=vessels, airways=airways)

    def _make_exclusions(self) -> tuple[Exclusion, ...]:
        (mx, my), (mrx, mry) = MEDIASTINUM
        (sx, sy), (srx, sry) = SPINE_REGION
        para = np.array([[c[0] - r[0], c[1] - r[1]] for c, r in PARASPINAL]).min(axis=0)
        para_hi = np.array([[c[0] + r[0], c[1] + r[1]] for c, r in PARASPINAL]).max(axis=0)
        return (
            Exclusion("mediastinum", mediastinum_sdf, 2.0,
                      _box((mx - mrx, my - mry, -_HUGE), (mx + mrx, my + mry, _HUGE))),
            Exclusion("heart", self.heart.sdf, 3.0, self.heart.bounds()),
            Exclusion("aorta", lambda x, y, z: capsules_sdf_xyz(self.aorta, x, y, z), 2.0,
                      capsules_bounds(self.aorta)),
            Exclusion("spine", spine_region_sdf, 2.0,
                      _box((sx - srx, sy - sry, -_HUGE), (sx + srx, sy + sry, _HUGE))),
            Exclusion("paraspinal muscles", paraspinal_sdf, 1.0,
                      _box((*para, -_HUGE), (*para_hi, _HUGE))),
        )

    @staticmethod
    def lung_base_sdf(x, y, z):
        """The chest cavity above the diaphragm, before the mediastinum is taken out."""
        return np.maximum(cage_sdf(x, y, z) + PLEURAL_GAP_MM, dome_sdf(x, y, z))

    def lung_sdf(self, x, y, z):
        """Both lungs (left where x > 0): negative inside, about a distance near the surface."""
        out = self.lung_base_sdf(x, y, z)
        for ex in self.exclusions:
            out = np.maximum(out, ex.margin - ex.sdf(x, y, z))
        return out

    def lung_sdf_points(self, points: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(np.asarray(points, dtype=float))
        return self.lung_sdf(p[:, 0], p[:, 1], p[:, 2])

    def airway_outer(self) -> Capsules:
        """The airways including their walls."""
        return replace(self.airways, ra=self.airways.ra + airway_wall_mm(self.airways.ra),
                       rb=self.airways.rb + airway_wall_mm(self.airways.rb))


def _artery_roots() -> list[TreeRoot]:
    right, left = (-36.0, -2.0, 6.0), (40.0, -10.0, 20.0)
    return [
        TreeRoot(right, (-0.5, -0.05, 0.85), 16.0, 6.0),    # right upper lobe
        TreeRoot(right, (-0.5, -0.7, -0.5), 14.0, 4.5),     # middle lobe
        TreeRoot(right, (-0.35, 0.45, -0.82), 18.0, 6.5),   # right lower lobe
        TreeRoot(left, (0.5, -0.1, 0.85), 16.0, 5.5),       # left upper lobe
        TreeRoot(left, (0.5, -0.7, -0.45), 14.0, 4.5),      # lingula
        TreeRoot(left, (0.3, 0.5, -0.8), 18.0, 6.0),        # left lower lobe
    ]


def _vein_roots() -> list[TreeRoot]:
    right, left = (-8.0, 8.0, -30.0), (28.0, 8.0, -30.0)
    return [
        TreeRoot(right, (-0.85, -0.1, 0.5), 30.0, 6.0),
        TreeRoot(right, (-0.85, 0.25, -0.45), 30.0, 6.0),
        TreeRoot(left, (0.85, -0.1, 0.5), 26.0, 5.5),
        TreeRoot(left, (0.85, 0.25, -0.45), 26.0, 5.5),
    ]


def _bronchus_roots() -> list[TreeRoot]:
    right, left = (-27.0, 14.0, 8.0), (33.0, 16.0, 0.0)
    return [
        TreeRoot(right, (-0.55, 0.1, 0.83), 12.0, 4.2),
        TreeRoot(right, (-0.45, -0.75, -0.45), 14.0, 3.4),
        TreeRoot(right, (-0.3, 0.35, -0.88), 20.0, 4.6),
        TreeRoot(left, (0.5, 0.0, 0.86), 12.0, 4.0),
        TreeRoot(left, (0.45, -0.75, -0.45), 14.0, 3.2),
        TreeRoot(left, (0.3, 0.4, -0.86), 18.0, 4.4),
    ]
