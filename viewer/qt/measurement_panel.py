"""The measurements panel: every measurement of the series with its values; rename, jump, delete."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGridLayout, QInputDialog, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from viewer.core.measurements import Measurement
from viewer.qt.measurement_layer import describe
from viewer.qt.state import ViewerState

TOOLS = [("", "Navigate"), ("line", "Line"), ("angle", "Angle"), ("ellipse", "Ellipse ROI"), ("polygon", "Polygon ROI")]


class MeasurementPanel(QWidget):
    def __init__(self, state: ViewerState, parent=None):
        super().__init__(parent)
        self.state = state
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(self._rename)
        self.list.currentItemChanged.connect(self._jump)
        tools = QGridLayout()
        self.tool_buttons = {}
        for n, (kind, title) in enumerate(TOOLS):
            button = QPushButton(title)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, kind=kind: self.state.set_tool(kind))
            tools.addWidget(button, n // 3, n % 3)
            self.tool_buttons[kind] = button
        delete = QPushButton("Delete")
        delete.clicked.connect(self._delete)
        layout = QVBoxLayout(self)
        layout.addLayout(tools)
        layout.addWidget(self.list)
        layout.addWidget(delete)
        state.measurements_changed.connect(self.refresh)
        state.tool_changed.connect(self._tool_changed)
        self._tool_changed(state.tool)

    def _tool_changed(self, kind: str) -> None:
        for k, button in self.tool_buttons.items():
            button.setChecked(k == kind)

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for m in self.state.measurements:
            title = m.label or m.kind
            item = QListWidgetItem(f"{title}: {describe(m, self.state.volume)}")
            item.setData(Qt.UserRole, m.id)
            self.list.addItem(item)
        self.list.blockSignals(False)

    def _selected(self) -> Measurement | None:
        item = self.list.currentItem()
        if item is None:
            return None
        return next((m for m in self.state.measurements if m.id == item.data(Qt.UserRole)), None)

    def _jump(self, *_) -> None:
        m = self._selected()
        if m is not None:
            self.state.set_crosshair(m.array.mean(axis=0))

    def _rename(self, *_) -> None:
        m = self._selected()
        if m is None:
            return
        text, ok = QInputDialog.getText(self, "Measurement label", "Label:", text=m.label)
        if ok:
            self.state.save_measurement(Measurement(m.kind, m.points, text.strip(), m.id))

    def _delete(self) -> None:
        m = self._selected()
        if m is not None:
            self.state.delete_measurement(m.id)
