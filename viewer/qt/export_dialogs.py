"""The desktop viewer's 3-D exports (issue 8): the bio-model (STL per label, OBJ+MTL, PLY, GLB),
turntable animations (GIF, MP4) and high-resolution stills of the 3-D view.

The dialogs only gather options and show progress, results and errors; the work is the headless
code `radsight export-mesh` and `radsight render --view 3d` run (viewer.render.mesh_export,
viewer.render.turntable, viewer.render.snapshot), in background jobs (STYLE.md rule 4). Cancel
takes effect between labels of a mesh export and between frames of a turntable: the progress
callback those functions already call raises `ExportCancelled`, and nothing half-made is written
(the mesh files are written only once every label is meshed; a turntable's partial file is
removed by viewer.render.turntable.write_frames).
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QMessageBox, QProgressBar, QPushButton,
                               QSpinBox, QTextBrowser, QVBoxLayout)

from viewer.core.errors import RadSightError
from viewer.qt.workers import Job

MESH_FORMATS = {"stl": "STL, one file per label (3-D printing)", "obj": "OBJ + MTL, one group per label",
                "ply": "PLY, vertex colours", "glb": "GLB (binary glTF), named parts with colours"}
QUALITY_HELP = {"draft": "draft: up to 80 % fewer triangles", "standard": "standard: up to 50 % fewer triangles",
                "fine": "fine: every triangle, gentlest smoothing"}
ANIMATION_FORMATS = {"gif": "GIF (plays everywhere, 256 colours)", "mp4": "MP4 (H.264, smaller, full colour)"}


class ExportCancelled(Exception):
    """Raised from a progress callback when the user cancelled: stops meshing between labels and
    rendering between frames."""

    def __init__(self, done: int, total: int):
        super().__init__(f"cancelled after {done} of {total}")
        self.done, self.total = done, total


def cancellable(progress, cancelled, unit: str):
    """A progress(done, total[, message]) callback that reports and raises ExportCancelled once
    the user has cancelled and work remains."""

    def step(done: int, total: int, message: str = "") -> None:
        progress(done, total, message or f"{unit} {done}/{total}")
        if cancelled() and done < total:
            raise ExportCancelled(done, total)

    return step


def writable_folder(folder: str | Path) -> str | None:
    """None when files can be written into `folder` (made if missing), else why not, in one line."""
    if not str(folder).strip():
        return "No output folder chosen: choose the folder for the files"
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".radsight-write-test-"):
            pass
    except OSError as exc:
        return f"Cannot write into {path}: {exc.strerror or exc}. Choose another folder."
    return None


def study_path(store, series_key: str | None, volume=None) -> Path | None:
    """The folder (or volume file) the open series was read from: the one its files share, as
    `radsight export-mesh PATH` is given; None when the viewer does not know it."""
    import os

    if store is not None and series_key:
        series = store.indexed_series(series_key)
        if series is not None:
            return Path(os.path.commonpath([str(Path(r.path).resolve().parent) for r in series.records]))
    for candidate in (series_key, getattr(getattr(volume, "source", None), "path", None)):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def _path_row(edit: QLineEdit, choose) -> QHBoxLayout:
    """A path field with its "Choose..." button, which calls `choose`."""
    browse = QPushButton("Choose...")
    browse.clicked.connect(choose)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return row


def _swatch(color) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor.fromRgbF(*color))
    return QIcon(pixmap)


def _start_job(window, fn, name: str, on_done, on_failed, on_progress=None) -> Job:
    """MainWindow.run_job with the errors going to `on_failed` (the dialog says them) instead of
    a modal box."""
    return window.run_job(fn, name, on_done, on_failed=on_failed, on_progress=on_progress)


class _JobDialog(QDialog):
    """A dialog that runs one export at a time, with a progress bar, and whose Close button
    cancels the running export."""

    def __init__(self, window, title: str):
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle(title)
        self.job: Job | None = None
        self.result = None
        self.message: QMessageBox | None = None  # the last error or result box shown
        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.run_button = QPushButton("Export")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self._close_or_cancel)

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.run_button)
        row.addWidget(self.close_button)
        return row

    def tell(self, icon, text: str, details: str = "") -> QMessageBox:
        """A box that does not block the viewer (open(), not exec())."""
        box = QMessageBox(icon, self.windowTitle(), text, QMessageBox.Ok, self)
        if details:
            box.setDetailedText(details)
        self.message = box
        box.open()
        return box

    def fail(self, text: str) -> None:
        self.status.setText(text)
        self.window_.statusBar().showMessage(text, 15000)
        self.tell(QMessageBox.Warning, text)

    def _run(self, fn, name: str, on_done) -> None:
        self.result = None
        self.run_button.setEnabled(False)
        self.close_button.setText("Cancel export")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText(name + "...")

        def finished(result) -> None:
            self._idle()
            on_done(result)

        def failed(message: str) -> None:
            self._idle()
            self.fail(message)

        self.job = _start_job(self.window_, fn, name, finished, failed, self._progress)

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{message}  %v/%m")

    def _idle(self) -> None:
        self.job = None
        self.progress.hide()
        self.run_button.setEnabled(True)
        self.close_button.setText("Close")

    def _close_or_cancel(self) -> None:
        if self.job is None:
            self.close()
            return
        self.job.cancel()
        self.status.setText("Cancelling after the current step...")
        if not self.cancel_keeps_open():
            self.close()

    def cancel_keeps_open(self) -> bool:
        """Whether Cancel leaves the dialog open (to show what was cancelled)."""
        return True

    def start(self) -> None:
        raise NotImplementedError


# bio-model ---------------------------------------------------------------------------------
def _subset(source, values: set[int]):
    """`source` with only the labels in `values` (the others become background)."""
    from viewer.render.mesh_export import LabelSource

    voxels = np.asarray(source.labels.voxels)
    kept = np.where(np.isin(voxels, sorted(values)), voxels, 0).astype(voxels.dtype)
    return LabelSource(source.labels.with_voxels(kept), {v: n for v, n in source.names.items() if v in values},
                       source.findings & values, source.source)


def mesh_summary_html(data: dict, cancelled: ExportCancelled | None = None) -> str:
    """The export's result as the summary dialog shows it: per label triangles, volume against the
    mask, watertight or its problems; then the files."""
    if cancelled is not None:
        return (f"<p><b>Export cancelled after meshing {cancelled.done} of {cancelled.total} labels.</b> "
                "No files were written.</p>")
    rows = []
    for item in data["labels"]:
        state = "watertight" if item["watertight"] else "<b>NOT watertight</b>: " + "; ".join(
            html.escape(p) for p in item["problems"])
        extra = "" if not item["watertight"] else "".join(f"<br>&nbsp;&nbsp;{html.escape(p)}" for p in item["problems"])
        name = html.escape(item["name"])
        rows.append(f"<li>{'<b>' + name + '</b>' if item['finding'] else name}: {item['triangles']:,} triangles, "
                    f"{item['volume_mm3']:,.0f} mm³ against the mask's {item['mask_volume_mm3']:,.0f} mm³ "
                    f"({item['volume_difference_pct']:+.2f} %), {state}{extra}</li>")
    files = "".join(f"<li>{html.escape(p)}</li>" for p in data["files"])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in data.get("notes", []))
    return (f"<p>{len(data['labels'])} parts from {html.escape(data['labels_source'])} ({data['quality']}):</p>"
            f"<ul>{''.join(rows)}</ul>" + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else "")
            + f"<p>{len(data['files'])} files:</p><ul>{files}</ul>")


class MeshExportDialog(_JobDialog):
    """File > Export 3D model: formats, quality, labels (nodules highlighted as their own parts)
    and the folder. The labels are found as `radsight export-mesh` finds them
    (viewer.render.mesh_export.study_labels), in a job started when the dialog opens."""

    def __init__(self, window, path: Path, default_folder: str):
        from viewer.render.meshes import QUALITIES

        super().__init__(window, "Export 3D model")
        self.path = path
        self.source = None
        self.notes: list[str] = []
        self.summary: QDialog | None = None
        self.summary_text = ""
        self.format_boxes = {}
        formats = QVBoxLayout()
        for fmt, text in MESH_FORMATS.items():
            box = QCheckBox(text)
            box.setChecked(fmt in ("stl", "glb"))
            self.format_boxes[fmt] = box
            formats.addWidget(box)
        self.quality = QComboBox()
        for name in QUALITIES:
            self.quality.addItem(QUALITY_HELP.get(name, name), name)
        self.quality.setCurrentIndex(list(QUALITIES).index("standard"))
        self.labels = QListWidget()
        self.labels.setMinimumHeight(180)
        all_button, none_button = QPushButton("All"), QPushButton("None")
        all_button.clicked.connect(lambda: self.check_labels(None))
        none_button.clicked.connect(lambda: self.check_labels(set()))
        self.folder = QLineEdit(default_folder)
        folder_row = _path_row(self.folder, self._choose_folder)
        picks = QHBoxLayout()
        picks.addWidget(QLabel("Nodules are their own parts, in bold and orange."), 1)
        picks.addWidget(all_button)
        picks.addWidget(none_button)
        form = QFormLayout()
        form.addRow("Formats", formats)
        form.addRow("Quality", self.quality)
        form.addRow("Output folder", folder_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Labels"))
        layout.addWidget(self.labels, 1)
        layout.addLayout(picks)
        layout.addWidget(self.progress)
        layout.addLayout(self._buttons())
        self.resize(560, 560)
        self.run_button.setEnabled(False)
        self._find_labels()

    # the study's labels --------------------------------------------------------------------
    def _find_labels(self) -> None:
        path, db = self.path, getattr(self.window_.store, "path", None)

        def work(progress, cancelled):
            from viewer.render.mesh_export import study_labels
            from viewer.store import Store

            notes: list[str] = []
            if db is None:
                return (*study_labels(path, progress=progress, log=notes.append), notes)
            with Store(db) as store:  # the GUI's connection belongs to the GUI thread
                return (*study_labels(path, store=store, progress=progress, log=notes.append), notes)

        self._run(work, "Finding the study's labels", self._labels_found)
        self.close_button.setText("Cancel")

    def _labels_found(self, result) -> None:
        self.source, _facts, self.notes = result
        values, counts = np.unique(np.asarray(self.source.labels.voxels), return_counts=True)
        voxel_mm3 = abs(float(np.linalg.det(self.source.labels.affine[:3, :3])))
        count = dict(zip(values.tolist(), counts.tolist()))
        self.labels.clear()
        for part in self.source.parts(values):
            item = QListWidgetItem(_swatch(part.color), f"{part.name}   ({count[part.value] * voxel_mm3:,.0f} mm³)")
            item.setData(Qt.UserRole, part.value)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            if part.finding:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
                item.setForeground(QColor.fromRgbF(*part.color).darker(130))
                item.setToolTip("a finding: its own part, in the highlight colour")
            self.labels.addItem(item)
        self.status.setText(f"{self.labels.count()} labels from {self.source.source}")
        self.run_button.setEnabled(True)

    def cancel_keeps_open(self) -> bool:
        return self.source is not None  # while the labels are still being found, Cancel closes

    @property
    def labels_ready(self) -> bool:
        return self.source is not None

    def label_values(self, checked_only: bool = True) -> list[int]:
        items = [self.labels.item(n) for n in range(self.labels.count())]
        return [int(i.data(Qt.UserRole)) for i in items if not checked_only or i.checkState() == Qt.Checked]

    def check_labels(self, values: set[int] | None) -> None:
        """Tick exactly `values` (None: all)."""
        for n in range(self.labels.count()):
            item = self.labels.item(n)
            on = values is None or int(item.data(Qt.UserRole)) in values
            item.setCheckState(Qt.Checked if on else Qt.Unchecked)

    def set_formats(self, formats) -> None:
        for fmt, box in self.format_boxes.items():
            box.setChecked(fmt in formats)

    def formats(self) -> list[str]:
        return [fmt for fmt, box in self.format_boxes.items() if box.isChecked()]

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the 3-D model", self.folder.text())
        if folder:
            self.folder.setText(folder)

    # the export ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.job is not None or self.source is None:
            return
        formats, values = self.formats(), set(self.label_values())
        if not formats:
            return self.fail("No format chosen: tick at least one of STL, OBJ, PLY, GLB")
        if not values:
            return self.fail("No label ticked: nothing to mesh. Tick the parts the model should hold")
        problem = writable_folder(self.folder.text())
        if problem:
            return self.fail(problem)
        out = Path(self.folder.text()).expanduser()
        self.window_.settings.setValue("mesh_export_folder", str(out))
        source, quality = _subset(self.source, values), self.quality.currentData()

        def work(progress, cancelled):
            from viewer.render.mesh_export import export_meshes

            step = cancellable(progress, cancelled, "label")
            try:
                if cancelled():
                    raise ExportCancelled(0, len(values))
                data = export_meshes(source, out, formats, quality, step)
            except ExportCancelled as stop:
                return {"cancelled": stop}
            except OSError as exc:
                raise RadSightError(f"Cannot write the 3-D model into {out}: {exc}") from None
            return data

        self._run(work, "Exporting the 3D model", self._exported)

    def _exported(self, data: dict) -> None:
        self.result = data
        stop = data.get("cancelled")
        if stop is None:
            data["notes"] = list(self.notes)
        self.summary_text = mesh_summary_html(data, stop)
        plain = self._show_summary(self.summary_text)
        self.status.setText(plain.splitlines()[0] if plain else "")
        self.window_.statusBar().showMessage(
            "3D model export cancelled" if stop else f"3D model: {len(data['files'])} files in {self.folder.text()}",
            15000)

    def _show_summary(self, text: str) -> str:
        summary = QDialog(self)
        summary.setWindowTitle("3D model export")
        browser = QTextBrowser()
        browser.setHtml(text)
        ok = QPushButton("Close")
        ok.clicked.connect(summary.accept)
        layout = QVBoxLayout(summary)
        layout.addWidget(browser)
        layout.addWidget(ok, 0, Qt.AlignRight)
        summary.resize(760, 480)
        self.summary = summary
        summary.open()
        return browser.toPlainText()


def open_mesh_export(window) -> MeshExportDialog | None:
    """The export dialog for the window's open study; a status message when nothing is open."""
    if window.state.volume is None:
        window.state.message.emit("Open a study first: the 3-D model is made of the open study's labels")
        return None
    path = study_path(window.store, window.state.series_key, window.state.volume)
    if path is None:
        window.state.message.emit("The open study's files are not known (opened from memory); open its folder")
        return None
    default = window.settings.value("mesh_export_folder", "") or str(path.resolve().parent / "radsight-model")
    dialog = MeshExportDialog(window, path, default)
    dialog.show()
    return dialog


