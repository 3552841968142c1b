"""The AI panel: models that apply to the open study, run in the background, results as overlays.

Every result shows its model, version, the provider it ran on and its confidence; the reader
decides what to do with it (decision support). Results are stored, so re-opening a study shows
them without running the model again.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from viewer.core.paths import user_data_dir
from viewer.qt.state import Overlay, ViewerState


class AIPanel(QWidget):
    def __init__(self, state: ViewerState, run_job, parent=None):
        super().__init__(parent)
        self.state, self.run_job = state, run_job
        self.registry = None
        self.models = QListWidget()
        self.provider = QComboBox()
        self.provider.addItems(["auto", "cpu", "cuda"])
        self.run_button = QPushButton("Run selected model")
        self.run_button.clicked.connect(self.run_selected)
        self.results = QListWidget()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Provider"))
        row.addWidget(self.provider)
        row.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Models for this study (decision support; review every result)"))
        layout.addWidget(self.models)
        layout.addLayout(row)
        layout.addWidget(QLabel("Results"))
        layout.addWidget(self.results)
        layout.addWidget(self.status)
        state.volume_changed.connect(lambda _: self.refresh())

    def refresh(self) -> None:
        from viewer.inference.registry import discover

        self.registry = discover()
        self.models.clear()
        volume = self.state.volume
        modality = volume.source.modality if volume is not None else None
        for card in self.registry.for_modality(modality, task="segmentation"):
            item = QListWidgetItem(f"{card.name} {card.version}  ({card.task})")
            item.setToolTip(f"{card.intended_use}\n{card.limitations}")
            item.setData(Qt.UserRole, card.id)
            self.models.addItem(item)
        if self.models.count():
            self.models.setCurrentRow(0)
        problems = "; ".join(reason for _, reason in self.registry.problems)
        self.status.setText(f"Model problems: {problems}" if problems else "")
        self.show_stored_results()

    def show_stored_results(self) -> None:
        """Overlays for results already in the store (no re-run)."""
        self.results.clear()
        store, key, volume = self.state.store, self.state.series_key, self.state.volume
        if store is None or not key or volume is None:
            return
        from viewer.dicom.seg import read_seg_labels

        for result in store.results(key):
            if result["kind"] != "seg" or not Path(result["path"]).exists():
                continue
            try:
                labels, names = read_seg_labels(result["path"], volume)
            except Exception as exc:  # a damaged result file must not break the viewer
                self.status.setText(f"{result['path']}: cannot be shown ({exc})")
                continue
            self._show(labels, names, result["model_id"], result["model_version"], result["provider"],
                       result["summary"])

    def _show(self, labels, names, model_id, version, provider, summary) -> None:
        confidences = [v.get("confidence") for v in summary.get("labels", {}).values() if v.get("confidence")]
        conf = f", confidence {min(confidences):.2f}" if confidences else ""
        source = f"AI: {model_id} {version} on {provider}{conf}"
        self.state.add_overlay(Overlay(f"AI {model_id}", "labels", labels, source, label_names=names))
        self.results.addItem(f"{model_id} {version} [{provider}]{conf}")

    def run_selected(self) -> None:
        item = self.models.currentItem()
        volume, key = self.state.volume, self.state.series_key
        if item is None or volume is None:
            return
        card = self.registry.get(item.data(Qt.UserRole))
        provider = self.provider.currentText()
        store = self.state.store
        series = store.indexed_series(key) if store is not None and key else None
        out = user_data_dir() / "results" / (key or "unsaved").replace("#", "_")

        def work(progress, cancelled):
            from viewer.dicom.seg import write_seg
            from viewer.inference.run import segment

            mask = segment(volume, card, provider=provider, progress=progress, cancelled=cancelled)
            path = write_seg(mask, series, out / f"seg-{card.id}-{card.version}.dcm") if series is not None else None
            return mask, path

        self.run_job(work, f"Running {card.name}", lambda result: self._done(card, result))

    def _done(self, card, result) -> None:
        mask, path = result
        summary = {"labels": {info.name: {"voxels": int((mask.labels.voxels == info.value).sum()),
                                          "confidence": mask.label_confidence(info.value)}
                              for info in mask.label_info}}
        if path is not None and self.state.store is not None and self.state.series_key:
            self.state.store.add_result(self.state.series_key, "seg", card.id, card.version, path, mask.provider, summary)
        names = {info.value: info.name for info in mask.label_info}
        self._show(mask.labels, names, card.id, card.version, mask.provider, summary)
