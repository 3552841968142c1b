"""Standard viewing planes and orientation letters (radiological convention), as plain geometry.

A plane is given by the LPS directions of the screen's right and up axes. Radiological
convention: axial seen from the feet (patient's right on screen left, anterior up), coronal
seen from the front (right on the left, head up), sagittal seen from the patient's left
(anterior on the left, head up).
"""

from __future__ import annotations

import numpy as np

PLANES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # name: (screen right in LPS, screen up in LPS)
    "axial": ((1, 0, 0), (0, -1, 0)),
    "coronal": ((1, 0, 0), (0, 0, 1)),
    "sagittal": ((0, 1, 0), (0, 0, 1)),
}

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def plane_axes(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, normal) unit vectors in LPS; normal = right x up points away from the viewer."""
    try:
        right, up = PLANES[name]
    except KeyError:
        raise ValueError(f"unknown view {name!r}; use one of {', '.join(PLANES)}") from None
    right, up = np.asarray(right, float), np.asarray(up, float)
    return right, up, np.cross(right, up)


def direction_letters(vector, threshold: float = 0.1) -> str:
    """Letters for an LPS direction, strongest first: (1, 0, 0) -> 'L', oblique -> e.g. 'LP'."""
    v = np.asarray(vector, dtype=float)
    v = v / np.linalg.norm(v)
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[i][int(v[i] > 0)] for i in order if abs(v[i]) >= threshold)


def edge_labels(right, up) -> dict[str, str]:
    """Letters for the four screen edges of a plane with these screen axes."""
    right, up = np.asarray(right, float), np.asarray(up, float)
    return {"right": direction_letters(right), "left": direction_letters(-right),
            "top": direction_letters(up), "bottom": direction_letters(-up)}
