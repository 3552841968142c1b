"""A chest phantom made differently from viewer.demo, to test explanation maps (and anything
else trained on the demo generator) off its home ground.

What differs from the demo generator: the lungs are a textured parenchyma (low-pass filtered noise,
not a flat -855 HU), the vessels are random curved tubes that also pass close to nodules, nodules
are ellipsoids, lobulated clusters of spheres or juxtapleural (centred on the lung's edge, half in
the chest wall), the image has a Gaussian point spread (soft kernel) or an unsharp mask (sharp
kernel), correlated noise of 20-45 HU, and the study grid is anisotropic and may be oblique.
Everything is analytic in LPS and evaluated at two points across each voxel's slice, so the
nodules' masks are exact: `Nodule.contains(points_lps)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from viewer.core.volume import SourceIdentity, Volume

KIND_HU = {"solid": (20.0, 70.0), "ground-glass": (-680.0, -520.0)}
SHAPES = ("ellipsoid", "lobulated", "juxtapleural")


@dataclass
class Nodule:
    kind: str  # solid, part-solid, ground-glass
    shape: str  # ellipsoid, lobulated, juxtapleural
    centre_lps: np.ndarray
    diameter_mm: float  # equivalent-sphere diameter of the whole nodule
    spheres: list = field(default_factory=list)  # (centre, semi-axes (3,), rotation 3x3): union of ellipsoids
    hu: float = 40.0
    core_hu: float | None = None

    def inside(self, points: np.ndarray, scale: float = 1.0) -> np.ndarray:
        out = np.zeros(len(points), bool)
        for centre, axes, rotation in self.spheres:
            local = (np.asarray(points, float) - centre) @ rotation
            out |= np.sum((local / (axes * scale)) ** 2, axis=1) <= 1.0
        return out

    def contains(self, points: np.ndarray) -> np.ndarray:
        """The lesion's mask as a predicate on LPS points (N, 3) -> (N,) bool."""
        return self.inside(points)

    def to_json(self) -> dict:
        return {"kind": self.kind, "shape": self.shape, "centre_lps_mm": self.centre_lps.tolist(),
                "diameter_mm": round(self.diameter_mm, 2)}


@dataclass
class OtherPhantom:
    volume: Volume
    nodules: list[Nodule]
    grid: dict


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _affine(shape_zyx, spacing_xyz, centre_lps, tilt_deg: float) -> np.ndarray:
    """Index -> LPS for a grid centred on `centre_lps`, its rows/columns tilted about two axes."""
    a, b = np.radians(tilt_deg), np.radians(tilt_deg * 0.6)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = (rz @ rx) * np.asarray(spacing_xyz, float)
    half = (np.array(shape_zyx[::-1]) - 1) / 2
    affine[:3, 3] = np.asarray(centre_lps, float) - affine[:3, :3] @ half
    return affine


