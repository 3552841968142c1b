"""The whole synthetic patient: anatomy, placed nodules and known-tissue reference points."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from viewer.demo.anatomy import (BODY_SEMI, FAT_MM, HU_AIR, HU_CANCELLOUS, HU_FAT, HU_LUNG,
                                 HU_MUSCLE, VERTEBRA, VERTEBRA_PERIOD_MM, VERTEBRA_PHASE_MM,
                                 ChestAnatomy)
from viewer.demo.nodules import CATALOGUE, NoduleSpec, PlacedNodule, place_nodules

# Sizes are checked for the whole horizon so that a nodule placed inside the lung stays there
# even when a caller asks for visits up to two years apart.
DEFAULT_HORIZON_DAYS = 730.0


@dataclass(frozen=True)
class ReferencePoint:
    """A point (anatomy frame) well inside one tissue, with the tissue's nominal HU."""

    tissue: str
    point: np.ndarray
    hu: float


@dataclass(frozen=True)
class Phantom:
    seed: int
    anatomy: ChestAnatomy
    nodules: tuple[PlacedNodule, ...]
    horizon_day: float

    @staticmethod
    def build(seed: int, horizon_day: float = DEFAULT_HORIZON_DAYS,
              specs: tuple[NoduleSpec, ...] = CATALOGUE) -> "Phantom":
        anatomy = ChestAnatomy.build(seed)
        nodules, vessels = place_nodules(anatomy, seed, horizon_day, specs)
        return Phantom(seed, replace(anatomy, vessels=vessels), tuple(nodules), horizon_day)

    def reference_points(self) -> list[ReferencePoint]:
        """Tissue probes for tests and sanity checks, each at least a few voxels from any edge."""
        # Vertebral bodies are centred where (z - phase) mod period is half the period.
        first_centre = VERTEBRA_PHASE_MM + VERTEBRA_PERIOD_MM / 2
        vertebra_z = first_centre + VERTEBRA_PERIOD_MM * np.round((-30.0 - first_centre) / VERTEBRA_PERIOD_MM)
        # Lateral subcutaneous fat lies halfway between skin and muscle at y = 0.
        points = [
            ReferencePoint("air", np.array([0.0, -150.0, -30.0]), HU_AIR),
            ReferencePoint("fat", np.array([-(BODY_SEMI[0] - FAT_MM / 2), 0.0, -30.0]), HU_FAT),
            ReferencePoint("muscle", np.array([40.0, -89.0, -30.0]), HU_MUSCLE),
            ReferencePoint("cancellous bone", np.array([VERTEBRA[0][0], VERTEBRA[0][1], vertebra_z]),
                           HU_CANCELLOUS),
        ]
        for side, name in ((-1, "right lung"), (1, "left lung")):
            points.append(ReferencePoint(name, self._quiet_lung_point(side), HU_LUNG))
        return points

    def _quiet_lung_point(self, side: int) -> np.ndarray:
        """A lung point far from the pleura, vessels, airways and nodules (deterministic)."""
        rng = np.random.default_rng([self.seed, 5, side + 1])
        anatomy = self.anatomy
        for _ in range(50):
            p = np.stack([side * rng.uniform(40, 110, 500), rng.uniform(-40, 50, 500),
                          rng.uniform(-50, 40, 500)], axis=1)
            ok = anatomy.lung_sdf_points(p) < -15.0
            p = p[ok]
            if len(p) == 0:
                continue
            ok = (anatomy.vessels.sdf_points(p) > 8.0) & (anatomy.airway_outer().sdf_points(p) > 8.0)
            for n in self.nodules:
                big = n.largest_ellipsoid(self.horizon_day)
                ok &= big.sdf(p[:, 0], p[:, 1], p[:, 2]) > 10.0
            if ok.any():
                return p[np.flatnonzero(ok)[0]]
        raise RuntimeError(f"no vessel-free lung point found on side {side} for seed {self.seed}")
