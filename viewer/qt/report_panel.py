"""The report editor (issue 7 item 3): a draft report of the open study, its form built from the
template's sections and typed fields, saved on every edit.

Each edit, every keystroke in a text field included, goes through viewer.report.drafts.Drafts in
the GUI thread, which commits it as one SQLite transaction (WAL, synchronous=FULL) before the key
event handler returns; so killing the process loses nothing typed before the last handled key.
Prefilled AI, measured and DICOM values are marked (badge, colour, tooltip with model, version,
confidence and the reader's decision) until the reader confirms them. The logic (prefill, edits,
signing, exports) lives in viewer.report; this widget gathers inputs and shows results and errors
(STYLE.md rule 4): nothing the reader does here raises out of the panel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6.QtCore import QDate, QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.core.errors import RadSightError
from viewer.core.paths import user_data_dir
from viewer.qt.state import ViewerState
from viewer.qt.workers import Job
from viewer.report.drafts import FREE_TEXT, Drafts, check_ready_to_sign
from viewer.report.model import (
    FieldValue,
    Finding,
    KeyImage,
    Provenance,
    Report,
    ReportError,
)
from viewer.report.templates import (
    LUNG_SCREENING,
    Template,
    TemplateField,
    available_templates,
    find_template,
)

log = logging.getLogger(__name__)

DEMO_IDENTITY_NAME = "demo-reader.p12"
UNCONFIRMED_COLOUR = "#fff1c2"   # the editor's background while its prefilled value waits
BADGE_STYLE = {True: "color: #555; padding: 0 3px;",
               False: "background: #f0a500; color: black; border-radius: 3px; padding: 0 4px; font-weight: bold;"}
SOURCE_NAMES = {"ai": "AI", "measured": "Measured", "dicom": "DICOM"}
UNIT_SHOWN = {"mm3": "mm³", "mm2": "mm²", "{nodules}": "", "d": "days", "[hnsf'U]": "HU", "%": "%"}
# Include and Confirm first: a narrow dock scrolls the table sideways, the reader's actions stay in view.
FINDING_COLUMNS = ("Include", "Confirm", "ID", "Type", "Mean Ø (mm)", "Volume (mm³)", "Lung-RADS", "Source")
CONFIRM_COLUMN = 1


def demo_identity_path() -> Path:
    """Where the first-run demo identity is kept (the user data folder)."""
    return user_data_dir() / "identities" / DEMO_IDENTITY_NAME


def provenance_text(p: Provenance, confirmed: bool) -> tuple[str, str]:
    """(badge, tooltip) for a value's provenance: the badge says where it came from and whether it
    still waits for the reader; the tooltip names the model, version, confidence and decision."""
    if p.source == "reader":
        return "", ""
    name = SOURCE_NAMES.get(p.source, p.source)
    parts = []
    if p.model_id:
        parts.append(f"model {p.model_id} version {p.model_version}")
    if p.confidence is not None:
        parts.append(f"confidence {p.confidence:.2f}")
    decision = p.decision or ("pending" if not confirmed else "accepted")
    parts.append(f"reader's decision: {decision}")
    origin = {"ai": "Suggested by AI", "measured": "Measured", "dicom": "Read from the images' DICOM headers"}
    tip = f"{origin.get(p.source, p.source)}: " + ", ".join(parts)
    if not confirmed:
        tip += ".\nNot confirmed yet: check it, then Confirm (or edit it); a report is signed only when " \
               "every value is confirmed."
        return f"{name} · confirm", tip
    return f"{name} · {decision}", tip


def _unit(unit: str | None) -> str:
    return UNIT_SHOWN.get(unit or "", unit or "")


def study_for_report(store, series_key: str | None, volume) -> dict:
    """The `study` part of a draft (viewer.report.prefill): UIDs, date and the series' folder."""
    source = getattr(volume, "source", None)
    study = {"study_uid": getattr(source, "study_uid", None), "series_uid": getattr(source, "series_uid", None)}
    series = store.indexed_series(series_key) if store is not None and series_key else None
    if series is not None:
        first = series.first
        study.update(study_uid=study["study_uid"] or first.study_uid, series_uid=study["series_uid"] or first.series_uid,
                     study_date=first.study_date or None)
        folders = {str(Path(r.path).resolve().parent) for r in series.records}
        study["source_paths"] = sorted(folders)
    return study


def stored_analysis(store, series_key: str | None) -> dict | None:
    """What the store keeps of the series' AI analysis for the report: its latest SEG (the SR
    references it); the nodules themselves come from Store.nodules with the reader's decisions."""
    if store is None or not series_key:
        return None
    segs = [r for r in store.results(series_key) if r["kind"] == "seg"]
    if not segs:
        return None
    latest = segs[-1]
    # The model's input check stored with the result: the draft's ai_cautions (viewer.report.prefill).
    return {"models": [{"id": latest["model_id"], "version": latest["model_version"],
                        "domain": (latest.get("summary") or {}).get("domain")}],
            "outputs": {"seg": [latest["path"]]}}


def nearest_sop_instance(series, point: np.ndarray, normal: np.ndarray) -> str | None:
    """The SOP Instance UID of the slice whose (0020,0032) Image Position lies nearest the plane
    through `point` with `normal` (the key image's source image)."""
    best, best_distance = None, np.inf
    for r in series.records if series is not None else ():
        if r.position is None:
            continue
        distance = abs(float(np.dot(np.asarray(r.position) - point, normal)))
        if distance < best_distance:
            best, best_distance = r.sop_instance_uid, distance
    return best