def _lung_sdf(points: np.ndarray, side: int) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) to one lung: an ellipsoid 55 x 80 x 70 mm."""
    centre = np.array([side * 55.0, 5.0, 0.0])
    axes = np.array([42.0, 65.0, 70.0])
    r = np.linalg.norm((points - centre) / axes, axis=1)
    return (r - 1.0) * axes.min()


def _vessel_tree(rng, n: int, anchors: list[np.ndarray]):
    """Centreline samples (M, 3) and radii (M,) of curved tubes: random walks inside the lungs,
    some started next to a nodule so a vessel runs 1.5-5 mm from it."""
    points, radii = [], []
    for v in range(n):
        side = 1 if v % 2 else -1
        if v < len(anchors):
            offset = rng.normal(size=3)
            start = anchors[v] + offset / np.linalg.norm(offset) * rng.uniform(5.0, 9.0)
        else:
            start = np.array([side * 55.0, 5.0, 0.0]) + rng.uniform(-30, 30, 3) * [0.7, 1.0, 1.0]
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        radius = rng.uniform(0.8, 2.6)
        p = start.copy()
        for _ in range(260):  # 0.3 mm steps: about 80 mm of vessel
            direction += rng.normal(scale=0.08, size=3)
            direction /= np.linalg.norm(direction)
            p = p + 0.3 * direction
            if _lung_sdf(p[None], side)[0] > -1.0:
                break
            points.append(p.copy())
            radii.append(radius)
        p, d = start.copy(), -direction  # and a thinner branch the other way from the start
        for _ in range(120):
            d += rng.normal(scale=0.08, size=3)
            d /= np.linalg.norm(d)
            p = p + 0.3 * d
            if _lung_sdf(p[None], side)[0] > -1.0:
                break
            points.append(p.copy())
            radii.append(radius * 0.8)
    return np.array(points).reshape(-1, 3), np.array(radii)


def _place_nodules(rng, n: int, min_d: float, max_d: float) -> list[Nodule]:
    nodules: list[Nodule] = []
    kinds = ("solid", "part-solid", "ground-glass")
    tries = 0
    while len(nodules) < n and tries < 500:
        tries += 1
        idx = len(nodules)
        shape = SHAPES[idx % 3]
        kind = kinds[(idx // 3 + idx) % 3] if shape != "juxtapleural" else "solid"
        d = rng.uniform(min_d, max_d)
        side = 1 if rng.random() < 0.5 else -1
        if shape == "juxtapleural":  # centre on the lung's edge, so about half of it is in the wall
            direction = rng.normal(size=3) * [1.0, 1.0, 0.4]
            direction[0] = side * abs(direction[0]) * 2
            direction /= np.linalg.norm(direction)
            lung_centre, axes = np.array([side * 55.0, 5.0, 0.0]), np.array([42.0, 65.0, 70.0])
            centre = lung_centre + direction / np.linalg.norm(direction / axes)
            centre = centre - direction * d * 0.15  # mostly in the lung, touching the wall
        else:
            centre = np.array([side * 55.0, 5.0, 0.0]) + rng.uniform(-1, 1, 3) * [25.0, 42.0, 45.0]
            if _lung_sdf(centre[None], side)[0] > -(d / 2 + 2):
                continue
        if any(np.linalg.norm(centre - o.centre_lps) < (d + o.diameter_mm) / 2 + 12 for o in nodules):
            continue
        rotation = _rotation(rng)
        if shape == "lobulated":  # a main sphere with 3-4 smaller lobes on its surface
            r = d / 2 * 0.8
            spheres = [(centre, np.full(3, r), np.eye(3))]
            for _ in range(int(rng.integers(3, 5))):
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                spheres.append((centre + u * r * 0.75, np.full(3, r * rng.uniform(0.45, 0.6)), np.eye(3)))
        else:
            axes = d / 2 * np.array([1.25, 1.0, 0.8]) ** rng.uniform(0.3, 1.0)
            axes *= (d / 2) / np.prod(axes) ** (1 / 3)
            spheres = [(centre, axes, rotation)]
        nodule = Nodule(kind, shape, centre, d, spheres)
        lo, hi = KIND_HU["ground-glass" if kind != "solid" else "solid"]
        nodule.hu = float(rng.uniform(lo, hi))
        if kind == "part-solid":
            nodule.core_hu = float(rng.uniform(*KIND_HU["solid"]))
        nodule.diameter_mm = _equivalent_diameter(nodule)
        nodules.append(nodule)
    return nodules


def _equivalent_diameter(nodule: Nodule) -> float:
    """Equivalent-sphere diameter of the union of ellipsoids, by counting a 0.25 mm lattice."""
    extent = max(np.max(a) for _, a, _ in nodule.spheres) * 2.2
    step = 0.25
    axis = np.arange(-extent, extent + step, step)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3) + nodule.centre_lps
    volume = nodule.inside(grid).sum() * step ** 3
    return float((6 * volume / np.pi) ** (1 / 3))


def make_other_phantom(seed: int = 0, spacing_xyz=(0.7, 0.7, 2.5), tilt_deg: float = 0.0, n_nodules: int = 9,
                       diameters_mm=(5.0, 14.0), noise_hu: float | None = None, kernel: str | None = None,
                       size_mm=(240.0, 200.0, 150.0)) -> OtherPhantom:
    """A chest slab with two textured lungs, curved vessels, and `n_nodules` nodules of every kind
    and shape. kernel 'soft' (Gaussian blur) or 'sharp' (unsharp mask); None picks from the seed."""
    rng = np.random.default_rng([seed, 77])
    noise_hu = float(rng.uniform(20, 45)) if noise_hu is None else float(noise_hu)
    kernel = kernel or ("sharp" if rng.random() < 0.5 else "soft")
    spacing = np.asarray(spacing_xyz, float)
    shape = tuple(int(round(s / sp)) for s, sp in zip(size_mm[::-1], spacing[::-1]))
    affine = _affine(shape, spacing, (0.0, 5.0, 0.0), tilt_deg)
    nodules = _place_nodules(rng, n_nodules, *diameters_mm)
    vessel_points, vessel_radii = _vessel_tree(rng, 40, [n.centre_lps for n in nodules])
    # Keep vessels from running through nodules: drop samples inside any nodule grown by 1 mm.
    keep = np.ones(len(vessel_points), bool)
    for n in nodules:
        keep &= ~n.inside(vessel_points, scale=1.0 + 1.5 / max(n.diameter_mm / 2, 1.0))
    tree, vessel_radii = cKDTree(vessel_points[keep]), vessel_radii[keep]

    k, j, i = np.indices(shape).reshape(3, -1).astype(np.float32)
    ijk = np.stack([i, j, k], axis=1)
    hu = np.zeros(len(ijk), np.float32)
    offsets = [np.array([0.0, 0.0, -0.25]), np.array([0.0, 0.0, 0.25])]
    for o in offsets:  # two samples across the slice: partial volume of thick slices (in-plane: the blur)
        points = (ijk + o) @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
        hu += _tissue(points, nodules, tree, vessel_radii) / len(offsets)
    hu = hu.reshape(shape)
    texture = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma=2.0 / spacing[::-1])
    texture *= 25.0 / max(float(texture.std()), 1e-6)
    lung_like = (hu < -700).astype(np.float32)
    hu += texture * lung_like
    sigma = 0.6 / spacing[::-1]
    if kernel == "soft":
        hu = ndimage.gaussian_filter(hu, sigma=sigma * 1.5)
    else:  # sharp kernel: unsharp mask, edges overshoot
        hu = hu + 0.4 * (hu - ndimage.gaussian_filter(hu, sigma=sigma * 2))
    noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma=0.7)
    hu += noise * (noise_hu / max(float(noise.std()), 1e-6))
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    volume = Volume(hu, affine, source=SourceIdentity(modality="CT", description="other phantom"), unit="[hnsf'U]")
    grid = {"spacing_xyz": spacing.tolist(), "tilt_deg": tilt_deg, "kernel": kernel, "noise_hu": round(noise_hu, 1),
            "shape_zyx": list(shape), "seed": seed}
    return OtherPhantom(volume, nodules, grid)


def _tissue(points: np.ndarray, nodules: list[Nodule], tree: cKDTree, radii: np.ndarray) -> np.ndarray:
    """HU at LPS points before blur and noise: body, chest wall with a fat layer, lungs, vessels,
    nodules (painted in that order)."""
    body = np.linalg.norm(points[:, :2] / [112.0, 92.0], axis=1)
    hu = np.where(body <= 1.0, 45.0, -1000.0).astype(np.float32)
    hu[(body > 0.93) & (body <= 1.0)] = -95.0  # subcutaneous fat
    in_lung = np.zeros(len(points), bool)
    for side in (-1, 1):
        in_lung |= _lung_sdf(points, side) < 0
    # parenchyma a little denser towards the back (positive y is posterior in LPS)
    hu[in_lung] = -870.0 + 0.15 * points[in_lung, 1]
    distance, nearest = tree.query(points[in_lung], distance_upper_bound=4.0)
    hit = np.isfinite(distance)
    vessel = np.zeros(int(in_lung.sum()), bool)
    vessel[hit] = distance[hit] <= radii[nearest[hit]]
    lung_hu = hu[in_lung]
    lung_hu[vessel] = 35.0
    hu[in_lung] = lung_hu
    for n in nodules:
        lo = n.centre_lps - n.diameter_mm * 1.2
        hi = n.centre_lps + n.diameter_mm * 1.2
        near = np.all((points >= lo) & (points <= hi), axis=1)
        if not near.any():
            continue
        inside = n.inside(points[near])
        values = hu[near]
        values[inside] = n.hu
        if n.core_hu is not None:
            values[n.inside(points[near], scale=0.5)] = n.core_hu
        hu[near] = values
    return hu
