"""The main window: study browser, view layouts, status bar with readout and job progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from PySide6.QtCore import QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QGridLayout, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QTreeWidget, QTreeWidgetItem, QWidget)

from viewer import __version__
from viewer.core.presets import window_presets
from viewer.qt.ai_panel import AIPanel
from viewer.qt.comparison import ComparisonLink
from viewer.qt.measurement_panel import TOOLS, MeasurementPanel
from viewer.qt.overlay_panel import OverlayPanel
from viewer.qt.slice_view import SliceView
from viewer.qt.state import ViewerState
from viewer.qt.volume_view import VolumeView
from viewer.qt.workers import Job

LAYOUTS = {"1x1": ["axial"], "1x3": ["axial", "coronal", "sagittal"], "2x2": ["axial", "coronal", "sagittal", "3d"],
           "compare": ["axial", "prior-axial", "coronal", "prior-coronal"],
           "side-by-side": ["axial", "plain-axial"]}

SHORTCUTS = [
    ("Mouse wheel, Up/Down", "next/previous slice"), ("Page Up/Down", "10 slices"),
    ("Ctrl + wheel", "zoom"), ("Left click/drag", "move the crosshair (all views follow)"),
    ("Right drag", "window (horizontal) / level (vertical)"), ("Middle drag", "pan"),
    ("R", "reset zoom and pan"), ("Ctrl+O", "open a folder"), ("Ctrl+1/2/3", "layout 1x1, 1x3, 2x2"),
    ("Ctrl+5", "side by side: the image with its overlays (heatmap) and without"),
    ("Ctrl+L / Ctrl+G", "line / angle tool"), ("Ctrl+E / Ctrl+P", "ellipse / polygon ROI tool (Enter closes)"),
    ("[ ]  { }", "turn the plane 5 degrees (oblique MPR)"), ("O", "back to the standard plane"),
    ("C", "cine: play / stop"), ("Ctrl+I", "show or hide patient information"),
    ("Ctrl+Shift+O", "open a prior study beside the current one"), ("Ctrl+K", "unlink prior and current; again: link them at the crosshairs"),
    ("Ctrl+R", "report editor: draft, edit, sign and export the open study's report"),
    ("Ctrl+Shift+M", "export the 3-D model: STL per label, OBJ+MTL, PLY, GLB (nodules as their own parts)"),
    ("Ctrl+Shift+T", "export a turntable of the 3-D view (GIF or MP4)"),
    ("Ctrl+Shift+S", "high-resolution snapshot of the 3-D view (PNG)"),
    ("Ctrl+Shift+C", "consultation mode: full screen for the patient, no patient details unless chosen (Esc leaves)"),
    ("Esc", "cancel the measurement, then leave the tool"), ("Delete", "delete the selected measurement"),
] + [(p.key, f"window preset: {p.name} (W {p.width:g} / L {p.level:g})") for p in window_presets()]


class MainWindow(QMainWindow):
    def __init__(self, state: ViewerState | None = None, store=None):
        super().__init__()
        self.state = state or ViewerState()
        self.store = store
        self.state.store = store
        self.settings = QSettings("RadSight", "RadSight")
        self.jobs: list[Job] = []
        self.setWindowTitle(f"RadSight {__version__}")
        self.setAcceptDrops(True)
        self.views = {name: SliceView(self.state, name) for name in ("axial", "coronal", "sagittal")}
        self.views["3d"] = VolumeView(self.state)
        self.views["plain-axial"] = SliceView(self.state, "axial", overlays=False)
        self.prior_state = ViewerState()
        self.prior_state.store = store
        self.views["prior-axial"] = SliceView(self.prior_state, "axial")
        self.views["prior-coronal"] = SliceView(self.prior_state, "coronal")
        self.comparison = ComparisonLink(self.state, self.prior_state)
        for view in self.views.values():
            if isinstance(view, SliceView):
                view.readout.connect(self._show_readout)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.setCentralWidget(self.grid_host)
        self._build_browser()
        self._build_status()
        self.plugin_docks: dict[str, QDockWidget] = {}
        self.report_dock: QDockWidget | None = None
        self.panel_problems: list[str] = []  # panel factories that failed, with the reason
        self.plugin_shortcuts: list[tuple[str, str]] = []  # (key, what it does [panel]) of opened panels
        self._build_menus()
        self.set_layout(self.settings.value("layout", "2x2"))
        self.state.message.connect(lambda m: self.statusBar().showMessage(m, 10000))
        self.resize(1280, 900)
        self.open_default_panels()

    # layout -----------------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS or (name == "compare" and self.prior_state.volume is None):
            name = "2x2"
        for view in self.views.values():
            self.grid.removeWidget(view)
            view.hide()
        names = LAYOUTS[name]
        columns = 2 if len(names) == 4 else len(names)
        for n, view_name in enumerate(names):
            self.grid.addWidget(self.views[view_name], n // columns, n % columns)
            self.views[view_name].show()
        self.layout_name = name
        if name != "compare":
            self.settings.setValue("layout", name)

    def _build_browser(self) -> None:
        self._thumbnails: dict = {}
        self.browser = QTreeWidget()
        self.browser.setIconSize(QSize(48, 48))
        self.browser.setHeaderLabels(["Study / series", "Date", "Images"])
        self.browser.itemDoubleClicked.connect(self._open_browser_item)
        dock = QDockWidget("Studies", self)
        dock.setObjectName("studies")
        dock.setWidget(self.browser)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        self.measurement_panel = MeasurementPanel(self.state)
        self.panel_area = QDockWidget("Measurements", self)  # plugin panels (AI, nodules, report) dock beside it
        self.panel_area.setObjectName("measurements")
        self.panel_area.setWidget(self.measurement_panel)
        self.addDockWidget(Qt.RightDockWidgetArea, self.panel_area)
        self.overlay_panel = OverlayPanel(self.state)
        overlays = QDockWidget("Overlays", self)
        overlays.setObjectName("overlays")
        overlays.setWidget(self.overlay_panel)
        self.addDockWidget(Qt.RightDockWidgetArea, overlays)
        self.overlays_dock = overlays
        self.ai_panel = AIPanel(self.state, self.run_job)
        ai = QDockWidget("AI", self)
        ai.setObjectName("ai")
        ai.setWidget(self.ai_panel)
        self.addDockWidget(Qt.RightDockWidgetArea, ai)
        self.tabifyDockWidget(self.panel_area, ai)
        self.panel_area.raise_()
        self.resizeDocks([dock, self.panel_area], [230, 300], Qt.Horizontal)
        self.refresh_browser()

    def refresh_browser(self) -> None:
        self.browser.clear()
        if self.store is None:
            return
        for study in self.store.studies():
            item = QTreeWidgetItem([study["description"] or study["study_uid"], study["study_date"], ""])
            for series in self.store.series_summaries(study["study_uid"]):
                child = QTreeWidgetItem([f"#{series.get('series_number')} {series.get('description') or ''}",
                                         "", str(series.get("frame_count"))])
                child.setData(0, Qt.UserRole, series["series_key"])
                icon = self._thumbnail(series["series_key"])
                if icon is not None:
                    child.setIcon(0, icon)
                item.addChild(child)
            self.browser.addTopLevelItem(item)
            item.setExpanded(True)

    def _thumbnail(self, series_key: str):
        """The middle image of a series as a small icon (one slice read from the index)."""
        if series_key in self._thumbnails:
            return self._thumbnails[series_key]
        icon = None
        try:
            series = self.store.indexed_series(series_key)
            if series is not None:
                icon = thumbnail_icon(series)
        except Exception:  # a thumbnail is a convenience: a bad file must not break the browser
            icon = None
        self._thumbnails[series_key] = icon
        return icon

    def _build_status(self) -> None:
        self.readout = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_jobs)
        bar = self.statusBar()
        bar.addWidget(self.readout, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = QAction("&Open folder...", self, shortcut=QKeySequence("Ctrl+O"), triggered=self.choose_folder)
        file_menu.addAction(open_action)
        file_menu.addAction(QAction("Open &prior study for comparison...", self, shortcut=QKeySequence("Ctrl+Shift+O"),
                                    triggered=self.choose_prior_folder))
        file_menu.addSeparator()
        file_menu.addAction(QAction("Export 3D &model...", self, shortcut=QKeySequence("Ctrl+Shift+M"),
                                    triggered=self.export_mesh))
        file_menu.addAction(QAction("Export &turntable...", self, shortcut=QKeySequence("Ctrl+Shift+T"),
                                    triggered=lambda: self.export_render("turntable")))
        file_menu.addAction(QAction("High-resolution &snapshot...", self, shortcut=QKeySequence("Ctrl+Shift+S"),
                                    triggered=lambda: self.export_render("snapshot")))
        file_menu.addSeparator()
        file_menu.addAction(QAction("&Quit", self, shortcut=QKeySequence.Quit, triggered=self.close))
        view_menu = self.menuBar().addMenu("&View")
        for n, name in enumerate(LAYOUTS, 1):
            view_menu.addAction(QAction(f"Layout {name}", self, shortcut=QKeySequence(f"Ctrl+{n}"),
                                        triggered=lambda _=False, name=name: self.set_layout(name)))
        view_menu.addAction(QAction("Unlink / link prior and current", self, shortcut=QKeySequence("Ctrl+K"),
                                    triggered=self.toggle_link))
        self.presets_menu = view_menu.addMenu("Window presets")
        self._fill_presets_menu()
        self.patient_info_action = QAction("Show patient information", self, shortcut=QKeySequence("Ctrl+I"),
                                           checkable=True, triggered=self._toggle_patient_info)
        show = self.settings.value("show_patient_info", True, type=bool)
        self.patient_info_action.setChecked(show)
        self.state.set_show_patient_info(show)
        view_menu.addAction(self.patient_info_action)
        self.clip_action = QAction("3D: clip to a box around the crosshair", self, checkable=True,
                                   triggered=self._update_clip)
        view_menu.addAction(self.clip_action)
        self.state.crosshair_changed.connect(lambda _: self._update_clip())
        volume_menu = view_menu.addMenu("3D presets")
        from viewer.render.volume_scene import VOLUME_PRESETS

        for name in VOLUME_PRESETS:
            volume_menu.addAction(QAction(name, self, triggered=lambda _=False, name=name: self.views["3d"].set_preset(name)))
        self._build_panels_menu(view_menu.addMenu("Plugin panels"))
        view_menu.addAction(QAction("&Report", self, shortcut=QKeySequence("Ctrl+R"), triggered=self.open_report_panel))
        view_menu.addAction(QAction("&Consultation mode", self, shortcut=QKeySequence("Ctrl+Shift+C"),
                                    triggered=self.open_consultation))
        tools_menu = self.menuBar().addMenu("&Tools")
        for (kind, title), key in zip(TOOLS, ("Esc", "Ctrl+L", "Ctrl+G", "Ctrl+E", "Ctrl+P")):
            tools_menu.addAction(QAction(title, self, shortcut=QKeySequence(key),
                                         triggered=lambda _=False, kind=kind: self.state.set_tool(kind)))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("Keyboard shortcuts", self, shortcut=QKeySequence.HelpContents,
                                    triggered=self.show_shortcuts))
        help_menu.addAction(QAction("Plugin problems...", self, triggered=self.show_plugin_problems))
        help_menu.addAction(QAction("About RadSight", self, triggered=self.show_about))

    # plugin panels and tools ---------------------------------------------------------------
    def _build_panels_menu(self, menu) -> None:
        """One entry per panel contribution; its dock is made on first use (the plugin's code is
        imported only then)."""
        from viewer.plugins import contributions

        self.panel_contributions = {c.id: c for c in contributions("panels")}
        for c in self.panel_contributions.values():
            menu.addAction(QAction(c.title or c.id, self, triggered=lambda _=False, cid=c.id: self.open_panel(cid)))
        if not self.panel_contributions:
            menu.addAction(QAction("(no plugin panels installed)", self, enabled=False))

    def open_default_panels(self) -> None:
        """Dock the panels whose manifest says `show: true`; the first of them is the raised tab."""
        shown = [cid for cid, c in self.panel_contributions.items() if getattr(c.spec, "show", False)]
        for cid in reversed(shown):
            self.open_panel(cid)
        if any(self.plugin_docks.get(cid) and self.dockWidgetArea(self.plugin_docks[cid]) == Qt.RightDockWidgetArea
               for cid in shown):  # a panel shown from the start gets the room of the right column
            self.resizeDocks([self.panel_area, self.overlays_dock], [640, 260], Qt.Vertical)

    def open_panel(self, contribution_id: str) -> QWidget | None:
        """Show a plugin's panel in its dock, creating it the first time; a failing factory is
        listed under Help > Plugin problems and the window goes on without it."""
        if contribution_id in self.plugin_docks:
            dock = self.plugin_docks[contribution_id]
            dock.show()
            dock.raise_()
            return dock.widget()
        contribution = self.panel_contributions.get(contribution_id)
        if contribution is None:
            self.state.message.emit(f"No plugin panel '{contribution_id}' is installed")
            return None
        before = set(self.actions())
        try:
            widget = contribution.load()(self)
            if not isinstance(widget, QWidget):
                raise TypeError(f"the factory returned a {type(widget).__name__}, not a QWidget")
        except Exception as exc:  # a plugin's bug must never stop the viewer
            reason = f"plugin {contribution.plugin}: panel '{contribution_id}' could not be created: {type(exc).__name__}: {exc}"
            self.panel_problems.append(reason)
            self.state.message.emit(reason + " (Help > Plugin problems)")
            return None
        dock = QDockWidget(contribution.title or contribution_id, self)
        dock.setObjectName(f"plugin-{contribution.plugin}-{contribution_id}")
        dock.setWidget(widget)
        area = {"left": Qt.LeftDockWidgetArea, "top": Qt.TopDockWidgetArea,
                "bottom": Qt.BottomDockWidgetArea}.get(contribution.spec.area or "right", Qt.RightDockWidgetArea)
        self.addDockWidget(area, dock)
        if area == Qt.RightDockWidgetArea:
            self.tabifyDockWidget(self.panel_area, dock)
        dock.show()
        dock.raise_()
        self.plugin_docks[contribution_id] = dock
        title = contribution.title or contribution_id
        for action in [a for a in self.actions() if a not in before] + widget.actions():
            if not action.shortcut().isEmpty():
                what = action.text().replace("&", "")
                self.plugin_shortcuts.append((action.shortcut().toString(QKeySequence.NativeText), f"{what} [{title}]"))
        return widget

    def plugin_problem_lines(self) -> list[str]:
        """Discovery problems (bad manifests, failed imports) and panels that failed to build."""
        from viewer.plugins import problems

        return [f"{p} ({p.where})" for p in problems()] + list(self.panel_problems)

    def show_plugin_problems(self) -> None:
        lines = self.plugin_problem_lines()
        text = "\n\n".join(lines) if lines else "Every installed plugin loaded without problems."
        QMessageBox.information(self, "Plugin problems", text)

    def register_tool(self, kind: str, handler) -> None:
        """Give a plugin's tool (a slice_view.ToolHandler) the left mouse button in every slice view
        of the current study while `state.tool == kind`."""
        for name, view in self.views.items():
            if isinstance(view, SliceView) and not name.startswith("prior-"):
                view.tool_handlers[kind] = handler

    # report ---------------------------------------------------------------------------
    def open_report_panel(self) -> QWidget:
        """The Report dock (made on first use), beside the measurement and plugin panels."""
        if self.report_dock is None:
            from viewer.qt.report_panel import ReportPanel

            panel = ReportPanel(self.state, self.store, capture=lambda: self.capture_view("axial"))
            dock = QDockWidget("Report", self)
            dock.setObjectName("report")
            dock.setWidget(panel)
            self.addDockWidget(Qt.RightDockWidgetArea, dock)
            self.tabifyDockWidget(self.panel_area, dock)
            self.report_dock = dock
        self.report_dock.show()
        self.report_dock.raise_()
        # a form needs room; resized once the dock is laid out in its new place
        QTimer.singleShot(0, lambda: self.resizeDocks([self.panel_area, self.overlays_dock], [760, 140], Qt.Vertical))
        return self.report_dock.widget()

    def open_consultation(self):
        """Full-screen consultation mode for the open study (viewer/qt/consultation.py)."""
        from viewer.qt.consultation import open_consultation

        return open_consultation(self)

    def export_mesh(self):
        """File > Export 3D model (viewer/qt/export_dialogs.py)."""
        from viewer.qt.export_dialogs import open_mesh_export

        return open_mesh_export(self)

    def export_render(self, mode: str):
        """File > Export turntable ("turntable") or High-resolution snapshot ("snapshot")."""
        from viewer.qt.export_dialogs import open_render_export

        return open_render_export(self, mode)

    def capture_view(self, name: str) -> np.ndarray | None:
        """What view `name` shows now, as RGB (rows, columns, 3); None when it shows no image."""
        from viewer.qt.capture import capture_render_window

        view = self.views.get(name)
        if view is None or getattr(view, "scene", None) is None:
            return None
        return capture_render_window(view.render_window)

    # actions ----------------------------------------------------------------------------
    def _show_readout(self, text: str) -> None:
        self.readout.setText(text)

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """The built-in keys, then those of the plugin panels opened so far (a panel's actions are
        known only once its code has run)."""
        return SHORTCUTS + self.plugin_shortcuts

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in self.shortcut_rows())
        QMessageBox.information(self, "Keyboard shortcuts", f"<table cellpadding=3>{rows}</table>")

    def about_text(self) -> str:
        import pydicom
        import SimpleITK
        import vtk
        from PySide6 import __version__ as pyside_version

        lines = [f"RadSight {__version__}", f"VTK {vtk.vtkVersion.GetVTKVersion()}", f"Qt for Python {pyside_version}",
                 f"pydicom {pydicom.__version__}", f"SimpleITK {SimpleITK.Version_VersionString()}"]
        try:
            import onnxruntime

            lines.append(f"ONNX Runtime {onnxruntime.__version__}")
        except ImportError:
            pass
        from viewer.inference.registry import discover

        cards = discover().cards
        lines.append("AI models: " + (", ".join(f"{c.id} {c.version}" for c in cards) if cards else "none installed"))
        return "\n".join(lines)

    def show_about(self) -> None:
        QMessageBox.about(self, "About RadSight", self.about_text())

    def choose_folder(self) -> None:
        start = self.settings.value("last_folder", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", start)
        if folder:
            self.open_path(folder)

    def _fill_presets_menu(self) -> None:
        self.presets_menu.clear()
        for p in window_presets():
            self.presets_menu.addAction(QAction(f"{p.name}\t{p.key}", self,
                                                triggered=lambda _=False, p=p: self.state.set_window(p.width, p.level)))
        self.presets_menu.addSeparator()
        self.presets_menu.addAction(QAction("Save current window as preset...", self, triggered=self.save_preset))

    def save_preset(self, name: str | None = None) -> None:
        from PySide6.QtWidgets import QInputDialog

        from viewer.core.presets import save_user_preset

        if not name:
            name, ok = QInputDialog.getText(self, "Save window preset", "Name:")
            if not ok or not name.strip():
                return
        width, level = self.state.window
        try:
            preset = save_user_preset(name.strip(), width, level)
        except ValueError as exc:
            self.state.message.emit(str(exc))
            return
        self._fill_presets_menu()
        self.state.message.emit(f"Preset '{preset.name}' (W {width:.0f} / L {level:.0f}) on key {preset.key}")

    def _toggle_patient_info(self, show: bool) -> None:
        self.settings.setValue("show_patient_info", bool(show))
        self.state.set_show_patient_info(show)
        self.prior_state.set_show_patient_info(show)

    def _update_clip(self) -> None:
        view = self.views["3d"]
        if view.scene is None:
            return
        if self.clip_action.isChecked():
            x, y, z = self.state.crosshair
            half = 60.0
            view.scene.set_clip_box((x - half, x + half, y - half, y + half, z - half, z + half))
        else:
            view.scene.set_clip_box(None)
        view.render_window.Render()

    def toggle_link(self) -> None:
        if self.comparison.toggle():
            self.state.message.emit("Prior and current linked at the crosshairs")
        else:
            self.state.message.emit("Unlinked: scroll each study to the same anatomy, then Ctrl+K to link")

    def choose_prior_folder(self) -> None:
        start = self.settings.value("last_folder", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Open prior study", start)
        if folder:
            self.open_path(folder, prior=True)

    def set_prior(self, volume, series_key: str | None = None) -> None:
        """Show `volume` as the prior beside the current study, in step with it."""
        self.prior_state.set_volume(volume, series_key)
        self.comparison.set_transform(np.eye(4))
        self.set_layout("compare")

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for url in ev.mimeData().urls():
            self.open_path(url.toLocalFile())

    def open_path(self, path: str | Path, series_key: str | None = None, prior: bool = False) -> Job:
        """Scan, index and load in the background; the largest series (or `series_key`) is shown."""
        path = Path(path)
        self.settings.setValue("last_folder", str(path if path.is_dir() else path.parent))

        def work(progress, cancelled):
            from viewer.dicom import load_series, open_path
            from viewer.dicom.load import load_volume_file
            from viewer.dicom.scan import is_volume_file

            if path.is_file() and is_volume_file(path):
                return load_volume_file(path), None, str(path.resolve())
            series, result = open_path(path, progress=progress, cancelled=cancelled)
            if not series:
                raise ValueError(f"no image series in {path} ({len(result.problems)} unreadable files)")
            chosen = next((s for s in series if s.key == series_key), None) or max(series, key=lambda s: len(s.records))
            return load_series(chosen, progress, cancelled), (series, result), chosen.key

        return self.run_job(work, f"Opening {path.name}", self._loaded_prior if prior else self._loaded)

    def _open_browser_item(self, item: QTreeWidgetItem) -> None:
        key = item.data(0, Qt.UserRole)
        if not key or self.store is None:
            return
        series = self.store.indexed_series(key)
        if series is None:
            self.state.message.emit("The files of this series changed or moved; open the folder again")
            return

        def work(progress, cancelled):
            from viewer.dicom import load_series

            return load_series(series, progress, cancelled), None, key

        self.run_job(work, "Loading series", self._loaded)

    def _loaded(self, result) -> None:
        volume, scanned, key = result
        if scanned is not None and self.store is not None:
            self.store.import_scan(*scanned)
            self.refresh_browser()
        self.state.set_volume(volume, key)
        if self.store is not None and key:
            self.state.set_study_info(self.store.study_opened(key, "the viewer"))
        for w in volume.warnings:
            self.state.message.emit(w.message)

    def _loaded_prior(self, result) -> None:
        volume, scanned, key = result
        if scanned is not None and self.store is not None:
            self.store.import_scan(*scanned)
            self.refresh_browser()
        self.set_prior(volume, key)
        if self.store is not None and key:
            self.prior_state.set_study_info(self.store.study_opened(key, "the viewer (prior)"))

    def run_job(self, fn, name: str, on_done, on_failed=None, on_progress=None) -> Job:
        """`fn(progress, cancelled)` in a background Job shown in the status bar (progress, Cancel)
        and waited for on close; errors go to `on_failed(message)` (default: a message box)."""
        job = Job(fn, name)
        job.progress.connect(self._job_progress)
        if on_progress is not None:
            job.progress.connect(on_progress)
        job.finished.connect(lambda result: (self._job_done(job), on_done(result)))
        job.failed.connect(lambda message: (self._job_done(job), (on_failed or (lambda m: self._job_failed(name, m)))(message)))
        self.jobs.append(job)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage(name + "...")
        job.start()
        return job

    def _job_progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{message} %v/%m")

    def _job_done(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
        if not self.jobs:
            self.progress.hide()
            self.cancel_button.hide()
            self.statusBar().clearMessage()

    def _job_failed(self, name: str, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        if "cancelled" not in message:
            QMessageBox.warning(self, name, message)

    def cancel_jobs(self) -> None:
        for job in list(self.jobs):
            job.cancel()

    def closeEvent(self, ev) -> None:
        self.cancel_jobs()
        for job in list(self.jobs):
            job.wait(5000)
        if self.report_dock is not None:
            self.report_dock.widget().wait_for_jobs(5000)
        for view in self.views.values():
            view.close()
        super().closeEvent(ev)


def thumbnail_icon(series, size: int = 48) -> QIcon:
    from viewer.dicom.pixels import FrameReader, output_dtype

    plan = series.plan
    record = plan.records[len(plan.records) // 2]
    frame = np.empty(plan.shape[1:], dtype=output_dtype([record]))
    FrameReader().read_into(record, frame)
    center, width = record.window or (40.0, 400.0)
    grey = np.clip((frame.astype(np.float32) - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)
    if record.photometric == "MONOCHROME1":
        grey = 255 - grey
    grey = np.ascontiguousarray(grey)
    image = QImage(grey.data, grey.shape[1], grey.shape[0], grey.strides[0], QImage.Format_Grayscale8).copy()
    return QIcon(QPixmap.fromImage(image.scaled(size, size, Qt.KeepAspectRatio, Qt.SmoothTransformation)))


def run_viewer(paths: list[str] | None = None, volume=None, labels=None, labels_source: str = "",
               series_key: str | None = None, prior=None, label_names: dict[int, str] | None = None,
               ground_truth_hidden: bool = False) -> int:
    """Start the desktop application (used by `radsight open` and `radsight demo`)."""
    import sys

    from viewer.store import Store

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RadSight")
    store = Store()
    window = MainWindow(store=store)
    window.show()
    if volume is not None:
        window.state.set_volume(volume, series_key)
        if series_key:
            window.state.set_study_info(store.study_opened(series_key, "the viewer"))
        if labels is not None:
            window.state.set_labels(labels, labels_source, label_names)
            if ground_truth_hidden:  # AI results (from the store) are shown; ground truth one click away
                window.state.update_overlay(len(window.state.overlays) - 1, visible=False)
        if prior is not None:
            window.set_prior(prior)
    for path in paths or []:
        window.open_path(path)
    code = app.exec()
    store.close()
    return code
