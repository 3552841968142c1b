"""Signed-distance primitives for the synthetic chest, in millimetres.

Every function takes coordinate arrays that broadcast against each other, so the same code
answers a few query points (nodule placement) and a whole voxel slab (rasterising). Distances are
negative inside. Ellipses and ellipsoids use the usual first-order approximation
k0 * (k0 - 1) / k1, which is exact on the surface and close to it nearby: all the occupancy ramp
and the majority-occupancy labels need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY = 1e-6
_EPS = 1e-6


def ellipse_sdf(x, y, rx: float, ry: float):
    """Distance to the ellipse (x/rx)^2 + (y/ry)^2 = 1 (an elliptic cylinder along z)."""
    rx, ry = float(rx), float(ry)
    u = x * (1.0 / rx)
    v = y * (1.0 / ry)
    k0 = np.sqrt(u * u + v * v)
    u *= 1.0 / rx
    v *= 1.0 / ry
    k1 = np.sqrt(u * u + v * v)
    return _ratio_distance(k0, k1, min(rx, ry))


def ellipsoid_sdf(x, y, z, rx: float, ry: float, rz: float):
    """Distance to the axis-aligned ellipsoid with semi-axes (rx, ry, rz) at the origin."""
    rx, ry, rz = float(rx), float(ry), float(rz)
    u, v, w = x * (1.0 / rx), y * (1.0 / ry), z * (1.0 / rz)
    k0 = np.sqrt(u * u + v * v + w * w)
    u *= 1.0 / rx
    v *= 1.0 / ry
    w *= 1.0 / rz
    k1 = np.sqrt(u * u + v * v + w * w)
    return _ratio_distance(k0, k1, min(rx, ry, rz))


def _ratio_distance(k0, k1, r_min: float):
    """(k0 - 1) * k0 / k1, kept finite at the centre: the epsilons make k0 / k1 tend to the
    smallest semi-axis there (the true depth) instead of 0 / 0, and change nothing elsewhere."""
    return (k0 - 1.0) * (k0 + _EPS) / (k1 + _EPS / r_min)


def circle_sdf(x, y, r: float):
    return np.sqrt(x * x + y * y) - r


def rotate_into(x, y, z, centre, rotation: np.ndarray):
    """Coordinates in a frame whose axes are the columns of `rotation`, centred at `centre`."""
    c = [float(v) for v in centre]
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    r = np.asarray(rotation).tolist()
    return (dx * r[0][0] + dy * r[1][0] + dz * r[2][0],
            dx * r[0][1] + dy * r[1][1] + dz * r[2][1],
            dx * r[0][2] + dy * r[1][2] + dz * r[2][2])


@dataclass(frozen=True)
class OrientedEllipsoid:
    """An ellipsoid with semi-axes along the columns of `rotation` (anatomy frame, mm)."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray

    def sdf(self, x, y, z):
        u, v, w = rotate_into(x, y, z, self.centre, self.rotation)
        return ellipsoid_sdf(u, v, w, *self.semi_axes)

    def bounds(self, margin: float = 0.0) -> np.ndarray:
        """Axis-aligned box (2 x 3: min, max) that holds the ellipsoid, exactly."""
        half = np.sqrt(((self.rotation * self.semi_axes) ** 2).sum(axis=1)) + margin
        return np.stack([self.centre - half, self.centre + half])

    def surface_points(self, n: int = 200) -> np.ndarray:
        """Evenly spread points on the surface (Fibonacci sphere mapped through the axes)."""
        return self.centre + (fibonacci_sphere(n) * self.semi_axes) @ self.rotation.T


def fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                     np.cos(polar)], axis=1)


