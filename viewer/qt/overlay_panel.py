"""The overlay legend: every overlay with its source, a visibility toggle and its display settings."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QColorDialog, QComboBox, QDoubleSpinBox, QFormLayout, QListWidget, QListWidgetItem,
                               QSlider, QVBoxLayout, QWidget)

from viewer.qt.state import ViewerState

COLORMAPS = ["inferno", "jet", "viridis", "hot", "coolwarm"]


class OverlayPanel(QWidget):
    def __init__(self, state: ViewerState, parent=None):
        super().__init__(parent)
        self.state = state
        self.list = QListWidget()
        self.list.itemChanged.connect(self._toggled)
        self.list.currentRowChanged.connect(self._show_settings)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(lambda v: self._update(opacity=v / 100))
        self.outline = QCheckBox("Outline only")
        self.outline.toggled.connect(lambda on: self._update(outline=on))
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.currentTextChanged.connect(lambda name: self._update(colormap=name))
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1e6, 1e6)
        self.threshold.setDecimals(3)
        self.threshold.setSpecialValueText("none")
        self.threshold.valueChanged.connect(lambda v: self._update(threshold=v))
        self.labels = QListWidget()
        self.labels.setToolTip("Tick to show a label; double-click to change its colour")
        self.labels.itemChanged.connect(self._label_toggled)
        self.labels.itemDoubleClicked.connect(self._label_colour)
        form = QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("", self.outline)
        form.addRow("Colour map", self.colormap)
        form.addRow("Threshold", self.threshold)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(form)
        layout.addWidget(self.labels)
        self._updating = False
        state.overlays_changed.connect(self.refresh)

    def refresh(self) -> None:
        self._updating = True
        row = self.list.currentRow()
        self.list.clear()
        for overlay in self.state.overlays:
            item = QListWidgetItem(f"{overlay.name} ({overlay.kind}) - {overlay.source}")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if overlay.visible else Qt.Unchecked)
            item.setToolTip(f"Source: {overlay.source}")
            self.list.addItem(item)
        if self.state.overlays:
            self.list.setCurrentRow(min(max(row, 0), len(self.state.overlays) - 1))
        self._updating = False
        self._show_settings(self.list.currentRow())

    def _toggled(self, item: QListWidgetItem) -> None:
        if not self._updating:
            self.state.update_overlay(self.list.row(item), visible=item.checkState() == Qt.Checked)

    def _show_settings(self, row: int) -> None:
        if not 0 <= row < len(self.state.overlays):
            return
        overlay = self.state.overlays[row]
        self._updating = True
        self.opacity.setValue(int(round(overlay.opacity * 100)))
        self.outline.setChecked(overlay.outline)
        self.outline.setEnabled(overlay.kind == "labels")
        self.colormap.setCurrentText(overlay.colormap)
        self.colormap.setEnabled(overlay.kind == "heatmap")
        self.threshold.setEnabled(overlay.kind == "heatmap")
        self.threshold.setValue(overlay.threshold if overlay.threshold is not None else self.threshold.minimum())
        self.labels.clear()
        for value, style in sorted(overlay.label_styles.items()):
            item = QListWidgetItem(f"{value}  {overlay.label_names.get(value, '')}")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if style.visible else Qt.Unchecked)
            item.setData(Qt.UserRole, value)
            pixmap = QPixmap(14, 14)
            pixmap.fill(QColor.fromRgbF(*style.color))
            item.setIcon(QIcon(pixmap))
            self.labels.addItem(item)
        self.labels.setVisible(overlay.kind == "labels")
        self._updating = False

    def _label_toggled(self, item: QListWidgetItem) -> None:
        row = self.list.currentRow()
        if not self._updating and 0 <= row < len(self.state.overlays):
            self.state.update_label(row, item.data(Qt.UserRole), visible=item.checkState() == Qt.Checked)

    def _label_colour(self, item: QListWidgetItem) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self.state.overlays):
            return
        value = item.data(Qt.UserRole)
        current = self.state.overlays[row].label_styles[value].color
        chosen = QColorDialog.getColor(QColor.fromRgbF(*current), self, "Label colour")
        if chosen.isValid():
            self.state.update_label(row, value, color=(chosen.redF(), chosen.greenF(), chosen.blueF()))

    def _update(self, **changes) -> None:
        row = self.list.currentRow()
        if self._updating or not 0 <= row < len(self.state.overlays):
            return
        if "threshold" in changes and changes["threshold"] == self.threshold.minimum():
            changes["threshold"] = None
        self.state.update_overlay(row, **changes)
