"""How a label value is drawn: colour, opacity, visibility; and the default palette."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelStyle:
    color: tuple[float, float, float]
    opacity: float = 0.5
    visible: bool = True


DEFAULT_LABEL_COLORS = [(0.9, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.5, 1.0), (1.0, 0.8, 0.2), (0.8, 0.4, 0.9),
                        (0.2, 0.9, 0.9), (1.0, 0.5, 0.2), (0.6, 0.6, 0.6)]
