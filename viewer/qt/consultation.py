"""Consultation mode: one full-screen, high-contrast page a clinician shows the patient, face to
face (issue 8, "For educators and patient consultations").

Large type and few controls (previous / next finding, show patient details, exit); for the
selected finding the slice through it outlined, its growth chart, the 3-D model with it
highlighted, and the approved plain-language summary. Patient details stay off the screen (and
out of the window title) unless the clinician ticks "Show patient details". What is shown, and
the rule that only released material is, lives in viewer.report.consultation; this widget reads
the store on the GUI thread and makes the pictures in background jobs.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QFont, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from viewer.qt.workers import Job
from viewer.report.consultation import (NO_SUMMARY, ConsultFinding, approved_summary, consultation_findings,
                                        latest_report, latest_signed)

TITLE = "RadSight consultation"
BODY_PT, CAPTION_PT, HEADING_PT = 20, 28, 34
STYLE = """
QWidget#consultation, QWidget#consultation QWidget { background: #000000; color: #ffffff; }
QPushButton { background: #1a1a1a; color: #ffffff; border: 3px solid #ffffff; border-radius: 8px;
              padding: 10px 28px; }
QPushButton:disabled { color: #777777; border-color: #555555; }
QPushButton:focus { border-color: #ffd900; }
QCheckBox::indicator { width: 28px; height: 28px; }
QLabel#caption { color: #ffd900; }
QLabel#section { color: #bfbfbf; }
QProgressBar { border: 2px solid #ffffff; color: #ffffff; text-align: center; }
QProgressBar::chunk { background: #ffd900; }
"""
PLUGIN_MISSING = "No growth chart: it comes with the lung-nodule plugin, which is not installed."
ONE_SCAN = "Seen on one scan only: there is no change over time to show yet."


def _font(points: int, bold: bool = False) -> QFont:
    font = QFont()
    font.setPointSize(points)
    font.setBold(bold)
    return font


def _person_name(value: str) -> str:
    """DICOM PN "FAMILY^GIVEN" as "Given Family"."""
    from pydicom.valuerep import PersonName

    name = PersonName(str(value))
    words = [name.given_name, name.middle_name, name.family_name]
    return " ".join(w for w in words if w) or str(value)


def growth_chart(record: dict):
    """(RGB array, note) of the nodule's growth chart, or (None, why there is none). Drawn by the
    plugins' `report_figures` contributions, as the Report panel's PDF gets its charts
    (viewer.plugins.report_figures): the core viewer needs no plugin, and says so without one."""
    import tempfile
    from pathlib import Path

    from matplotlib.image import imread

    from viewer.plugins import contributions
    from viewer.plugins.report_figures import report_figures

    if not contributions("report_figures"):
        return None, PLUGIN_MISSING
    visits = len(record.get("history") or [])
    if visits < 2:
        return None, ONE_SCAN
    with tempfile.TemporaryDirectory(prefix="radsight-consult-") as folder:
        paths, problems = report_figures([record], Path(folder), audience="patient")
        if not paths:
            return None, problems[0] if problems else ONE_SCAN
        rgba = imread(paths[0])
    rgb = rgba[..., :3]
    return (rgb * 255).round().astype(np.uint8) if rgb.dtype.kind == "f" else rgb.astype(np.uint8), f"{visits} scans"


def _qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format_RGB888).copy()


class Picture(QLabel):
    """An image scaled to fit, aspect kept, centred; or a line of text in its place."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.image: QImage | None = None
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(200, 160)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)

    def set_image(self, image: QImage | None, text: str = "") -> None:
        self.image = image
        if image is None:
            self.clear()
            self.setText(text)
        else:
            self.setText("")
            self._rescale()

    def _rescale(self) -> None:
        if self.image is not None and self.width() > 1 and self.height() > 1:
            self.setPixmap(QPixmap.fromImage(self.image.scaled(self.size(), Qt.KeepAspectRatio,
                                                               Qt.SmoothTransformation)))

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._rescale()


class ConsultationWindow(QWidget):
    """The full-screen page. `closed` is emitted when it is left (Esc or Exit)."""

    closed = Signal()

    def __init__(self, state, store):
        super().__init__(None)
        self.setObjectName("consultation")
        self.setWindowTitle(TITLE)
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setFont(_font(BODY_PT))
        self.setStyleSheet(STYLE)
        self.state, self.store = state, store
        self.volume = state.volume
        self.study_info = dict(state.study_info)   # patient name and ID: shown only when ticked
        study_uid = self.volume.source.study_uid if self.volume is not None else None
        report = latest_report(store, study_uid) if store is not None and study_uid else None
        self.report = latest_signed(store, report) if report is not None else None
        self.findings, self.pending = (consultation_findings(store, state.series_key, self.report)
                                       if store is not None else ([], 0))
        self.summary = approved_summary(store, report) if store is not None else None
        self.masks = {f.nodule_id: store.nodule_mask(f.nodule_id) for f in self.findings if f.nodule_id}
        self.anatomy = self._anatomy()
        self.index = 0
        self.pictures: dict[int, dict] = {}   # finding index -> rendered images and chart note
        self.jobs: list[Job] = []
        self._build()
        self.show_finding(0)

    # data ----------------------------------------------------------------------------------
    def _anatomy(self):
        """The shown label overlay's organs (not its nodules, nor the Nodules panel's masks), for
        the see-through surfaces of the 3-D model."""
        overlays = [o for o in self.state.overlays if o.kind == "labels" and not o.name.startswith("Nodule ")]
        overlays.sort(key=lambda o: not o.source.startswith("AI: "))  # the AI segmentation first
        for overlay in overlays:
            keep = [v for v in overlay.label_styles
                    if not overlay.label_names.get(v, "").lower().startswith("nodule")]
            if keep:
                voxels = np.where(np.isin(overlay.volume.voxels, keep), overlay.volume.voxels, 0).astype(np.uint8)
                return overlay.volume.with_voxels(voxels)
        return None

    # layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        heading = QLabel("Your scan: what we found")
        heading.setFont(_font(HEADING_PT, bold=True))
        self.details_box = QCheckBox("Show patient details")
        self.details_box.toggled.connect(self.set_show_details)
        self.exit_button = QPushButton("Exit (Esc)")
        self.exit_button.clicked.connect(self.close)
        top = QHBoxLayout()
        top.addWidget(heading, 1)
        top.addWidget(self.details_box)
        top.addSpacing(24)
        top.addWidget(self.exit_button)
        self.details = QLabel("")
        self.details.hide()

        self.counter = QLabel("")
        self.caption = QLabel("")
        self.caption.setObjectName("caption")
        self.caption.setFont(_font(CAPTION_PT, bold=True))
        self.caption.setWordWrap(True)

        self.slice_picture = Picture("Preparing the pictures...")
        self.model_picture = Picture("Preparing the pictures...")
        self.chart_picture = Picture("Preparing the chart...")
        self.summary_text = QLabel(self.summary.text if self.summary else NO_SUMMARY)
        self.summary_text.setWordWrap(True)
        self.summary_text.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.summary_text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        summary_scroll = QScrollArea()
        summary_scroll.setWidgetResizable(True)
        summary_scroll.setFrameShape(QScrollArea.NoFrame)
        summary_scroll.setWidget(self.summary_text)
        approval = (f"Approved for you by {self.summary.approver}" if self.summary and self.summary.approver
                    else "")
        grid = QGridLayout()
        grid.setSpacing(16)
        for n, (title, widget) in enumerate((("The scan, through the spot (outlined in yellow)", self.slice_picture),
                                             ("Your chest in 3-D (the spot in yellow)", self.model_picture),
                                             ("Size of the spot over time", self.chart_picture),
                                             ("Summary from your radiologist", summary_scroll))):
            box = QVBoxLayout()
            section = QLabel(title + (f" - {approval}" if n == 3 and approval else ""))
            section.setObjectName("section")
            section.setWordWrap(True)
            box.addWidget(section)
            box.addWidget(widget, 1)
            grid.addLayout(box, n // 2, n % 2)
            grid.setRowStretch(n // 2, 1)
            grid.setColumnStretch(n % 2, 1)

        self.previous_button = QPushButton("\u25c0  Previous finding")
        self.next_button = QPushButton("Next finding  \u25b6")
        self.previous_button.clicked.connect(lambda: self.show_finding(self.index - 1))
        self.next_button.clicked.connect(lambda: self.show_finding(self.index + 1))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(420)
        self.progress.hide()
        self.note = QLabel(f"{self.pending} AI finding(s) wait for the radiologist's review and are not shown."
                           if self.pending else "")
        bottom = QHBoxLayout()
        bottom.addWidget(self.previous_button)
        bottom.addStretch(1)
        bottom.addWidget(self.note)
        bottom.addWidget(self.progress)
        bottom.addStretch(1)
        bottom.addWidget(self.next_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 24)
        layout.addLayout(top)
        layout.addWidget(self.details)
        layout.addWidget(self.counter)
        layout.addWidget(self.caption)
        layout.addLayout(grid, 1)
        layout.addLayout(bottom)

        for key, slot in (("Esc", self.close), ("Right", lambda: self.show_finding(self.index + 1)),
                          ("Left", lambda: self.show_finding(self.index - 1))):
            action = QAction(self, shortcut=QKeySequence(key), triggered=slot)
            action.setShortcutContext(Qt.WindowShortcut)
            self.addAction(action)

    def set_show_details(self, show: bool) -> None:
        """Patient name and ID on screen only while ticked; unticked, no widget holds them."""
        info = self.study_info
        parts = []
        if show:
            if info.get("patient_name"):
                parts.append(_person_name(info["patient_name"]))
            if info.get("patient_id"):
                parts.append(f"ID {info['patient_id']}")
            if info.get("patient_birth_date"):
                parts.append(f"born {info['patient_birth_date']}")
            if info.get("study_date"):
                parts.append(f"scan of {info['study_date']}")
        self.details.setText("   \u00b7   ".join(parts))
        self.details.setVisible(bool(parts))

    # findings ----------------------------------------------------------------------------------
    @property
    def finding(self) -> ConsultFinding | None:
        return self.findings[self.index] if self.findings else None

    def show_finding(self, index: int) -> None:
        if not self.findings:
            self.counter.setText("")
            self.caption.setText("No spots to show: the radiologist has not released any findings for this scan.")
            for picture in (self.slice_picture, self.model_picture, self.chart_picture):
                picture.set_image(None, "")
            self.previous_button.setEnabled(False)
            self.next_button.setEnabled(False)
            return
        self.index = max(0, min(index, len(self.findings) - 1))
        finding = self.findings[self.index]
        self.counter.setText(f"Finding {self.index + 1} of {len(self.findings)}")
        self.caption.setText(finding.caption)
        self.previous_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(self.index < len(self.findings) - 1)
        if self.index in self.pictures:
            self._show_pictures(self.index)
        else:
            for picture in (self.slice_picture, self.model_picture, self.chart_picture):
                picture.set_image(None, "Preparing the pictures...")
            if not any(getattr(job, "finding_index", None) == self.index for job in self.jobs):
                self._render(self.index)

    def _render(self, index: int) -> None:
        """The finding's pictures in a background job (the 3-D model takes seconds on a CPU)."""
        from viewer.core.presets import find_preset

        finding, volume = self.findings[index], self.volume
        mask = self.masks.get(finding.nodule_id)
        anatomy = self.anatomy
        lung = find_preset("lung")

        def work(progress, cancelled):
            from viewer.render.consult_pictures import finding_model, finding_slice

            progress(0, 3, "the slice through the spot")
            out = {"slice": finding_slice(volume, finding.centre, mask, window=(lung.width, lung.level))}
            progress(1, 3, "the growth chart")
            out["chart"], out["chart_note"] = growth_chart(finding.record)
            if cancelled():
                return None
            progress(2, 3, "the 3-D model")
            out["model"] = finding_model(volume, mask, anatomy)
            progress(3, 3, "done")
            return out

        job = Job(work, "Consultation pictures")
        job.finding_index = index
        job.progress.connect(self._progress)
        job.finished.connect(lambda result: self._rendered(job, index, result))
        job.failed.connect(lambda message: self._failed(job, index, message))
        self.jobs.append(job)
        self.progress.setRange(0, 0)
        self.progress.show()
        job.start()

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"Preparing {message}")

    def _job_over(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        if not self.jobs:
            self.progress.hide()

    def _rendered(self, job: Job, index: int, result) -> None:
        self._job_over(job)
        if result is None:
            return
        self.pictures[index] = result
        if index == self.index:
            self._show_pictures(index)

    def _failed(self, job: Job, index: int, message: str) -> None:
        self._job_over(job)
        if index == self.index:
            for picture in (self.slice_picture, self.model_picture, self.chart_picture):
                picture.set_image(None, f"The pictures could not be made: {message}")

    def _show_pictures(self, index: int) -> None:
        p = self.pictures[index]
        self.slice_picture.set_image(_qimage(p["slice"]))
        self.model_picture.set_image(_qimage(p["model"]))
        self.chart_picture.set_image(None if p["chart"] is None else _qimage(p["chart"]), p["chart_note"])

    def wait_for_jobs(self, ms: int = 60000) -> None:
        for job in list(self.jobs):
            job.wait(ms)

    def closeEvent(self, ev) -> None:
        for job in list(self.jobs):
            job.cancel()
        self.wait_for_jobs(10000)
        super().closeEvent(ev)
        self.closed.emit()


def open_consultation(window) -> ConsultationWindow | None:
    """Consultation mode for the main window's open study: the main window (with its patient
    corner text) is hidden while the full-screen page is up and comes back when it is left."""
    if window.state.volume is None:
        window.state.message.emit("Open a study first: consultation mode shows the open study's findings")
        return None
    page = ConsultationWindow(window.state, window.store)
    window.consultation = page

    def back() -> None:
        window.consultation = None
        window.show()
        window.activateWindow()

    page.closed.connect(back)
    window.hide()
    page.setGeometry(window.screen().geometry())  # where no window manager honours full screen
    page.showFullScreen()
    page.activateWindow()
    return page


__all__ = ["ConsultationWindow", "Picture", "growth_chart", "open_consultation"]