class _GrowingText(QPlainTextEdit):
    """A plain-text editor as tall as its text (between `min_lines` and `max_lines`), so short
    values look like a line edit and longer ones stay readable in a narrow dock."""

    def __init__(self, min_lines: int = 1, max_lines: int = 8):
        super().__init__()
        self.min_lines, self.max_lines = min_lines, max_lines
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(lambda _: self._fit())
        self._fit()

    def _fit(self) -> None:
        lines = int(self.document().documentLayout().documentSize().height())  # plain layout: line count
        lines = max(self.min_lines, min(self.max_lines, lines))
        margins = self.contentsMargins()
        height = lines * self.fontMetrics().lineSpacing() + 2 * self.document().documentMargin() + \
            margins.top() + margins.bottom() + 2
        self.setFixedHeight(int(height))

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._fit()


class _WheelGuard(QObject):
    """Wheel events over an unfocused spin box, date or choice scroll the form instead of changing
    the value: scrolling past a prefilled value must not 'edit' it."""

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Wheel and isinstance(obj, (QAbstractSpinBox, QComboBox)) and not obj.hasFocus():
            ev.ignore()
            return True
        return False


class FieldEditor:
    """One template field's widgets: the editor, its provenance badge and its Confirm button."""

    def __init__(self, field: TemplateField, on_edit: Callable[[str, object], None],
                 on_confirm: Callable[[str], None], guard: QObject):
        self.field = field
        self.badge = QLabel()
        self.badge.setTextFormat(Qt.PlainText)
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.setToolTip(f"Confirm the prefilled value of '{field.label}'")
        self.confirm_button.clicked.connect(lambda: on_confirm(field.id))
        self.editor = self._make_editor(on_edit)
        self.editor.installEventFilter(guard)
        self.editor.setToolTip(field.help or "")

    def _make_editor(self, on_edit) -> QWidget:
        f = self.field
        if f.type == "text":
            editor = _GrowingText()
            editor.textChanged.connect(lambda: on_edit(f.id, editor.toPlainText()))
        elif f.type == "choice":
            editor = QComboBox()
            editor.addItem("")  # not set yet
            editor.addItems(list(f.choices))
            editor.currentIndexChanged.connect(lambda i: on_edit(f.id, editor.itemText(i) if i > 0 else None))
        elif f.type == "number":
            editor = QDoubleSpinBox()
            low = f.minimum if f.minimum is not None else -1e6
            editor.setDecimals(0 if f.unit == "{nodules}" else 1)
            step = 1.0 if f.unit == "{nodules}" else 0.1
            editor.setSingleStep(step)
            editor.setRange(low - step, f.maximum if f.maximum is not None else 1e6)
            editor.setSpecialValueText("not set")  # shown at the minimum, one step below the field's own
            suffix = _unit(f.unit)
            editor.setSuffix(f" {suffix}" if suffix else "")
            editor.valueChanged.connect(lambda v: on_edit(f.id, float(v) if v > editor.minimum() else None))
        elif f.type == "date":
            editor = QDateEdit()
            editor.setCalendarPopup(True)
            editor.setDisplayFormat("yyyy-MM-dd")
            editor.setMinimumDate(QDate(1900, 1, 1))
            editor.setSpecialValueText("not set")
            editor.dateChanged.connect(lambda d: on_edit(f.id, d.toString("yyyy-MM-dd") if d > editor.minimumDate() else None))
        else:
            raise ReportError(f"field {f.id!r} of type {f.type} has no editor")
        editor.setFocusPolicy(Qt.StrongFocus)
        return editor

    def show_value(self, value: FieldValue | None) -> None:
        """Put the stored value in the editor (no edit is saved for it) and mark its provenance."""
        e, v = self.editor, None if value is None else value.value
        e.blockSignals(True)
        try:
            if self.field.type == "text":
                if e.toPlainText() != (v or ""):
                    e.setPlainText(v or "")
            elif self.field.type == "choice":
                e.setCurrentIndex(0 if v is None else max(0, e.findText(str(v))))
            elif self.field.type == "number":
                e.setValue(e.minimum() if v is None else float(v))
            else:
                e.setDate(e.minimumDate() if v is None else QDate.fromString(str(v), "yyyy-MM-dd"))
        finally:
            e.blockSignals(False)
        self.show_provenance(value)

    def show_provenance(self, value: FieldValue | None) -> None:
        provenance = value.provenance if value is not None else Provenance()
        confirmed = value is None or value.confirmed
        badge, tip = provenance_text(provenance, confirmed)
        self.badge.setText(badge)
        self.badge.setToolTip(tip)
        self.badge.setStyleSheet(BADGE_STYLE[confirmed])
        self.badge.setVisible(bool(badge))
        self.confirm_button.setVisible(not confirmed)
        self.editor.setProperty("unconfirmed", not confirmed)
        self.editor.style().unpolish(self.editor)
        self.editor.style().polish(self.editor)

    @property
    def unconfirmed(self) -> bool:
        return bool(self.editor.property("unconfirmed"))

    def set_read_only(self, read_only: bool) -> None:
        e = self.editor
        if isinstance(e, (QPlainTextEdit, QAbstractSpinBox)):
            e.setReadOnly(read_only)
        else:
            e.setEnabled(not read_only)
        if read_only:
            self.confirm_button.hide()

    def is_read_only(self) -> bool:
        e = self.editor
        return e.isReadOnly() if isinstance(e, (QPlainTextEdit, QAbstractSpinBox)) else not e.isEnabled()


