"""The AI panel: models that apply to the open study, run in the background, results as overlays.

Every result shows its model, version, the provider it ran on and its confidence; the reader
decides what to do with it (decision support). Results are stored, so re-opening a study shows
them without running the model again. A classifier runs on the crop around the crosshair and
comes with its explanation map; clicking the finding shows its map and goes to its point.
Each run is first checked against its model card's validated domain (viewer.inference.domain); a
result from outside it is listed as "OUTSIDE THE VALIDATED DOMAIN" in red, with the reasons in
its tooltip and under the list, and the check is stored with the result.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from viewer.core.paths import user_data_dir
from viewer.inference.domain import OUTSIDE
from viewer.qt.state import Overlay, ViewerState


class AIPanel(QWidget):
    def __init__(self, state: ViewerState, run_job, parent=None):
        super().__init__(parent)
        self.state, self.run_job = state, run_job
        self.registry = None
        self.models = QListWidget()
        self.provider = QComboBox()
        self.provider.addItems(["auto", "cpu", "cuda"])
        self.method = QComboBox()
        self.method.addItems(["auto", "gradcam", "occlusion"])
        self.method.setToolTip("How classifier decisions are explained: Grad-CAM when the model converts "
                               "faithfully to torch, else occlusion (auto)")
        self.run_button = QPushButton("Run selected model")
        self.run_button.setToolTip("Segmentation: the whole study. Classifier: the crop around the crosshair, "
                                   "with an explanation map")
        self.run_button.clicked.connect(self.run_selected)
        self.results = QListWidget()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Provider"))
        row.addWidget(self.provider)
        row.addWidget(QLabel("Explain"))
        row.addWidget(self.method)
        row.addWidget(self.run_button)
        self.results.itemClicked.connect(self.show_finding)
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
        for card in [c for c in self.registry.for_modality(modality) if c.task in ("segmentation", "classification")]:
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

        from viewer.dicom.pmap import read_parametric_map

        # Idempotent: AI overlays shown before are replaced, not doubled.
        self.state.overlays = [o for o in self.state.overlays if not o.source.startswith("AI: ")]
        for result in store.results(key):
            if result["kind"] not in ("seg", "heatmap") or not Path(result["path"]).exists():
                continue
            try:
                if result["kind"] == "seg":
                    labels, names = read_seg_labels(result["path"], volume)
                else:
                    values, _ = read_parametric_map(result["path"], volume)
            except Exception as exc:  # a damaged result file must not break the viewer
                self.status.setText(f"{result['path']}: cannot be shown ({exc})")
                continue
            if result["kind"] == "seg":
                self._show(labels, names, result["model_id"], result["model_version"], result["provider"],
                           result["summary"])
            else:
                self._show_heatmap(values, result["summary"], result["model_id"], result["model_version"],
                                   result["provider"])

    def _show(self, labels, names, model_id, version, provider, summary) -> None:
        confidences = [v.get("confidence") for v in summary.get("labels", {}).values() if v.get("confidence")]
        conf = f", confidence {min(confidences):.2f}" if confidences else ""
        source = f"AI: {model_id} {version} on {provider}{conf}{self._outside(summary)}"
        self.state.add_overlay(Overlay(f"AI {model_id}", "labels", labels, source, label_names=names))
        item = QListWidgetItem(f"{model_id} {version} [{provider}]{conf}")
        self._mark_domain(item, summary)
        self.results.addItem(item)

    @staticmethod
    def _outside(summary: dict) -> str:
        """" - OUTSIDE THE VALIDATED DOMAIN" for a result whose stored input check says so."""
        domain = summary.get("domain")
        return f" - {OUTSIDE.upper()}" if domain and not domain.get("within") else ""

    def _mark_domain(self, item: QListWidgetItem, summary: dict) -> None:
        """A result from outside its model's validated domain: flagged in its text, red, reasons in
        its tooltip and under the list."""
        flag = self._outside(summary)
        if not flag:
            return
        reasons = " ".join(summary["domain"].get("reasons") or [])
        item.setText(item.text() + flag)
        item.setForeground(QBrush(QColor("#b00020")))
        item.setToolTip("\n".join(t for t in (item.toolTip(), f"{OUTSIDE.capitalize()}: {reasons}") if t))
        self.status.setText(f"AI results {OUTSIDE}: {reasons}")

    def _show_heatmap(self, values, summary: dict, model_id, version, provider) -> None:
        """The map as a heatmap overlay named after its finding, listed as that finding; only the
        newest map is visible, so each finding's map is seen on its own."""
        point = summary.get("point_lps_mm")
        where = f" at ({', '.join(f'{v:.0f}' for v in point)})" if point else ""
        name = f"{summary['method']}: {summary['target']}{where}"
        layer = f" at {summary['layer']}" if summary.get("layer") else ""
        source = (f"AI: {model_id} {version} on {provider}; {summary['target']} p={summary['probability']:.2f}; "
                  f"map by {summary['method']}{layer}")
        for overlay in self.state.overlays:
            if overlay.kind == "heatmap":
                overlay.visible = False
        self.state.add_overlay(Overlay(name, "heatmap", values, source, opacity=0.6, colormap="inferno", threshold=0.2))
        item = QListWidgetItem(f"{model_id} {version} [{provider}]: {summary['target']} "
                               f"(confidence {summary['probability']:.2f}){where} - {summary['method']} map")
        item.setToolTip(f"{source}\n{summary.get('note', '')}\nClick to show this finding's map")
        item.setData(Qt.UserRole, {"overlay": name, "point": point})
        self._mark_domain(item, summary)
        self.results.addItem(item)

    def show_finding(self, item: QListWidgetItem) -> None:
        """Show the map of the clicked classification alone and go to the point it classified."""
        finding = item.data(Qt.UserRole)
        if not finding:
            return
        for overlay in self.state.overlays:
            if overlay.kind == "heatmap":
                overlay.visible = overlay.name == finding["overlay"]
        self.state.overlays_changed.emit()
        if finding["point"] is not None:
            self.state.set_crosshair(finding["point"])

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
        if card.task == "classification":
            self._explain(card, volume, series, out, provider)
            return

        def work(progress, cancelled):
            from viewer.dicom.seg import write_seg
            from viewer.inference.run import segment

            from viewer.inference.domain import check_study

            check = check_study([card], volume)[card.id]
            mask = segment(volume, card, provider=provider, progress=progress, cancelled=cancelled)
            outside = None if check.within else " ".join(check.reasons)
            path = (write_seg(mask, series, out / f"seg-{card.id}-{card.version}.dcm", outside_domain=outside)
                    if series is not None else None)
            return mask, path, check

        self.run_job(work, f"Running {card.name}", lambda result: self._done(card, result))

    def _explain(self, card, volume, series, out, provider) -> None:
        point = tuple(float(v) for v in self.state.crosshair)
        method = self.method.currentText()

        def work(progress, cancelled):
            from viewer.inference.domain import check_study
            from viewer.inference.explain import explain
            from viewer.inference.explain_study import heatmap_summary, save_heatmap

            check = check_study([card], volume)[card.id]
            heatmap = explain(volume, card, point, method=method, provider=provider, cancelled=cancelled)
            summary = save_heatmap(heatmap, series, out) if series is not None else heatmap_summary(heatmap)
            return heatmap, {**summary, "domain": check.to_json()}

        self.run_job(work, f"Classifying and explaining with {card.name}", lambda result: self._explained(card, result))

    def _explained(self, card, result) -> None:
        from viewer.inference.explain_study import same_place

        heatmap, summary = result
        path = summary.pop("path", None)
        if path is not None and self.state.store is not None and self.state.series_key:
            self.state.store.add_result(self.state.series_key, "heatmap", card.id, card.version, path,
                                        heatmap.provider, summary, replaces=same_place(summary))
        self._show_heatmap(heatmap.values, summary, card.id, card.version, heatmap.provider)
        if heatmap.note:
            self.status.setText(heatmap.note)

    def _done(self, card, result) -> None:
        mask, path, check = result
        summary = {"labels": {info.name: {"voxels": int((mask.labels.voxels == info.value).sum()),
                                          "confidence": mask.label_confidence(info.value)}
                              for info in mask.label_info},
                   "domain": check.to_json()}
        if path is not None and self.state.store is not None and self.state.series_key:
            self.state.store.add_result(self.state.series_key, "seg", card.id, card.version, path, mask.provider, summary)
        names = {info.value: info.name for info in mask.label_info}
        self._show(mask.labels, names, card.id, card.version, mask.provider, summary)