def rotation_matrix(about_x_deg: float, about_y_deg: float, about_z_deg: float) -> np.ndarray:
    """R = Rz @ Ry @ Rx (right-handed, angles in degrees)."""
    ax, ay, az = np.radians([about_x_deg, about_y_deg, about_z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed rotation (QR of a Gaussian matrix, sign-fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class Capsules:
    """Tapered tubes (round cones) from a[n] with radius ra[n] to b[n] with radius rb[n].

    Vessels, airways and ribs are unions of these. `parent[n]` is the index of the segment that
    a tree segment grows from (-1 for a root), so a subtree can be pruned as a whole.
    """

    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    parent: np.ndarray

    @staticmethod
    def empty() -> "Capsules":
        z3, z1 = np.zeros((0, 3)), np.zeros(0)
        return Capsules(z3, z3, z1, z1, np.zeros(0, dtype=int))

    def __len__(self) -> int:
        return len(self.ra)

    def subset(self, keep: np.ndarray) -> "Capsules":
        """Keep the segments where `keep` is true; parents of dropped segments become -1."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.full(len(self), -1)
        new_index[keep] = np.arange(int(keep.sum()))
        parent = self.parent[keep]
        parent = np.where(parent >= 0, new_index[np.maximum(parent, 0)], -1)
        return Capsules(self.a[keep], self.b[keep], self.ra[keep], self.rb[keep], parent)

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> "Capsules":
        """The same tubes after the rigid motion p -> R p + t (distances are unchanged)."""
        return Capsules(self.a @ rotation.T + translation, self.b @ rotation.T + translation,
                        self.ra, self.rb, self.parent)

    def descendants(self, roots) -> np.ndarray:
        """Boolean mask of the given segments and everything that grows from them."""
        mask = np.zeros(len(self), dtype=bool)
        mask[list(roots)] = True
        changed = True
        while changed:
            grown = mask | ((self.parent >= 0) & mask[np.maximum(self.parent, 0)])
            changed = bool((grown != mask).any())
            mask = grown
        return mask

    def sdf_points(self, points: np.ndarray, extra_radius: float = 0.0) -> np.ndarray:
        """Distance from each of N points (N x 3) to the union of all tubes."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if len(self) == 0:
            return np.full(len(points), np.inf)
        out = np.empty(len(points))
        ab = self.b - self.a
        ll = np.maximum((ab * ab).sum(axis=1), _TINY)
        for start in range(0, len(points), 512):
            p = points[start:start + 512, None, :] - self.a[None]
            t = np.clip((p * ab).sum(axis=2) / ll, 0.0, 1.0)
            q = p - t[..., None] * ab
            d = np.sqrt((q * q).sum(axis=2)) - (self.ra + t * (self.rb - self.ra)) - extra_radius
            out[start:start + 512] = d.min(axis=1)
        return out

    def segment_sdf_points(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point to each tube (N x M), for finding what touches what."""
        p = np.atleast_2d(points)[:, None, :] - self.a[None]
        ab = self.b - self.a
        t = np.clip((p * ab).sum(axis=2) / np.maximum((ab * ab).sum(axis=1), _TINY), 0.0, 1.0)
        q = p - t[..., None] * ab
        return np.sqrt((q * q).sum(axis=2)) - (self.ra + t * (self.rb - self.ra))

    @staticmethod
    def concat(parts: list["Capsules"]) -> "Capsules":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Capsules.empty()
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        parent = np.concatenate([np.where(p.parent >= 0, p.parent + o, -1)
                                 for p, o in zip(parts, offsets)])
        return Capsules(np.concatenate([p.a for p in parts]), np.concatenate([p.b for p in parts]),
                        np.concatenate([p.ra for p in parts]), np.concatenate([p.rb for p in parts]),
                        parent)


def segment2d_sdf(x, y, a: tuple[float, float], b: tuple[float, float], r: float):
    """Distance to a 2-D capsule (a rod in the axial plane, extruded along z)."""
    abx, aby = b[0] - a[0], b[1] - a[1]
    px, py = x - a[0], y - a[1]
    t = np.clip((px * abx + py * aby) * (1.0 / (abx * abx + aby * aby)), 0.0, 1.0)
    qx, qy = px - t * abx, py - t * aby
    return np.sqrt(qx * qx + qy * qy) - r


def capsules_sdf_xyz(capsules: Capsules, x, y, z):
    """Union distance of a few tubes on broadcastable coordinate arrays (mediastinal vessels)."""
    out = None
    for a, b, ra, rb in zip(capsules.a.tolist(), capsules.b.tolist(), capsules.ra.tolist(),
                            capsules.rb.tolist()):
        ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
        px, py, pz = x - a[0], y - a[1], z - a[2]
        ll = max(ab[0] ** 2 + ab[1] ** 2 + ab[2] ** 2, _TINY)
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) * (1.0 / ll), 0.0, 1.0)
        qx, qy, qz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        d = np.sqrt(qx * qx + qy * qy + qz * qz) - (ra + t * (rb - ra))
        out = d if out is None else np.minimum(out, d)
    return out


def capsules_bounds(capsules: Capsules, margin: float = 0.0) -> np.ndarray:
    """Axis-aligned box (2 x 3) around a set of tubes."""
    r = np.maximum(capsules.ra, capsules.rb)[:, None] + margin
    low = np.minimum(capsules.a, capsules.b) - r
    high = np.maximum(capsules.a, capsules.b) + r
    return np.stack([low.min(axis=0), high.max(axis=0)])
