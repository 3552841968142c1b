"""AI results as data with provenance: every mask and classification names its model and version.

These are what analysis, rendering and the report consume; none of them knows how the model ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.volume import Volume


@dataclass(frozen=True)
class LabelInfo:
    value: int
    name: str
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    code: tuple[str, str, str] | None = None  # (value, scheme, meaning), e.g. SNOMED CT


@dataclass(frozen=True)
class ModelRef:
    id: str
    version: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name or self.id} {self.version}"

    @staticmethod
    def parts(model) -> tuple[str, str]:
        """(id, version) of a ModelRef, a card, a {"id", "version"} dict or an (id, version) pair;
        ("", "") for None. Stored rows and UI lists accept any of these."""
        if model is None:
            return "", ""
        if isinstance(model, dict):
            return str(model.get("id") or ""), str(model.get("version") or "")
        if isinstance(model, (tuple, list)):
            return str(model[0]), str(model[1])
        return str(model.id), str(model.version)


@dataclass(frozen=True)
class Mask:
    """A label volume on the study's grid with per-voxel confidence (max class probability)."""

    labels: Volume
    label_info: tuple[LabelInfo, ...]
    model: ModelRef
    confidence: Volume | None = None
    provider: str = ""

    def label_confidence(self, value: int) -> float | None:
        """Mean probability of the voxels given this label, the model's confidence in it."""
        if self.confidence is None:
            return None
        inside = self.labels.voxels == value
        return float(self.confidence.voxels[inside].mean()) if inside.any() else None


@dataclass(frozen=True)
class Classification:
    """Class probabilities for a volume or a crop around a point (LPS mm)."""

    model: ModelRef
    classes: tuple[LabelInfo, ...]
    probabilities: tuple[float, ...]
    point_lps: tuple[float, float, float] | None = None
    provider: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> LabelInfo:
        return self.classes[max(range(len(self.probabilities)), key=self.probabilities.__getitem__)]

    @property
    def confidence(self) -> float:
        return max(self.probabilities)


@dataclass(frozen=True)
class Heatmap:
    """Where a classifier looked: relevance in [0, 1] (1 = the map's maximum) on the model's input
    grid, which carries its own affine (the crop's position in LPS), so it overlays the study
    exactly without being resampled.

    `method` names what made the map ("Grad-CAM" or "Occlusion"); a reader must know whether
    gradients or perturbations are behind it. `note` says why a fallback was taken."""

    values: Volume
    model: ModelRef
    method: str
    target: LabelInfo
    probability: float
    layer: str = ""
    point_lps: tuple[float, float, float] | None = None
    provider: str = ""
    note: str = ""
    mass_inside: float | None = None  # share of the map's mass inside the finding, when the caller gave it

    @property
    def title(self) -> str:
        return f"{self.method}: {self.target.name} ({self.probability:.2f}) by {self.model}"

    @property
    def peak_lps(self) -> tuple[float, float, float]:
        k, j, i = np.unravel_index(int(np.argmax(self.values.voxels)), self.values.shape)
        return tuple(float(v) for v in self.values.index_to_lps([i, j, k]))