class ReportPanel(QWidget):
    """The Report dock. `capture()` returns the active axial view's picture (RGB array) for key
    images; `user` is who edits and signs (the login name by default, never a patient's)."""

    report_changed = Signal(object)   # the Report shown (None when none)

    def __init__(self, state: ViewerState, store, capture: Callable[[], np.ndarray | None] | None = None,
                 user: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.store, self.capture, self.user = state, store, capture, user
        self.drafts = Drafts(store, user) if store is not None else None
        self.settings = QSettings("RadSight", "RadSight")
        self.report: Report | None = None
        self.template: Template | None = None
        self.editors: dict[str, FieldEditor] = {}
        self.identity = None          # the identity that signed in this session (for signed exports)
        self.signed_outputs: dict[str, Path] = {}   # the SR and PDF written after signing
        self.summary = None           # the patient summary drafted in the dialog, until approved
        self.jobs: list[Job] = []
        self.save_seconds: list[float] = []   # how long each autosave took (commit included)
        self.audit_dialog: QDialog | None = None
        self._guard = _WheelGuard(self)
        self._build()
        state.volume_changed.connect(lambda _: self.study_changed())
        self.study_changed()

    # layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setStyleSheet(f'*[unconfirmed="true"] {{ background: {UNCONFIRMED_COLOUR}; }}')
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QGridLayout()
        self.template_box = QComboBox()
        try:
            templates = available_templates()
        except ReportError as exc:
            templates = {}
            log.warning("report templates unavailable: %s", exc)
        for t in sorted(templates.values(), key=lambda t: (t.id != LUNG_SCREENING, t.title)):
            self.template_box.addItem(t.title, t.id)
        self.new_button = QPushButton("New report")
        self.new_button.setToolTip("Draft a report of the open study from this template, prefilled from its "
                                   "stored nodules and AI results")
        self.new_button.clicked.connect(lambda: self.new_report())
        self.reports_box = QComboBox()
        self.reports_box.setToolTip("The reports of the open study (every version)")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._open_chosen)
        top.addWidget(QLabel("Template"), 0, 0)
        top.addWidget(self.template_box, 0, 1)
        top.addWidget(self.new_button, 0, 2)
        top.addWidget(QLabel("Reports"), 1, 0)
        top.addWidget(self.reports_box, 1, 1)
        top.addWidget(self.open_button, 1, 2)
        top.setColumnStretch(1, 1)
        layout.addLayout(top)

        self.title = QLabel("No report")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold;")
        layout.addWidget(self.title)
        state_row = QHBoxLayout()
        self.pending_label = QLabel("")
        self.saved_label = QLabel("")
        self.saved_label.setStyleSheet("color: #2e7d32;")
        state_row.addWidget(self.pending_label, 1)
        state_row.addWidget(self.saved_label)
        layout.addLayout(state_row)

        buttons = QGridLayout()
        self.confirm_all_button = QPushButton("Confirm all")
        self.confirm_all_button.setToolTip("Confirm every prefilled value and finding still waiting")
        self.confirm_all_button.clicked.connect(self.confirm_all)
        self.key_image_button = QPushButton("Add key image")
        self.key_image_button.setToolTip("The axial view as shown now, with the crosshair point")
        self.key_image_button.clicked.connect(self.add_key_image)
        self.sign_button = QPushButton("Sign...")
        self.sign_button.clicked.connect(self.sign_clicked)
        self.amend_button = QPushButton("Amend...")
        self.amend_button.setToolTip("A new draft version of the signed report, with a reason")
        self.amend_button.clicked.connect(self.amend_clicked)
        self.export_sr_button = QPushButton("Export SR...")
        self.export_sr_button.clicked.connect(lambda: self.export_clicked("sr"))
        self.export_pdf_button = QPushButton("Export PDF...")
        self.export_pdf_button.clicked.connect(lambda: self.export_clicked("pdf"))
        self.log_button = QPushButton("Audit log")
        self.log_button.clicked.connect(self.show_audit_log)
        self.summary_button = QPushButton("Patient summary...")
        self.summary_button.setToolTip("A plain-language summary of the signed findings for the patient: read and "
                                       "edit it, then Approve to write it next to the signed PDF")
        self.summary_button.clicked.connect(self.summary_clicked)
        self.outputs_label = QLabel()
        self.outputs_label.setWordWrap(True)
        self.outputs_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        for n, b in enumerate((self.confirm_all_button, self.key_image_button, self.sign_button, self.amend_button,
                               self.export_sr_button, self.export_pdf_button, self.log_button, self.summary_button)):
            buttons.addWidget(b, n // 4, n % 4)
        layout.addLayout(buttons)
        layout.addWidget(self.outputs_label)

        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.message)

        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.NoFrame)
        layout.addWidget(self.scroll, 1)
        self.form_host = QWidget()
        self.form_layout = QVBoxLayout(self.form_host)
        self.form_layout.setContentsMargins(0, 0, 0, 0)
        self.scroll.setWidget(self.form_host)
        self.findings_table: QTableWidget | None = None
        self.free_text = _GrowingText(min_lines=4, max_lines=14)
        self.free_text.setPlaceholderText("Free text: anything the fields above do not hold")
        self.free_text.textChanged.connect(lambda: self._edited(FREE_TEXT, self.free_text.toPlainText()))
        self.key_images = QListWidget()
        self.key_images.setViewMode(QListWidget.IconMode)
        self.key_images.setIconSize(QPixmap(96, 96).size())
        self.key_images.setFixedHeight(130)
        self.key_images.setResizeMode(QListWidget.Adjust)
        self._update_buttons()

    # study and reports ---------------------------------------------------------------------------
    @property
    def study_uid(self) -> str | None:
        volume = self.state.volume
        uid = getattr(getattr(volume, "source", None), "study_uid", None)
        if uid is None and self.store is not None and self.state.series_key:
            series = self.store.indexed_series(self.state.series_key)
            uid = series.first.study_uid if series is not None else None
        return uid

    def study_changed(self) -> None:
        """A study was opened: list its reports and reopen the latest, if it has one."""
        rows = self._list_reports()
        if self.report is not None and self.report.study_uid == self.study_uid:
            return
        if rows:
            latest = rows[-1]
            self.open_report(latest["id"], latest["version"])
        else:
            self._show(None)

    def _list_reports(self) -> list[dict]:
        self.reports_box.clear()
        uid = self.study_uid
        rows = self.store.reports(uid) if self.store is not None and uid else []
        for r in rows:
            self.reports_box.addItem(f"{r['template']} v{r['version']} ({r['status']}, {r['updated_at'][:16]})",
                                     (r["id"], r["version"]))
        self.reports_box.setEnabled(bool(rows))
        self.open_button.setEnabled(bool(rows))
        return rows

    def _open_chosen(self) -> None:
        data = self.reports_box.currentData()
        if data:
            self.open_report(*data)

    def new_report(self, template_id: str | None = None) -> Report | None:
        """Draft a report of the open study, prefilled from its stored nodules (with the reader's
        decisions) and its latest stored AI result."""
        if self.store is None or self.state.volume is None or not self.study_uid:
            self._error("Open a study first: a report is drafted for the study shown")
            return None
        template_id = template_id or self.template_box.currentData()
        try:
            template = find_template(template_id)
            rows = self.store.nodules(self.state.series_key) if self.state.series_key else []
            study = study_for_report(self.store, self.state.series_key, self.state.volume)
            report = self.drafts.create(template, stored_analysis(self.store, self.state.series_key),
                                        nodule_rows=rows, study=study)
        except (RadSightError, OSError) as exc:
            self._error(f"The report could not be drafted: {exc}")
            return None
        self._list_reports()
        self._select_in_list(report)
        self._show(report)
        self._info(f"Drafted from {template.title}: {len(report.findings)} finding(s), "
                   f"{len(report.unconfirmed)} value(s) to confirm")
        return report

    def open_report(self, report_id: str, version: int | None = None) -> Report | None:
        try:
            report = self.store.open_report(report_id, version, user=self.user)
        except RadSightError as exc:
            self._error(str(exc))
            return None
        self._select_in_list(report)
        self._show(report)
        return report

    def _select_in_list(self, report: Report) -> None:
        index = self.reports_box.findData((report.id, report.version))
        if index >= 0:
            self.reports_box.setCurrentIndex(index)

    # the form ------------------------------------------------------------------------------------
    def _show(self, report: Report | None) -> None:
        """Build the form for `report` (or clear it)."""
        if report is None or self.report is None or report.key != self.report.key:
            self.signed_outputs = {}
            self.outputs_label.setText("")
        same_template = self.report is not None and report is not None and self.report.template_id == report.template_id
        self.report = report
        if report is None:
            self.template = None
            self._clear_form()
            self.title.setText("No report for this study yet: choose a template and press New report"
                               if self.state.volume is not None else "No study open")
        else:
            try:
                template = find_template(report.template_id)
            except ReportError as exc:
                self._error(f"Report {report.key} cannot be edited here: {exc}")
                self.report = None
                self._clear_form()
                self._update_buttons()
                return
            if not same_template or template != self.template or not self.editors:
                self.template = template
                self._build_form(template)
            self._fill(report)
        self._update_buttons()
        self.report_changed.emit(report)

    def _clear_form(self) -> None:
        for child in (self.free_text, self.key_images):
            child.setParent(None)
        while self.form_layout.count():
            item = self.form_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.editors = {}
        self.findings_table = None

    def _build_form(self, template: Template) -> None:
        self._clear_form()
        for section in template.sections:
            box = QGroupBox(section.title)
            form = QFormLayout(box)
            form.setRowWrapPolicy(QFormLayout.WrapLongRows)
            form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
            for f in section.fields:
                if f.type == "findings":
                    self.findings_table = self._make_findings_table()
                    form.addRow(QLabel(f.label))
                    form.addRow(self.findings_table)
                    continue
                editor = FieldEditor(f, self._edited, self.confirm_field, self._guard)
                self.editors[f.id] = editor
                row = QHBoxLayout()
                row.addWidget(editor.editor, 1)
                side = QVBoxLayout()
                side.addWidget(editor.badge)
                side.addWidget(editor.confirm_button)
                side.addStretch(1)
                row.addLayout(side)
                label = QLabel(f.label + (" *" if f.required else ""))
                label.setWordWrap(True)
                label.setToolTip(f.help or ("Required before signing" if f.required else ""))
                form.addRow(label, row)
            self.form_layout.addWidget(box)
        free = QGroupBox("Free text")
        QVBoxLayout(free).addWidget(self.free_text)
        self.form_layout.addWidget(free)
        images = QGroupBox("Key images")
        QVBoxLayout(images).addWidget(self.key_images)
        self.form_layout.addWidget(images)
        self.form_layout.addStretch(1)

    def _make_findings_table(self) -> QTableWidget:
        table = QTableWidget(0, len(FINDING_COLUMNS))
        table.setHorizontalHeaderLabels(list(FINDING_COLUMNS))
        table.verticalHeader().hide()
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectRows)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        table.horizontalHeader().setStretchLastSection(True)
        table.itemChanged.connect(self._finding_item_changed)
        return table

    def _fill(self, report: Report) -> None:
        for field_id, editor in self.editors.items():
            editor.show_value(report.values.get(field_id))
        self.free_text.blockSignals(True)
        if self.free_text.toPlainText() != report.free_text:
            self.free_text.setPlainText(report.free_text)
        self.free_text.blockSignals(False)
        if self.findings_table is not None:
            self._fill_findings(report.findings)
        self.key_images.clear()
        for k in report.key_images:
            item = QListWidgetItem(QIcon(k.png_path), k.caption)
            item.setToolTip(f"{k.png_path}\n{k.caption}")
            self.key_images.addItem(item)
        read_only = report.status == "signed"
        for editor in self.editors.values():
            editor.set_read_only(read_only)
        self.free_text.setReadOnly(read_only)
        self._show_state(report)

    def _fill_findings(self, findings: tuple[Finding, ...]) -> None:
        table = self.findings_table
        table.blockSignals(True)
        table.setRowCount(len(findings))
        signed = self.report is not None and self.report.status == "signed"
        for row, f in enumerate(findings):
            r = f.record
            include = QTableWidgetItem("")
            include.setFlags(Qt.ItemIsUserCheckable | (Qt.NoItemFlags if signed else Qt.ItemIsEnabled))
            include.setCheckState(Qt.Checked if f.include else Qt.Unchecked)
            include.setData(Qt.UserRole, str(r.get("id")))
            include.setToolTip("Untick to leave the finding out of the report (kept for the audit trail)")
            lung_rads = (r.get("lung_rads") or {}).get("category") if isinstance(r.get("lung_rads"), dict) else r.get("lung_rads")
            cells = [include, QTableWidgetItem(""), QTableWidgetItem(str(r.get("id", ""))), QTableWidgetItem(str(r.get("type") or "")),
                     QTableWidgetItem(_number(r.get("mean_diameter_mm"))), QTableWidgetItem(_number(r.get("volume_mm3"), 0)),
                     QTableWidgetItem(str(lung_rads or ""))]
            tip = provenance_text(f.provenance, f.confirmed)[1]
            source = f.provenance.source
            text = SOURCE_NAMES.get(source, source)
            if f.provenance.model_id:
                text += f" {f.provenance.model_id} {f.provenance.model_version}"
            if f.provenance.confidence is not None:
                text += f" ({f.provenance.confidence:.2f})"
            cells.append(QTableWidgetItem(text))
            for column, item in enumerate(cells):
                item.setToolTip(tip if column else item.toolTip())
                if f.include and not f.confirmed:
                    item.setBackground(QColor(UNCONFIRMED_COLOUR))
                elif not f.include:
                    item.setForeground(Qt.GlobalColor.gray)
                table.setItem(row, column, item)
            if f.include and not f.confirmed and not signed:
                button = QPushButton("Confirm")
                button.setToolTip(tip)
                button.setStyleSheet("padding: 0 6px;")  # row height stays a text line's
                finding_id = str(r.get("id"))
                button.clicked.connect(lambda _=False, fid=finding_id: self.confirm_finding(fid))
                table.setCellWidget(row, CONFIRM_COLUMN, button)
            else:
                table.removeCellWidget(row, CONFIRM_COLUMN)
                state = "rejected" if not f.include else (f.provenance.decision or "confirmed")
                cells[CONFIRM_COLUMN].setText(state)
        table.blockSignals(False)
        table.resizeColumnsToContents()
        height = table.horizontalHeader().height() + sum(table.rowHeight(i) for i in range(table.rowCount())) + \
            table.horizontalScrollBar().sizeHint().height() + 2 * table.frameWidth() + 2
        table.setFixedHeight(max(height, 60))  # every row shown: the form scrolls, not the table

    def _show_state(self, report: Report) -> None:
        title = self.template.title if self.template else report.template_id
        if report.status == "signed":
            state = f"signed by {report.signer} at {report.signed_at}"
        else:
            state = "draft"
        amendment = f"; amends {report.predecessor_id}: {report.amendment_reason}" if report.predecessor_id else ""
        self.title.setText(f"{title}: version {report.version}, {state}{amendment}")
        pending = report.unconfirmed
        if report.status == "signed":
            self.pending_label.setText("Read-only: signed versions never change (Amend makes a new version)")
            self.pending_label.setStyleSheet("color: #555;")
        elif pending:
            self.pending_label.setText(f"{len(pending)} to confirm")
            self.pending_label.setToolTip(", ".join(pending))
            self.pending_label.setStyleSheet("color: #a15c00; font-weight: bold;")
        else:
            self.pending_label.setText("Everything confirmed")
            self.pending_label.setToolTip("")
            self.pending_label.setStyleSheet("color: #2e7d32;")

    def _update_buttons(self) -> None:
        report = self.report
        draft = report is not None and report.status == "draft"
        signed = report is not None and report.status == "signed"
        self.new_button.setEnabled(self.state.volume is not None and self.store is not None and
                                   self.template_box.count() > 0)
        self.confirm_all_button.setEnabled(draft and bool(report.unconfirmed))
        self.key_image_button.setEnabled(draft and self.capture is not None)
        self.sign_button.setEnabled(draft)
        self.amend_button.setEnabled(signed and self._is_latest(report))
        for b in (self.export_sr_button, self.export_pdf_button, self.log_button):
            b.setEnabled(report is not None)
        self.summary_button.setEnabled(signed)

    def _is_latest(self, report: Report) -> bool:
        try:
            return self.store.report(report.id).version == report.version
        except RadSightError:
            return False

    # edits ----------------------------------------------------------------------------------------
    def _edited(self, field_id: str, value) -> None:
        """Save one edit now, in this (the GUI) thread: when the event handler returns, it is on disk."""
        if self.report is None or self.report.status != "draft":
            return
        start = time.perf_counter()
        try:
            report = self.drafts.set(self.report.id, field_id, value)
        except (RadSightError, OSError) as exc:
            self.saved_label.setText("Not saved")
            self.saved_label.setStyleSheet("color: #b00020; font-weight: bold;")
            self._error(f"{self.editors[field_id].field.label if field_id in self.editors else 'Free text'}: {exc}")
            return
        seconds = time.perf_counter() - start
        self.save_seconds.append(seconds)
        self.report = report
        if field_id in self.editors:
            self.editors[field_id].show_provenance(report.values.get(field_id))
        self._saved(seconds)
        self._show_state(report)
        self._update_buttons()

    def _saved(self, seconds: float) -> None:
        self.saved_label.setText(f"Saved {datetime.now():%H:%M:%S} ({seconds * 1000:.0f} ms)")
        self.saved_label.setStyleSheet("color: #2e7d32;")

    def _apply(self, what: str, edit: Callable[[], Report]) -> Report | None:
        """A Drafts call that may change several values (confirm, reject): saved, then the form refilled."""
        if self.report is None:
            return None
        start = time.perf_counter()
        try:
            report = edit()
        except (RadSightError, OSError) as exc:
            self._error(f"{what}: {exc}")
            return None
        self._saved(time.perf_counter() - start)
        self.report = report
        self._fill(report)
        self._update_buttons()
        self.report_changed.emit(report)
        return report

    def confirm_field(self, field_id: str) -> Report | None:
        return self._apply(f"Confirming {field_id}", lambda: self.drafts.confirm(self.report.id, [field_id]))

    def confirm_finding(self, finding_id: str) -> Report | None:
        return self._apply(f"Confirming finding {finding_id}",
                           lambda: self.drafts.confirm(self.report.id, [f"finding {finding_id}"]))

    def confirm_all(self) -> Report | None:
        return self._apply("Confirming all", lambda: self.drafts.confirm(self.report.id))

    def set_finding_included(self, finding_id: str, include: bool) -> Report | None:
        """Untick: the finding is rejected (kept, left out); tick again: it is back and confirmed."""
        if include:
            return self.confirm_finding(finding_id)
        return self._apply(f"Rejecting finding {finding_id}", lambda: self.drafts.reject(self.report.id, finding_id))

    def _finding_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0 or self.report is None or self.report.status != "draft":
            return
        self.set_finding_included(item.data(Qt.UserRole), item.checkState() == Qt.Checked)

    # key images ------------------------------------------------------------------------------------
    def add_key_image(self) -> KeyImage | None:
        """The active axial view as a PNG in the data folder, kept with the crosshair point and the
        source image it shows."""
        if self.report is None or self.report.status != "draft" or self.capture is None:
            return None
        from viewer.render.offscreen import write_png

        try:
            rgb = self.capture()
            if rgb is None or rgb.size == 0:
                raise ReportError("the axial view shows nothing to capture: open a study and show the axial view")
            n = len(self.report.key_images) + 1
            path = user_data_dir() / "key-images" / f"report-{self.report.id}-v{self.report.version}-{n}.png"
            write_png(rgb, path)
            point = np.asarray(self.state.crosshair, float)
            volume = self.state.volume
            series = self.store.indexed_series(self.state.series_key) if self.state.series_key else None
            normal = volume.affine[:3, 2] / np.linalg.norm(volume.affine[:3, 2]) if volume is not None else np.array([0, 0, 1.0])
            image = KeyImage(str(path), f"Axial at ({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm LPS",
                             series_uid=getattr(getattr(volume, "source", None), "series_uid", None),
                             sop_instance_uid=nearest_sop_instance(series, point, normal),
                             point_lps_mm=tuple(float(c) for c in point))
        except (RadSightError, OSError) as exc:
            self._error(f"The key image could not be added: {exc}")
            return None
        if self._apply("Adding the key image", lambda: self.drafts.add_key_image(self.report.id, image)) is None:
            return None
        self._info(f"Key image {n} added ({path.name})")
        return image

    # signing ---------------------------------------------------------------------------------------
    def sign_clicked(self) -> None:
        """Check what stops signing first, then ask for the identity file and its password."""
        if not self._ready_to_sign():
            return
        path, password = self.ask_identity("Sign the report")
        if path is not None:
            self.sign(path, password)

    def _ready_to_sign(self) -> bool:
        if self.report is None:
            return False
        try:
            check_ready_to_sign(self.report, self.template)
        except ReportError as exc:
            self._error(str(exc))
            return False
        return True

    def ask_identity(self, purpose: str) -> tuple[Path | None, str | None]:
        """The signer's PKCS#12 file and password from dialogs; with no identity anywhere, offer to
        make a self-signed demo identity in the data folder."""
        from viewer.report.identity import DEMO_PASSWORD, create_demo_identity

        last = self.settings.value("report/identity", "")
        demo = demo_identity_path()
        if not (last and Path(last).is_file()) and not demo.is_file():
            answer = QMessageBox.question(
                self, purpose, "No signing identity (PKCS#12 file) is set up yet.\n\nCreate a self-signed demo "
                "identity for trying RadSight? It is marked 'not for clinical use'.\nChoose No to pick your own "
                ".p12 file.", QMessageBox.Yes | QMessageBox.No | QMessageBox.Cancel)
            if answer == QMessageBox.Cancel:
                return None, None
            if answer == QMessageBox.Yes:
                try:
                    create_demo_identity(demo)
                except (RadSightError, OSError) as exc:
                    self._error(f"The demo identity could not be written to {demo}: {exc}")
                    return None, None
                self.settings.setValue("report/identity", str(demo))
                self._info(f"Demo identity written to {demo} (password: {DEMO_PASSWORD.decode()})")
                return demo, DEMO_PASSWORD.decode()
        start = last if last and Path(last).is_file() else str(demo if demo.is_file() else Path.home())
        name, _ = QFileDialog.getOpenFileName(self, f"{purpose}: signing identity", start,
                                              "PKCS#12 identity (*.p12 *.pfx);;All files (*)")
        if not name:
            return None, None
        password, ok = QInputDialog.getText(self, purpose, f"Password of {Path(name).name}:", QLineEdit.Password)
        if not ok:
            return None, None
        self.settings.setValue("report/identity", name)
        return Path(name), password

    def sign(self, identity_path: Path | str, password: str | bytes | None) -> Report | None:
        """Sign the draft with the identity in `identity_path`: refused with the list of what is
        unconfirmed or missing; afterwards the form is read-only and shows the signer and time."""
        from viewer.report.identity import load_identity
        from viewer.report.signing import sign_report

        if self.report is None or not self._ready_to_sign():
            return None
        try:
            identity = load_identity(identity_path, password)
            stored = self.store.report(self.report.id, self.report.version)
            signed = self.store.store_signed(sign_report(stored, identity), user=self.user)
        except RadSightError as exc:
            self._error(f"Not signed: {exc}")
            return None
        self.identity = identity
        self._list_reports()
        self._select_in_list(signed)
        self._show(signed)
        self._info(f"Signed by {signed.signer} at {signed.signed_at}" +
                   (" (demo identity: not for clinical use)" if identity.is_demo else ""))
        self.write_signed(signed, identity)
        return signed

    def write_signed(self, report: Report, identity) -> Job:
        """The signed SR and PDF into the data folder's reports/, named as `radsight report sign`
        names them, in a worker, the PDF with the plugins' report figures (growth charts); each
        audited as 'exported' once written, their paths shown."""
        from viewer.plugins.report_figures import report_figures
        from viewer.report.export import default_name, write_export

        folder = user_data_dir() / "reports"
        targets = {fmt: folder / default_name(report, fmt) for fmt in ("sr", "pdf")}

        def work(progress, cancelled):
            records = [f.record for f in report.findings if f.include]
            charts, problems = report_figures(records, folder / f"{targets['pdf'].stem}-figures")
            for problem in problems:
                log.warning("report %s: %s", report.key, problem)
            return {fmt: write_export(report, fmt, out, identity, charts if fmt == "pdf" else ())
                    for fmt, out in targets.items()}

        job = Job(work, "Write the signed SR and PDF")
        job.finished.connect(lambda written: self._signed_written(job, report, written))
        job.failed.connect(lambda message: self._signed_not_written(job, message))
        self.jobs.append(job)
        job.start()
        return job

    def _signed_not_written(self, job: Job, message: str) -> None:
        self._forget(job)
        self._error(f"Signed, but the signed SR and PDF were not written (Export SR/PDF writes them): {message}")

    def _signed_written(self, job: Job, report: Report, written: dict) -> None:
        from viewer.report.export import audit_export

        self._forget(job)
        self.signed_outputs = {fmt: Path(p) for fmt, p in written.items()}
        self.outputs_label.setText("\n".join(f"{fmt.upper()}: {p}" for fmt, p in self.signed_outputs.items()))
        try:
            for fmt, path in self.signed_outputs.items():
                audit_export(self.store, report, fmt, path, user=self.user)
        except RadSightError as exc:
            self._error(f"The signed SR and PDF were written, but the audit log could not be updated: {exc}")
            return
        demo = self.identity is not None and self.identity.is_demo
        self._info(f"Signed by {report.signer} at {report.signed_at}" +
                   (" (demo identity: not for clinical use)" if demo else "") +
                   f"; SR and PDF written to {self.signed_outputs['pdf'].parent}")

    # patient summary ------------------------------------------------------------------------------
    def summary_clicked(self) -> None:
        dialog = self.summary_dialog()
        if dialog is not None and dialog.exec() == QDialog.Accepted:
            self.approve_summary(dialog.editor.toPlainText())

    def summary_dialog(self) -> QDialog | None:
        """The drafted patient summary in an editable dialog (a signed report only)."""
        from viewer.report.summary import draft_summary

        if self.report is None or self.report.status != "signed":
            return None
        try:
            self.summary = draft_summary(self.report)
        except RadSightError as exc:
            self._error(f"No patient summary: {exc}")
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Patient summary of report {self.report.id} v{self.report.version}")
        editor = QPlainTextEdit(self.summary.text, dialog)
        approve, cancel = QPushButton("Approve", dialog), QPushButton("Cancel", dialog)
        approve.setToolTip("You have read the summary and release it to the patient")
        approve.clicked.connect(dialog.accept)
        cancel.clicked.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(editor)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(cancel)
        row.addWidget(approve)
        layout.addLayout(row)
        dialog.editor = editor
        dialog.resize(640, 420)
        return dialog

    def approve_summary(self, text: str | None = None) -> Path | None:
        """Approve the drafted summary (as edited) in the signer's name and release it: a .txt next
        to the signed PDF and the approval in the store (viewer.report.export.release_summary)."""
        from viewer.report.export import release_summary, summary_name
        from viewer.report.summary import approve_summary, draft_summary

        report = self.report
        if report is None or report.status != "signed":
            self._error("The patient summary is made from signed findings only: sign the report first")
            return None
        out = user_data_dir() / "reports" / summary_name(report)   # next to the PDF write_signed wrote
        try:
            summary = self.summary
            if summary is None or (summary.report_id, summary.report_version) != (report.id, report.version):
                summary = draft_summary(report)
            approved = approve_summary(summary, approver=report.signer, text=text)
            release_summary(self.store, report, approved, out, user=self.user)
        except (RadSightError, OSError) as exc:
            self._error(f"The patient summary was not written to {out}: {exc}")
            return None
        self.summary = None
        self._info(f"Patient summary approved by {approved.approver} and written to {out}")
        return out

    def amend_clicked(self) -> None:
        reason, ok = QInputDialog.getText(self, "Amend the signed report", "Reason (what is corrected and why):")
        if ok:
            self.amend(reason)

    def amend(self, reason: str) -> Report | None:
        """A new draft version chained to the signed one (which stays as it was)."""
        if self.report is None:
            return None
        try:
            amendment = self.store.amend(self.report.id, reason, user=self.user)
        except RadSightError as exc:
            self._error(f"Not amended: {exc}")
            return None
        self._list_reports()
        self._select_in_list(amendment)
        self._show(amendment)
        self._info(f"Version {amendment.version} drafted as an amendment of {amendment.predecessor_id}")
        return amendment

    # exports ----------------------------------------------------------------------------------------
    def export_clicked(self, fmt: str) -> None:
        if self.report is None:
            return
        suffix = "-sr.dcm" if fmt == "sr" else ".pdf"
        start = self.settings.value("report/export_dir", str(user_data_dir() / "reports"))
        default = str(Path(start) / f"report-{self.report.id}-v{self.report.version}{suffix}")
        name, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()}", default,
                                              "DICOM SR (*.dcm)" if fmt == "sr" else "PDF (*.pdf)")
        if not name:
            return
        self.settings.setValue("report/export_dir", str(Path(name).parent))
        identity = self.identity
        if self.report.status == "signed" and (identity is None or identity.common_name != self.report.signer):
            path, password = self.ask_identity(f"Export the signed {fmt.upper()}")
            if path is None:
                return
            from viewer.report.identity import load_identity

            try:
                identity = load_identity(path, password)
            except RadSightError as exc:
                self._error(f"Not exported: {exc}")
                return
        self.export(fmt, name, identity)

    def export(self, fmt: str, path: Path | str, identity=None) -> Job | None:
        """Write the shown version as SR ("sr") or PDF ("pdf") in a worker; a signed version is
        signed with `identity` (default: the one that signed it in this session). Audited when done."""
        if self.report is None or fmt not in ("sr", "pdf"):
            return None
        report, out = self.report, Path(path)
        identity = identity if identity is not None else self.identity
        if report.status != "signed":
            identity = None
        elif identity is None:
            self._error(f"Report {report.key} is signed: its {fmt.upper()} carries the signature, so the signer's "
                        "identity is needed (Export asks for it)")
            return None
        def work(progress, cancelled):
            from viewer.report.export import write_export

            return write_export(report, fmt, out, identity)  # as `radsight report export` writes it

        job = Job(work, f"Export {fmt.upper()}")
        job.finished.connect(lambda written: self._exported(job, report, fmt, Path(written)))
        job.failed.connect(lambda message: self._export_failed(job, fmt, message))
        self.jobs.append(job)
        self._info(f"Writing the {fmt.upper()}...")
        job.start()
        return job

    def _exported(self, job: Job, report: Report, fmt: str, path: Path) -> None:
        self._forget(job)
        try:
            self.store.audit("exported", report, detail=f"{fmt} {path.name}", user=self.user)
        except RadSightError as exc:
            self._error(f"{fmt.upper()} written to {path}, but the audit log could not be updated: {exc}")
            return
        self._info(f"{fmt.upper()} written to {path}")

    def _export_failed(self, job: Job, fmt: str, message: str) -> None:
        self._forget(job)
        self._error(f"The {fmt.upper()} was not written: {message}")

    def _forget(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)

    # audit log -------------------------------------------------------------------------------------
    def show_audit_log(self) -> QDialog | None:
        """Every audited action on the report (all versions): when, who, what, and which fields."""
        if self.report is None:
            return None
        rows = self.store.audit_log(report_id=self.report.id)
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Audit log of report {self.report.id}")
        table = QTableWidget(len(rows), 5, dialog)
        table.setHorizontalHeaderLabels(["When (UTC)", "User", "Action", "Version", "Detail"])
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        for n, r in enumerate(rows):
            for column, key in enumerate(("at", "user", "action", "report_version", "detail")):
                table.setItem(n, column, QTableWidgetItem("" if r[key] is None else str(r[key])))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        QVBoxLayout(dialog).addWidget(table)
        dialog.table = table
        dialog.resize(720, 360)
        dialog.show()
        self.audit_dialog = dialog
        return dialog

    # messages --------------------------------------------------------------------------------------
    def _error(self, text: str) -> None:
        self.message.setStyleSheet("color: #b00020;")
        self.message.setText(text)
        log.info("report panel: %s", text.split(":")[0])  # the kind of problem only: values may be PHI

    def _info(self, text: str) -> None:
        self.message.setStyleSheet("color: #333;")
        self.message.setText(text)

    def wait_for_jobs(self, ms: int = 60000) -> None:
        for job in list(self.jobs):
            job.wait(ms)

    def read_only(self) -> bool:
        """True when every editor refuses edits (a signed version)."""
        return all(e.is_read_only() for e in self.editors.values()) and self.free_text.isReadOnly()


def _number(value, digits: int = 1) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return ""


__all__ = ["FieldEditor", "ReportPanel", "demo_identity_path", "nearest_sop_instance", "provenance_text",
           "stored_analysis", "study_for_report"]