# turntable and snapshot ------------------------------------------------------------------
def shown_labels(state):
    """(labels volume, names) of the first shown label overlay, its hidden labels left out; or
    (None, {})."""
    for overlay in state.overlays:
        if overlay.kind != "labels" or not overlay.visible:
            continue
        visible = [v for v, style in overlay.label_styles.items() if style.visible]
        if not visible:
            continue
        voxels = np.asarray(overlay.volume.voxels)
        kept = np.where(np.isin(voxels, visible), voxels, 0).astype(np.int32)
        return overlay.volume.with_voxels(kept), {v: n for v, n in overlay.label_names.items() if v in visible}
    return None, {}


def camera_angles(camera) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of a vtkCamera looking at its focal point, in the terms of
    VolumeScene.set_view (from the anterior home view, about the patient's S-I axis; +90 looks
    from the patient's left): so a snapshot or turntable starts where the 3-D view looks.
    Zoom, pan and roll are not carried over."""
    offset = np.subtract(camera.GetPosition(), camera.GetFocalPoint())
    norm = float(np.linalg.norm(offset))
    if norm < 1e-9:
        return 0.0, 0.0
    x, y, z = offset / norm
    elevation = float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0))))
    azimuth = float(np.degrees(np.arctan2(x, -y))) if np.hypot(x, y) > 1e-9 else 0.0
    return azimuth, float(np.clip(elevation, -89.0, 89.0))


class RenderExportDialog(_JobDialog):
    """File > Export turntable (GIF/MP4) or High-resolution snapshot (PNG) of the 3-D view:
    volume preset, camera, size, label surfaces and captions, as `radsight render --view 3d`."""

    def __init__(self, window, mode: str, default_out: str):
        from viewer.render.offscreen_window import MAX_SIDE_PX
        from viewer.render.volume_scene import VOLUME_PRESETS

        if mode not in ("turntable", "snapshot"):
            raise ValueError(f"unknown 3-D export {mode!r}")
        super().__init__(window, "Export turntable" if mode == "turntable" else "High-resolution snapshot")
        self.mode = mode
        self.volume = window.state.volume
        self.labels, self.names = shown_labels(window.state)
        self.preset = QComboBox()
        self.preset.addItems(list(VOLUME_PRESETS))
        self.preset.setCurrentText(getattr(window.views.get("3d"), "preset", "ct-bone"))
        scene = getattr(window.views.get("3d"), "scene", None)
        azimuth, elevation = camera_angles(scene.renderer.GetActiveCamera()) if scene is not None else (0.0, 0.0)
        self.azimuth = self._angle(-360, 360, round(azimuth, 1))
        self.elevation = self._angle(-89, 89, round(elevation, 1))
        self.width_px, self.height_px = (self._pixels(MAX_SIDE_PX, 512 if mode == "turntable" else 2048)
                                         for _ in range(2))
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_px)
        size_row.addWidget(QLabel("x"))
        size_row.addWidget(self.height_px)
        size_row.addWidget(QLabel("px"), 1)
        self.frames = QSpinBox()
        self.frames.setRange(2, 720)
        self.frames.setValue(36)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(0.5, 60.0)
        self.fps.setValue(12.0)
        self.format = QComboBox()
        for kind, text in ANIMATION_FORMATS.items():
            self.format.addItem(text, kind)
        self.format.currentIndexChanged.connect(self._suffix)
        has_labels = self.labels is not None
        self.surfaces = QCheckBox("Label surfaces" if has_labels else "Label surfaces (no labels shown)")
        self.captions = QCheckBox("Label captions" if self.names else "Label captions (the labels have no names)")
        self.surfaces.setEnabled(has_labels)
        self.captions.setEnabled(bool(self.names))
        self.surfaces.setChecked(has_labels)
        self.out = QLineEdit(default_out)
        out_row = _path_row(self.out, self._choose_file)
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("Azimuth (degrees from anterior)" if mode == "snapshot" else "First frame's azimuth", self.azimuth)
        form.addRow("Elevation (degrees)", self.elevation)
        form.addRow("Size", size_row)
        if mode == "turntable":
            form.addRow("Frames (one turn)", self.frames)
            form.addRow("Frames per second", self.fps)
            form.addRow("Format", self.format)
        form.addRow("", self.surfaces)
        form.addRow("", self.captions)
        form.addRow("Output file", out_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addLayout(self._buttons())
        self.run_button.setText("Render")
        self._suffix()

    @staticmethod
    def _angle(low: float, high: float, value: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setDecimals(1)
        box.setValue(value)
        return box

    @staticmethod
    def _pixels(high: int, value: int) -> QSpinBox:
        box = QSpinBox()
        box.setRange(16, high)
        box.setValue(value)
        return box

    def suffix(self) -> str:
        return ".png" if self.mode == "snapshot" else "." + self.format.currentData()

    def _suffix(self) -> None:
        """Keep the output file's extension in step with the format."""
        text = self.out.text().strip()
        if text:
            self.out.setText(str(Path(text).with_suffix(self.suffix())))

    def _choose_file(self) -> None:
        pattern = {".png": "PNG (*.png)", ".gif": "GIF (*.gif)", ".mp4": "MP4 (*.mp4)"}[self.suffix()]
        path, _ = QFileDialog.getSaveFileName(self, self.windowTitle(), self.out.text(), pattern)
        if path:
            self.out.setText(path)
            self._suffix()

    def start(self) -> None:
        if self.job is not None:
            return
        out = Path(self.out.text().strip()).expanduser()
        if not self.out.text().strip():
            return self.fail("No output file chosen")
        if out.suffix.lower() != self.suffix():
            return self.fail(f"{out.name}: the file must end in {self.suffix()} for the chosen format")
        problem = writable_folder(out.parent)
        if problem:
            return self.fail(problem)
        self.window_.settings.setValue("render_export_folder", str(out.parent))
        volume, preset = self.volume, self.preset.currentText()
        labels = self.labels if self.surfaces.isChecked() else None
        captions = self.captions.isChecked() and bool(self.names)
        source, names = self.labels, dict(self.names)
        size = (self.width_px.value(), self.height_px.value())
        azimuth, elevation = self.azimuth.value(), self.elevation.value()
        frames, fps, mode = self.frames.value(), self.fps.value(), self.mode

        def work(progress, cancelled):
            from viewer.render.annotations import label_annotations
            from viewer.render.snapshot import Scene3D

            try:
                annotations = label_annotations(source, names) if captions else []
                scene = Scene3D(volume, preset, labels, annotations=annotations)
                if mode == "snapshot":
                    from viewer.render.offscreen import write_png

                    progress(0, 1, "rendering")
                    (rgb,) = scene.views([(azimuth, elevation)], size)
                    path = write_png(rgb, out)
                    progress(1, 1, "written")
                    return {"out": str(path), "width": rgb.shape[1], "height": rgb.shape[0]}
                from viewer.render.turntable import render_turntable

                step = cancellable(progress, cancelled, "frame")
                return render_turntable(scene, out, frames, fps, elevation, size, azimuth,
                                        lambda k, n: step(k, n)).to_json()
            except ExportCancelled as stop:
                return {"cancelled": stop}
            except ValueError as exc:
                raise RadSightError(f"{out.name}: {exc}") from None
            except OSError as exc:
                raise RadSightError(f"Cannot write {out}: {exc}") from None

        self._run(work, "Rendering the turntable" if mode == "turntable" else "Rendering the snapshot", self._done)

    def _done(self, data: dict) -> None:
        self.result = data
        stop = data.get("cancelled")
        if stop is not None:
            text = f"Turntable cancelled after {stop.done} of {stop.total} frames; no file was written."
        elif self.mode == "turntable":
            text = (f"Turntable written: {data['out']} ({data['frames']} frames, {data['width']} x {data['height']} "
                    f"px, {data['fps']:g} fps, {data['format'].upper()})")
        else:
            text = f"Snapshot written: {data['out']} ({data['width']} x {data['height']} px)"
        self.status.setText(text)
        self.window_.statusBar().showMessage(text, 15000)
        self.tell(QMessageBox.Information, text)


def open_render_export(window, mode: str) -> RenderExportDialog | None:
    """The turntable or snapshot dialog for the open study's 3-D view."""
    if window.state.volume is None:
        window.state.message.emit("Open a study first: the 3-D view shows the open study")
        return None
    folder = window.settings.value("render_export_folder", "") or str(Path.home())
    stem = "radsight-turntable.gif" if mode == "turntable" else "radsight-3d.png"
    dialog = RenderExportDialog(window, mode, str(Path(folder) / stem))
    dialog.show()
    return dialog


__all__ = ["ExportCancelled", "MeshExportDialog", "RenderExportDialog", "open_mesh_export", "open_render_export",
           "shown_labels", "study_path", "writable_folder"]
