"""Branching tube trees: pulmonary vessels and bronchi.

A tree grows from a few root tubes by asymmetric bifurcation (radii follow Murray's law,
r_parent^3 ~ r_1^3 + r_2^3, lengths shrink with the radius) and stops when the tubes get thinner
than a minimum radius or cannot stay inside the lung. The result is a `Capsules` set whose
`parent` links let the nodule placement prune a twig without leaving floating pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from viewer.demo.shapes import Capsules


@dataclass(frozen=True)
class TreeRoot:
    start: tuple[float, float, float]
    direction: tuple[float, float, float]
    length_mm: float
    radius_mm: float


@dataclass(frozen=True)
class TreeStyle:
    min_radius_mm: float
    taper: float = 0.93         # end radius / start radius along one segment
    major_ratio: float = 0.88   # child radius / parent end radius (larger child)
    minor_ratio: float = 0.72   # (smaller child); 0.88^3 + 0.72^3 ~ 1 (Murray)
    length_per_radius: float = 5.0
    length_offset_mm: float = 3.0
    max_segments: int = 6000
    lung_margin_mm: float = 1.5


_SCALES = np.array([1.0, 0.6, 0.35])


def _perpendicular(u: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Random unit vector(s) perpendicular to the unit vector u."""
    v = rng.standard_normal(3 if n is None else (n, 3))
    v = v - np.multiply.outer(v @ u, u) if n is not None else v - v.dot(u) * u
    return v / np.linalg.norm(v, axis=-1, keepdims=n is not None)


def _candidate_directions(u: np.ndarray, planned_axis: np.ndarray, angle_deg: float,
                          rng: np.random.Generator) -> np.ndarray:
    """Five directions turned away from u: the planned one, two more at the same angle about
    random axes, two at 60 % of the angle (5 x 3)."""
    axes = np.concatenate([planned_axis[None], _perpendicular(u, rng, 4)])
    angles = np.radians(angle_deg * np.array([1.0, 1.0, 1.0, 0.6, 0.6]))
    w = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * axes
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def grow_tree(roots: list[TreeRoot], style: TreeStyle, lung_sdf: Callable[[np.ndarray], np.ndarray],
              rng: np.random.Generator) -> Capsules:
    """Grow the tree one generation at a time; `lung_sdf(points)` keeps every non-root tube
    inside the lung.

    Each child gets five candidate directions (the planned one first) at three lengths; the first
    candidate whose middle and end lie inside the lung by its radius plus a margin wins, so the
    twigs thin out towards the pleura as real ones do. A whole generation is tested in one call.
    """
    a, b, ra, rb, parent = [], [], [], [], []
    for root in roots:
        u = np.asarray(root.direction, dtype=float)
        u /= np.linalg.norm(u)
        start = np.asarray(root.start, dtype=float)
        a.append(start)
        b.append(start + root.length_mm * u)
        ra.append(root.radius_mm)
        rb.append(root.radius_mm * style.taper)
        parent.append(-1)
    generation = list(range(len(a)))
    while generation and len(a) < style.max_segments:
        children = []   # (parent index, start radius, candidate steps (15 x 3))
        for index in generation:
            r_end = rb[index]
            u = (b[index] - a[index]) / np.linalg.norm(b[index] - a[index])
            axis = _perpendicular(u, rng)
            for ratio, angle, side in ((style.major_ratio, rng.uniform(18, 32), 1.0),
                                       (style.minor_ratio, rng.uniform(35, 55), -1.0)):
                r0 = r_end * ratio * rng.uniform(0.95, 1.05)
                if r0 < style.min_radius_mm:
                    continue
                length = style.length_per_radius * r0 * rng.uniform(0.8, 1.25) + style.length_offset_mm
                directions = _candidate_directions(u, side * axis, angle, rng)
                steps = (directions[:, None, :] * (length * _SCALES)[None, :, None]).reshape(-1, 3)
                children.append((index, r0, steps))
        if not children:
            break
        tips = np.repeat(np.array([b[i] for i, _, _ in children]), 15, axis=0)
        steps = np.concatenate([c[2] for c in children])
        depth = lung_sdf(np.concatenate([tips + 0.5 * steps, tips + steps])).reshape(2, -1, 15)
        radii = np.array([c[1] for c in children])[:, None]
        fits = np.all(depth <= -(radii + style.lung_margin_mm), axis=0)
        generation = []
        for (index, r0, candidate), ok in zip(children, fits):
            if not ok.any() or len(a) >= style.max_segments:
                continue
            a.append(b[index].copy())
            b.append(b[index] + candidate[int(np.argmax(ok))])
            ra.append(r0)
            rb.append(r0 * style.taper)
            parent.append(index)
            generation.append(len(a) - 1)
    return Capsules(np.array(a), np.array(b), np.array(ra), np.array(rb),
                    np.array(parent, dtype=int))
