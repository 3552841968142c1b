"""What an `analyses` contribution receives when `radsight analyze` runs it after the models.

An analysis is `run(context: AnalysisContext) -> dict`; the dict is merged into the analyze JSON
(lists such as "nodules" are extended, mappings such as "outputs" are updated, other keys set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from viewer.core.results import LabelInfo, Mask, ModelRef
from viewer.core.volume import Volume

Progress = Callable[[int, int, str], None]


@dataclass
class AnalysisContext:
    """The study being analysed and what this run has produced so far.

    volume: the analysed series (the one the models ran on); study_path: what the user named;
    prior_paths: older studies of the same patient given with --prior (oldest first as given);
    seg_paths: DICOM SEG files the models wrote in this run, keyed by model id; models: the
    models' summaries ({"id", "version", "provider", "labels"}); out_dir: where results go;
    provider: the ONNX Runtime provider asked for (None: automatic); store: the open local store
    or None; summary: the analyze JSON so far (read it, return additions instead of editing it);
    options: the user's choices for analyses (e.g. {"guideline": "lung-rads" | "fleischner"})."""

    volume: Volume
    study_path: Path
    out_dir: Path
    prior_paths: list[Path] = field(default_factory=list)
    seg_paths: dict[str, Path] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    provider: str | None = None
    progress: Progress | None = None
    store: object | None = None
    summary: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @cached_property
    def masks(self) -> list[Mask]:
        """The models' segmentations read back from their SEG files (on first use: reading a SEG
        takes a moment). Label values are the SEG's segment numbers, names its segment labels;
        the per-voxel confidence is not stored in a binary SEG, so `confidence` is None."""
        from viewer.dicom.seg import read_seg_labels

        masks = []
        versions = {m["id"]: (m.get("version", ""), m.get("provider", "")) for m in self.models}
        for model_id, path in self.seg_paths.items():
            labels, names = read_seg_labels(path, self.volume)
            version, provider = versions.get(model_id, ("", ""))
            info = tuple(LabelInfo(value, name) for value, name in sorted(names.items()))
            masks.append(Mask(labels, info, ModelRef(model_id, version), provider=provider))
        return masks

    def mask_with(self, label_name: str) -> tuple[Mask, int] | None:
        """The first model mask with a label of this name (case-insensitive) and its value."""
        for mask in self.masks:
            for info in mask.label_info:
                if info.name.lower() == label_name.lower():
                    return mask, info.value
        return None


def merge_result(summary: dict, addition: dict) -> None:
    """Merge an analysis's returned dict into the analyze JSON in place."""
    for key, value in addition.items():
        current = summary.get(key)
        if isinstance(current, list) and isinstance(value, list):
            current.extend(value)
        elif isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        else:
            summary[key] = value
