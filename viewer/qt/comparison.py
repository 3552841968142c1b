"""Prior/current comparison: two states kept in step through a transform between their LPS spaces.

Until registration exists (nodule issue), the mapping is a translation: none by default (the
same table position, which is what "sync by slice position" means on the same scanner), or the
offset captured when the reader unlinks, scrolls both to the same anatomy and links again. A
registration result later supplies a full 4x4 matrix through `set_transform`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject

from viewer.qt.state import ViewerState


class ComparisonLink(QObject):
    def __init__(self, current: ViewerState, prior: ViewerState):
        super().__init__()
        self.current, self.prior = current, prior
        self.current_to_prior = np.eye(4)
        self.linked = True
        self._busy = False
        current.crosshair_changed.connect(self._from_current)
        prior.crosshair_changed.connect(self._from_prior)
        current.window_changed.connect(self._window_from_current)
        prior.window_changed.connect(self._window_from_prior)

    def set_transform(self, matrix) -> None:
        """4x4 mapping current LPS mm to prior LPS mm (e.g. from registration)."""
        self.current_to_prior = np.asarray(matrix, float)
        self._from_current(self.current.crosshair)

    def link_here(self) -> None:
        """Declare the two crosshairs to be the same anatomy: keep their offset from now on."""
        m = np.eye(4)
        m[:3, 3] = self.prior.crosshair - self.current.crosshair
        self.current_to_prior = m
        self.linked = True

    def toggle(self) -> bool:
        """Unlink (each study scrolls on its own) or, when unlinked, link at the crosshairs."""
        if self.linked:
            self.linked = False
        else:
            self.link_here()
        return self.linked

    def map_to_prior(self, point) -> np.ndarray:
        return (self.current_to_prior @ np.append(point, 1.0))[:3]

    def map_to_current(self, point) -> np.ndarray:
        return (np.linalg.inv(self.current_to_prior) @ np.append(point, 1.0))[:3]

    def _guarded(self, fn) -> None:
        if not self.linked or self._busy or self.current.volume is None or self.prior.volume is None:
            return
        self._busy = True
        try:
            fn()
        finally:
            self._busy = False

    def _from_current(self, point) -> None:
        self._guarded(lambda: self.prior.set_crosshair(self.map_to_prior(point)))

    def _from_prior(self, point) -> None:
        self._guarded(lambda: self.current.set_crosshair(self.map_to_current(point)))

    def _window_from_current(self, width, level) -> None:
        self._guarded(lambda: self.prior.set_window(width, level))

    def _window_from_prior(self, width, level) -> None:
        self._guarded(lambda: self.current.set_window(width, level))
