"""The Nodules panel: the table of the study's nodules, the reader's decisions, click-to-measure,
contour correction, AI detection and the growth chart.

Widget only (STYLE.md rule 4): measuring, re-measuring an edited contour and detection are core
functions (viewer.analysis) run in background jobs through the main window; the table shows the
NoduleList model and redraws when it changes (rule 5). Every AI row shows its model, version and
confidence and stays "pending" until the reader accepts, edits or rejects it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from radsight_lung_nodules.chart import draw_chart, save_chart, track_from_record
from radsight_lung_nodules.nodule_list import NoduleItem, NoduleList
from radsight_lung_nodules.tools import BRUSH_TOOL, MEASURE_TOOL, BrushTool, MeasureTool, padded_mask
from viewer.core.volume import Volume
from viewer.qt.state import Overlay

COLUMNS = ("ID", "Location", "Type", "Mean diam. (mm)", "Volume (mm³)", "Volume change (%)", "VDT (days)",
           "Lung-RADS", "Source", "Decision")
OVERLAY_PREFIX = "Nodule "


def create_panel(window) -> QWidget:
    """Panel factory named in the plugin manifest (`python_name`)."""
    return NodulePanel(window)


class _Item(QTableWidgetItem):
    """A cell that sorts by its number (blank cells last), not by its text."""

    def __init__(self, text: str, key=None):
        super().__init__(text)
        self.key = key
        self.setFlags(self.flags() & ~Qt.ItemIsEditable)

    def __lt__(self, other) -> bool:
        a, b = self.key, getattr(other, "key", None)
        if a is None or b is None:
            return (a is None) < (b is None) if (a is None) != (b is None) else self.text() < other.text()
        return a < b


def _location(item: NoduleItem, volume: Volume | None) -> tuple[str, float]:
    """Side of the body (patient x against the middle of the scan) and the LPS centre. The lobe
    would need the fissures, which the bundled lung model does not segment."""
    x, y, z = item.centre
    side = ""
    if volume is not None:
        nz, ny, nx = volume.shape
        middle = volume.index_to_lps([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])[0]
        side = "L " if x > middle else "R "  # LPS: +x is the patient's left
    return f"{side}({x:.0f}, {y:.0f}, {z:.0f})", float(z)


def cells(item: NoduleItem, volume: Volume | None) -> list[tuple[str, object]]:
    """The row of one nodule: (text, sort key) per column."""
    r = item.record
    prior = r.get("prior") or {}
    lung_rads = r.get("lung_rads")
    category = lung_rads.get("category") if isinstance(lung_rads, dict) else lung_rads
    change, vdt = prior.get("volume_change_pct"), prior.get("vdt_days")
    location = _location(item, volume)

    def number(value, digits=1):
        return ("" if value is None else f"{value:.{digits}f}", value)

    return [(item.label, _natural(item.label)), location, (str(r.get("type", "")), r.get("type")),
            number(r.get("mean_diameter_mm")), number(r.get("volume_mm3"), 0),
            number(change, 0),
            number(vdt, 0), (category or "", category), (item.source_text(), item.confidence), (item.status, item.status)]


def _natural(label: str) -> tuple:
    """Sort key that puts N2 before N11."""
    head = label.rstrip("0123456789")
    tail = label[len(head):]
    return (head, int(tail) if tail else -1, label)


class NodulePanel(QWidget):
    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.state = window.state
        self.nodules = NoduleList()
        self.editing: tuple[str, np.ndarray, Volume] | None = None  # nodule id, edited voxels, their grid
        self._measured = 0
        self.measure_tool = MeasureTool(self.measure_at)
        self.brush_tool = BrushTool(self._edited_mask, self._show_edit, self._stroke_ended)
        window.register_tool(MEASURE_TOOL, self.measure_tool)
        window.register_tool(BRUSH_TOOL, self.brush_tool)
        self._build()
        self.nodules.subscribe(self._on_model)
        self.state.volume_changed.connect(lambda _: self._on_volume())
        self.state.tool_changed.connect(self._on_tool)
        if self.state.volume is not None:
            self._on_volume()

    # layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.measure_button = QPushButton("Measure at click (M)")
        self.measure_button.setCheckable(True)
        self.measure_button.setToolTip("Then click a nodule in a slice view: it is measured in the background")
        self.measure_button.clicked.connect(self._toggle_measure)
        self.measure_action = QAction("Measure nodule at click", self.window, shortcut=QKeySequence("M"),
                                      triggered=lambda: self._toggle_measure(self.state.tool != MEASURE_TOOL))
        self.window.addAction(self.measure_action)
        self.detect_button = QPushButton("Detect")
        self.detect_button.setToolTip("Find nodules with the AI models (background job; Cancel in the status bar)")
        self.detect_button.clicked.connect(self.detect)
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: self.decide("accepted"))
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(lambda: self.decide("rejected"))
        self.edit_button = QPushButton("Edit contour")
        self.edit_button.setCheckable(True)
        self.edit_button.setToolTip("Paint or erase the nodule's contour in a slice view; the numbers follow")
        self.edit_button.clicked.connect(self._toggle_edit)
        self.erase_box = QCheckBox("Erase")
        self.erase_box.setChecked(True)
        self.erase_box.toggled.connect(lambda on: setattr(self.brush_tool, "erase", bool(on)))
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.5, 20.0)
        self.radius.setSuffix(" mm")
        self.radius.setValue(self.brush_tool.radius_mm)
        self.radius.valueChanged.connect(lambda v: setattr(self.brush_tool, "radius_mm", float(v)))
        self.align_button = QPushButton("Align prior")
        self.align_button.setToolTip("Register the prior study to this one, so that side-by-side views show the "
                                     "same anatomy (File > Open prior study first)")
        self.align_button.clicked.connect(self.align_prior)
        self.export_button = QPushButton("Export chart...")
        self.export_button.clicked.connect(self.choose_export)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.table.setMinimumHeight(170)  # header and about five rows
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.ai_note = QLabel("")  # what the last AI detection must be read with (set by _detected)
        self.ai_note.setWordWrap(True)
        self.ai_note.setStyleSheet("color: #b00020; font-weight: bold")
        self.ai_note.setVisible(False)
        self.figure = Figure(figsize=(4.5, 3.0), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(230)
        top = QHBoxLayout()
        for w in (self.measure_button, self.detect_button, self.align_button, self.export_button):
            top.addWidget(w)
        decide = QHBoxLayout()
        for w in (self.accept_button, self.reject_button, self.edit_button, self.erase_box, QLabel("Brush"), self.radius):
            decide.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.ai_note)
        layout.addWidget(self.table, 1)
        layout.addLayout(decide)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas, 1)
        self._update_buttons()

    # model -> view -----------------------------------------------------------------------
    def _on_volume(self) -> None:
        self.editing = None
        self.ai_note.setText("")
        self.ai_note.setVisible(False)
        self.nodules.load(self.state.store, self.state.series_key)

    def _on_model(self, event: str, nodule_id: str | None) -> None:
        if event == "selected":
            if self.editing is not None and self.editing[0] != nodule_id:
                self.state.set_tool("")  # the brush edits one nodule: selecting another ends the edit
            self._show_selected()
        else:
            self.refresh_table()
            if event == "changed" and nodule_id == self.nodules.selected_id:
                self._show_selected(move=False)
            elif self.nodules.selected is None:
                self._empty_chart()
        self._update_buttons()

    def refresh_table(self) -> None:
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.nodules.items))
        selected_row = None
        for row, item in enumerate(self.nodules.items):
            for col, (text, key) in enumerate(cells(item, self.state.volume)):
                cell = _Item(text, key)
                cell.setData(Qt.UserRole, item.id)
                if col == len(COLUMNS) - 1 and item.decided_by:
                    cell.setToolTip(f"{item.status} by {item.decided_by} at {item.decided_at}")
                if col == 0 and item.record.get("tracking_uid"):
                    cell.setToolTip(f"tracking UID {item.record['tracking_uid']}")
                self.table.setItem(row, col, cell)
            if item.id == self.nodules.selected_id:
                selected_row = row
        self.table.setSortingEnabled(True)
        self.table.clearSelection()
        if selected_row is not None:
            for row in range(self.table.rowCount()):
                if self.table.item(row, 0).data(Qt.UserRole) == self.nodules.selected_id:
                    self.table.selectRow(row)
        self.table.blockSignals(False)

    def row_of(self, nodule_id: str) -> int:
        """The table row showing a nodule now (rows move when sorted)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) == nodule_id:
                return row
        raise KeyError(nodule_id)

    def cell_text(self, nodule_id: str, column: str) -> str:
        return self.table.item(self.row_of(nodule_id), COLUMNS.index(column)).text()

    def _show_selected(self, move: bool = True) -> None:
        item = self.nodules.selected
        self.state.overlays = [o for o in self.state.overlays if not o.name.startswith(OVERLAY_PREFIX)]
        if item is None:
            self.state.overlays_changed.emit()
            self._empty_chart()
            return
        if move:
            self.state.set_crosshair(item.centre)
        mask = self._display_mask(item)
        if mask is not None:
            self.state.add_overlay(Overlay(OVERLAY_PREFIX + item.label, "labels", mask, item.source_text(), opacity=0.6))
        else:
            self.state.overlays_changed.emit()
        draw_chart(self.track(item), f"Nodule {item.label}", self.figure)
        self.canvas.draw_idle()

    def _empty_chart(self) -> None:
        self.figure.clear()
        if self.nodules.items:
            self.figure.text(0.5, 0.5, "Select a nodule for its growth chart", ha="center", va="center",
                             fontsize=9, color="0.4")
        self.canvas.draw_idle()

    def _display_mask(self, item: NoduleItem) -> Volume | None:
        if self.editing is not None and self.editing[0] == item.id:
            return self.editing[2].with_voxels(self.editing[1].copy())
        return item.mask

    def track(self, item: NoduleItem) -> list:
        return track_from_record(item.record, self.state.study_info.get("study_date") or None)

    def _update_buttons(self) -> None:
        has = self.nodules.selected is not None
        for w in (self.accept_button, self.reject_button, self.export_button):
            w.setEnabled(has)
        self.edit_button.setEnabled(has and self.nodules.selected.mask is not None)

    def _on_tool(self, tool: str) -> None:
        self.measure_button.setChecked(tool == MEASURE_TOOL)
        self.edit_button.setChecked(tool == BRUSH_TOOL)
        if tool != BRUSH_TOOL:
            self.editing = None

    # view -> model -----------------------------------------------------------------------
    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        self.nodules.select(self.table.item(rows[0].row(), 0).data(Qt.UserRole) if rows else None)

    def select(self, nodule_id: str | None) -> None:
        self.nodules.select(nodule_id)

    def _toggle_measure(self, on: bool) -> None:
        self.state.set_tool(MEASURE_TOOL if on else "")
        if on:
            self.show_status("Click a nodule in a slice view to measure it (Esc: stop)")

    def show_status(self, text: str) -> None:
        self.status.setText(text)
        self.state.message.emit(text)

    def measure_at(self, point: np.ndarray) -> None:
        """Measure the nodule at `point` (LPS mm) in the background; a row appears when done."""
        volume = self.state.volume
        if volume is None:
            return
        point = np.asarray(point, float)

        def work(progress, cancelled):
            from viewer.analysis.nodules import MeasurementError, measure_at

            try:
                return measure_at(volume, point)
            except MeasurementError as exc:  # the reason is for the reader, not an application error
                return exc

        self.show_status(f"Measuring at ({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm...")
        return self.window.run_job(work, "Measuring nodule", lambda result: self._measured_done(result, volume))

    def _measured_done(self, result, volume: Volume) -> None:
        from radsight_lung_nodules.records import nodule_record

        if volume is not self.state.volume:
            return  # another study was opened meanwhile
        if isinstance(result, Exception):
            self.show_status(f"No nodule measured: {result}")
            return
        self._measured += 1
        taken = {str(i.record.get("id")) for i in self.nodules.items}
        name = next(f"M{n}" for n in range(self._measured, self._measured + len(taken) + 2) if f"M{n}" not in taken)
        record = nodule_record(result, name, source="measured")
        item = self.nodules.add(record, "measured", mask=result.mask)
        self.show_status(f"Nodule {name}: {result.type}, {result.volume_mm3:.0f} mm³, mean diameter "
                         f"{result.mean_diameter_mm:.1f} mm")
        self.nodules.select(item.id)

    def decide(self, decision: str) -> None:
        item = self.nodules.selected
        if item is None:
            return
        self.nodules.decide(item.id, decision)
        self.show_status(f"Nodule {item.label} {decision}")

    def detect(self):
        """Run AI detection on the whole study; undecided AI rows are replaced by the new ones."""
        volume = self.state.volume
        if volume is None:
            self.show_status("Open a study first")
            return None

        def work(progress, cancelled):
            from viewer.analysis.detection import detect_in_study
            from viewer.analysis.patterns import split_pattern
            from viewer.inference.domain import check_study, detector_sensitivity, outside_summary
            from viewer.inference.registry import discover

            cards = discover().for_modality("CT")
            pattern, found = split_pattern(detect_in_study(volume, progress=progress, cancelled=cancelled))
            return found, outside_summary(check_study(cards, volume).values()), detector_sensitivity(cards), pattern

        return self.window.run_job(work, "Detecting nodules", lambda result: self._detected(*result[:3], volume,
                                                                                            result[3]))

    def _detected(self, detections, outside: str | None, sensitivity: str, volume: Volume, pattern=None) -> None:
        """The AI's rows, and above the table what they must be read with: a negative is "AI
        found no nodules" with the detector's sensitivity, multifocal opacities are one pattern
        (viewer.analysis.patterns) with its proposed Lung-RADS 0, and a study outside the models'
        validated domain says so with the reasons."""
        from radsight_lung_nodules.records import detection_record

        if volume is not self.state.volume:
            return
        notes = [] if detections or pattern else [f"AI found no nodules ({sensitivity}); pending reader review."]
        if pattern is not None:
            notes.append(f"AI: {pattern.description}; Lung-RADS 0 proposed, pending reader review.")
        self.ai_note.setText(" ".join(notes + ([outside] if outside else [])))
        self.ai_note.setVisible(bool(self.ai_note.text()))
        for item in [i for i in self.nodules.items if i.source == "ai" and i.decision is None]:
            self.nodules.remove(item.id)
        for n, d in enumerate(detections, 1):
            model = d.models[0] if d.models else None
            self.nodules.add(detection_record(d, f"A{n}"), "ai", mask=d.measurement.mask,
                             model=model, confidence=float(d.score))
        self.show_status(f"{len(detections)} nodule(s) found by AI: review each (Accept / Edit contour / Reject)")

    def align_prior(self):
        """Register prior and current in the background and link their views through the result."""
        prior, current = self.window.prior_state.volume, self.state.volume
        if prior is None or current is None:
            self.show_status("Open a prior study beside this one first (File > Open prior study)")
            return None

        def work(progress, cancelled):
            from viewer.analysis.registration import register

            return register(prior, current, progress=progress)

        return self.window.run_job(work, "Registering prior and current", self._aligned)

    def _aligned(self, registration) -> None:
        # Registration.matrix maps prior LPS to current LPS; the comparison link wants the inverse.
        self.window.comparison.set_transform(np.linalg.inv(registration.matrix))
        self.window.comparison.linked = True
        self.show_status(f"Prior aligned to current ({registration.method}); the views follow through the registration")

    # contour editing ---------------------------------------------------------------------
    def _toggle_edit(self, on: bool) -> None:
        item = self.nodules.selected
        if on and item is not None and item.mask is not None and self.state.volume is not None:
            grid = padded_mask(item.mask, self.state.volume)
            self.state.set_tool(BRUSH_TOOL)
            self.editing = (item.id, np.array(grid.voxels, np.uint8), grid)
            self.show_status("Drag in a slice view to erase (or paint, with Erase off); numbers update after each stroke")
        else:
            self.state.set_tool("")

    def _edited_mask(self):
        return None if self.editing is None else (self.editing[1], self.editing[2])

    def _show_edit(self) -> None:
        if self.editing is None:
            return
        mask = self.editing[2].with_voxels(self.editing[1].copy())
        for n, o in enumerate(self.state.overlays):
            if o.name.startswith(OVERLAY_PREFIX):
                self.state.update_overlay(n, volume=mask)
                return

    def _stroke_ended(self):
        """Re-measure the edited contour in the background; the row shows the new numbers."""
        if self.editing is None or self.state.volume is None:
            return None
        nodule_id, voxels, grid = self.editing
        mask, volume = grid.with_voxels(voxels.copy()), self.state.volume

        def work(progress, cancelled):
            from viewer.analysis.nodules import MeasurementError, remeasure

            try:
                return remeasure(volume, mask)
            except MeasurementError as exc:
                return exc

        return self.window.run_job(work, "Re-measuring the edited nodule",
                                   lambda result: self._remeasured(nodule_id, mask, result))

    def _remeasured(self, nodule_id: str, mask: Volume, result) -> None:
        from radsight_lung_nodules.records import nodule_record

        if isinstance(result, Exception):
            self.show_status(f"The edited contour cannot be measured: {result}")
            return
        try:
            item = self.nodules.get(nodule_id)
        except KeyError:
            return
        r = item.record
        record = nodule_record(result, r.get("id") or item.label, tracking_uid=r.get("tracking_uid"),
                               source=r.get("source", item.source), scores=r.get("scores"),
                               provenance=r.get("provenance"), prior=r.get("prior"))
        self.nodules.decide(nodule_id, "edited", record=record, mask=mask)
        self.show_status(f"Nodule {item.label} edited: {result.volume_mm3:.0f} mm³, mean diameter "
                         f"{result.mean_diameter_mm:.1f} mm")

    # chart ---------------------------------------------------------------------------------
    def export_chart(self, path: Path | str) -> Path:
        item = self.nodules.selected
        if item is None:
            raise ValueError("select a nodule first: the chart is of one nodule")
        return save_chart(self.track(item), path, f"Nodule {item.label}")

    def choose_export(self) -> None:
        item = self.nodules.selected
        if item is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export growth chart", f"nodule-{item.label}.png",
                                              "PNG image (*.png);;SVG drawing (*.svg)")
        if path:
            try:
                self.show_status(f"Chart written to {self.export_chart(path)}")
            except (OSError, ValueError) as exc:
                self.show_status(f"Chart not written: {exc}")
