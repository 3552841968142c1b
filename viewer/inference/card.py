"""Model cards: the declarative description of an ONNX model that RadSight runs.

A card is JSON or YAML beside `model.onnx` (DESIGN.md "Model cards"). It holds no executable
expressions: preprocessing is a list of transforms from a fixed vocabulary, checked here, so a
card from a stranger can only ask for what RadSight already knows how to do. `ModelCard.from_file`
checks everything and names the file and field that is wrong.

`training_data` and `validated_on` say what the model has seen and where it was measured; the
run-time input check (viewer/inference/domain.py) compares each study with them, so a result
outside that domain is marked as such instead of being presented like any other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.core.results import LabelInfo, ModelRef

TASKS = ("segmentation", "classification", "detection")
AXES = ("NCDHW", "NDHWC", "NCHW", "NHWC")
OUTPUT_KINDS = ("logits", "probabilities")
BLENDINGS = ("gaussian", "constant")
EXPLAIN_METHODS = ("auto", "gradcam", "occlusion")
# name -> (required parameters, optional parameters)
TRANSFORMS: dict[str, tuple[set[str], set[str]]] = {
    "resample": ({"spacing_mm"}, set()),
    "reorient": (set(), {"to"}),
    "window": ({"low", "high"}, {"out_low", "out_high"}),
    "zscore": (set(), {"mean", "std", "mask_above"}),
    "crop_pad": ({"size"}, {"fill"}),
}
TRAINING_KINDS = ("synthetic", "real")
HU_REGIONS = ("air", "lung", "soft_tissue")


class ModelCardError(RadSightError):
    """A card that cannot be used; the message names the file and the field."""


def _fail(where: str, message: str):
    raise ModelCardError(f"{where}: {message}")


def _range(value, where: str, name: str, positive: bool = False) -> tuple[float, float]:
    """[low, high] of finite numbers, low <= high."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            or value[0] > value[1] or (positive and value[0] <= 0)):
        _fail(where, f"{name} must be [low, high] with low <= high{' (mm, > 0)' if positive else ''}, got {value!r}")
    return float(value[0]), float(value[1])


def _text(data: dict, key: str, where: str, prefix: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"{prefix}.{key} must be non-empty text, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainingData:
    """The card's `training_data`: the images the model learned from, as ranges the input check
    can compare a study with. `hu` holds, per region (air outside the body, aerated lung, soft
    tissue), the range of the region's median HU over the training images; `noise_hu` the range
    of their noise (robust standard deviation in HU, as viewer.inference.domain measures it)."""

    kind: str  # "synthetic" or "real"
    source: str
    scanners: tuple[tuple[str, str], ...]  # (Manufacturer (0008,0070), Manufacturer's Model Name (0008,1090))
    kernels: tuple[str, ...]  # Convolution Kernel (0018,1210)
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: tuple[float, float]
    hu: dict[str, tuple[float, float]]
    noise_hu: tuple[float, float]
    how_measured: str = ""  # how the HU and noise ranges were obtained

    KEYS = ("kind", "source", "scanners", "kernels", "pixel_spacing_mm", "slice_thickness_mm", "hu", "noise_hu",
            "how_measured")

    @classmethod
    def from_dict(cls, data, where: str) -> "TrainingData":
        if not isinstance(data, dict):
            _fail(where, "training_data must be a mapping")
        if unknown := sorted(set(data) - set(cls.KEYS)):
            _fail(where, f"training_data has unknown field(s) {', '.join(unknown)}; known: {', '.join(cls.KEYS)}")
        kind = data.get("kind")
        if kind not in TRAINING_KINDS:
            _fail(where, f"training_data.kind {kind!r} is not one of {', '.join(TRAINING_KINDS)}")
        scanners = data.get("scanners")
        if not isinstance(scanners, list) or not scanners or not all(
                isinstance(s, dict) and isinstance(s.get("manufacturer"), str) and isinstance(s.get("model"), str)
                for s in scanners):
            _fail(where, "training_data.scanners must list {manufacturer, model} of each scanner trained on")
        kernels = data.get("kernels")
        if not isinstance(kernels, list) or not kernels or not all(isinstance(k, str) and k.strip() for k in kernels):
            _fail(where, "training_data.kernels must list the convolution kernels (0018,1210) trained on")
        hu = data.get("hu")
        if not isinstance(hu, dict) or set(hu) != set(HU_REGIONS):
            _fail(where, f"training_data.hu must give [low, high] for exactly {', '.join(HU_REGIONS)}; "
                         f"got {sorted(hu) if isinstance(hu, dict) else hu!r}")
        return cls(kind=kind, source=_text(data, "source", where, "training_data"),
                   scanners=tuple((s["manufacturer"], s["model"]) for s in scanners),
                   kernels=tuple(kernels),
                   pixel_spacing_mm=_range(data.get("pixel_spacing_mm"), where, "training_data.pixel_spacing_mm", True),
                   slice_thickness_mm=_range(data.get("slice_thickness_mm"), where,
                                             "training_data.slice_thickness_mm", True),
                   hu={r: _range(hu[r], where, f"training_data.hu.{r}") for r in HU_REGIONS},
                   noise_hu=_range(data.get("noise_hu"), where, "training_data.noise_hu"),
                   how_measured=str(data.get("how_measured") or ""))

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": self.source,
                "scanners": [{"manufacturer": m, "model": n} for m, n in self.scanners],
                "kernels": list(self.kernels), "pixel_spacing_mm": list(self.pixel_spacing_mm),
                "slice_thickness_mm": list(self.slice_thickness_mm),
                "hu": {k: list(v) for k, v in self.hu.items()}, "noise_hu": list(self.noise_hu),
                "how_measured": self.how_measured}


@dataclass(frozen=True)
class Validation:
    """One entry of the card's `validated_on`: a data set the model was measured on, when, and
    the figures (name -> number or text such as "36/46")."""

    data: str
    kind: str  # "synthetic" or "real"
    date: dt.date
    figures: dict[str, float | str]

    @classmethod
    def from_dict(cls, data, where: str) -> "Validation":
        if not isinstance(data, dict):
            _fail(where, "must be a mapping with data, kind, date and figures")
        kind = data.get("kind")
        if kind not in TRAINING_KINDS:
            _fail(where, f"kind {kind!r} is not one of {', '.join(TRAINING_KINDS)}")
        try:
            date = dt.date.fromisoformat(str(data.get("date")))
        except ValueError:
            _fail(where, f"date {data.get('date')!r} is not a YYYY-MM-DD date")
        figures = data.get("figures")
        if not isinstance(figures, dict) or not figures or not all(
                isinstance(k, str) and isinstance(v, (int, float, str)) and not isinstance(v, bool)
                for k, v in figures.items()):
            _fail(where, "figures must map each figure's name to a number or text")
        return cls(_text(data, "data", where, "validated_on[]"), kind, date, dict(figures))

    def to_json(self) -> dict:
        return {"data": self.data, "kind": self.kind, "date": self.date.isoformat(), "figures": dict(self.figures)}


@dataclass(frozen=True)
class ModelCard:
    id: str
    version: str
    name: str
    task: str
    path: Path  # the .onnx file
    sha256: str
    intended_use: str
    limitations: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    input_name: str | None
    axes: str
    channels: int
    spatial_size: tuple[int, ...] | None  # fixed spatial input size (model order), None if dynamic
    preprocessing: tuple[dict, ...]
    patch_size: tuple[int, ...] | None
    overlap: float
    blending: str
    batch_size: int
    output_name: str | None
    output_kind: str
    activation: str
    labels: tuple[LabelInfo, ...]
    crop_mm: tuple[float, ...] | None = None  # classification around a point: crop size in mm
    explain: dict = field(default_factory=dict)
    card_path: Path | None = None
    training_data: TrainingData | None = None  # None: the card does not say; the input check says so
    validated_on: tuple[Validation, ...] = ()

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.id, self.version, self.name)

    @property
    def spatial_dims(self) -> int:
        return len(self.axes) - 2

    @classmethod
    def from_file(cls, path: Path | str) -> "ModelCard":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ModelCardError(f"{path}: cannot be read ({exc.strerror})") from None
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:
            raise ModelCardError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data, card_path: Path) -> "ModelCard":
        where = str(card_path)

        def fail(message: str):
            raise ModelCardError(f"{where}: {message}")

        if not isinstance(data, dict):
            fail("a card is a mapping of fields")

        def get(key, kind, default=...):
            value = data.get(key, default) if default is not ... else data.get(key)
            if value is ... or value is None and default is ...:
                fail(f"missing field '{key}'")
            if value is not None and not isinstance(value, kind):
                fail(f"field '{key}' must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
            return value

        task = get("task", str)
        if task not in TASKS:
            fail(f"task '{task}' is not one of {', '.join(TASKS)}")
        file_name = get("file", str, "model.onnx")
        model_path = (card_path.parent / file_name).resolve()
        inp = get("input", dict)
        axes = inp.get("axes", "NCDHW")
        if axes not in AXES:
            fail(f"input.axes '{axes}' is not one of {', '.join(AXES)}")
        spatial = inp.get("spatial_size")
        if spatial is not None and (len(spatial) != len(axes) - 2 or not all(isinstance(v, int) and v > 0 for v in spatial)):
            fail(f"input.spatial_size {spatial} must list {len(axes) - 2} positive integers")
        steps = []
        for n, step in enumerate(get("preprocessing", list, [])):
            if not isinstance(step, dict) or "name" not in step:
                fail(f"preprocessing[{n}] must be a mapping with a 'name'")
            name = step["name"]
            if name not in TRANSFORMS:
                fail(f"preprocessing[{n}]: unknown transform '{name}'; known: {', '.join(TRANSFORMS)}")
            required, optional = TRANSFORMS[name]
            params = set(step) - {"name"}
            if missing := required - params:
                fail(f"preprocessing[{n}] '{name}' needs {', '.join(sorted(missing))}")
            if extra := params - required - optional:
                fail(f"preprocessing[{n}] '{name}' does not take {', '.join(sorted(extra))}")
            steps.append(dict(step))
        inference = get("inference", dict, {})
        patch = inference.get("patch_size")
        if patch is not None and len(patch) != len(axes) - 2:
            fail(f"inference.patch_size {patch} must have {len(axes) - 2} values")
        overlap = float(inference.get("overlap", 0.25))
        if not 0 <= overlap < 1:
            fail(f"inference.overlap {overlap} must be in [0, 1)")
        blending = inference.get("blending", "gaussian")
        if blending not in BLENDINGS:
            fail(f"inference.blending '{blending}' is not one of {', '.join(BLENDINGS)}")
        out = get("output", dict)
        kind = out.get("kind", "logits")
        if kind not in OUTPUT_KINDS:
            fail(f"output.kind '{kind}' is not one of {', '.join(OUTPUT_KINDS)}")
        activation = out.get("activation", "softmax" if kind == "logits" else "none")
        if activation not in ("softmax", "sigmoid", "none"):
            fail(f"output.activation '{activation}' must be softmax, sigmoid or none")
        labels = []
        for n, label in enumerate(out.get("labels", [])):
            try:
                code = label.get("code")
                labels.append(LabelInfo(int(label["value"]), str(label["name"]),
                                        tuple(float(c) for c in label.get("color", (1, 0, 0))),
                                        (str(code["value"]), str(code["scheme"]), str(code["meaning"])) if code else None))
            except (KeyError, TypeError, ValueError) as exc:
                fail(f"output.labels[{n}] is incomplete ({exc}): needs value and name")
        if not labels:
            fail("output.labels lists no label or class")
        crop = get("crop_mm", list, None)
        if crop is not None and (len(crop) != len(axes) - 2 or not all(isinstance(v, (int, float)) and v > 0 for v in crop)):
            fail(f"crop_mm {crop} must list {len(axes) - 2} positive sizes in mm ({'z, ' if len(axes) == 5 else ''}y, x)")
        explain = get("explain", dict, {}) or {}
        if explain.get("method", "auto") not in EXPLAIN_METHODS:
            fail(f"explain.method '{explain.get('method')}' is not one of {', '.join(EXPLAIN_METHODS)}")
        for key in ("target_layer", "torch_module"):
            if key in explain and not isinstance(explain[key], str):
                fail(f"explain.{key} must be a layer name (text)")
        training_data = data.get("training_data")
        if training_data is not None:
            training_data = TrainingData.from_dict(training_data, where)
        validated_on = get("validated_on", list, [])
        validations = tuple(Validation.from_dict(v, f"{where}: validated_on[{n}]") for n, v in enumerate(validated_on))
        return ModelCard(
            id=get("id", str), version=str(get("version", (str, int, float))), name=get("name", str, get("id", str)),
            task=task, path=model_path, sha256=get("sha256", str).lower(),
            intended_use=get("intended_use", str), limitations=get("limitations", str, ""),
            modalities=tuple(get("modality", list, [])), body_parts=tuple(get("body_part", list, [])),
            input_name=inp.get("name"), axes=axes, channels=int(inp.get("channels", 1)),
            spatial_size=tuple(spatial) if spatial else None, preprocessing=tuple(steps),
            patch_size=tuple(int(v) for v in patch) if patch else None, overlap=overlap, blending=blending,
            batch_size=max(int(inference.get("batch_size", 1)), 1), output_name=out.get("name"),
            output_kind=kind, activation=activation, labels=tuple(labels),
            crop_mm=tuple(float(v) for v in crop) if crop else None, explain=dict(explain),
            card_path=card_path, training_data=training_data, validated_on=validations,
        )

    def verify_file(self) -> None:
        """Refuse a model file that is missing or whose sha256 differs from the card's."""
        if not self.path.is_file():
            raise ModelCardError(f"{self.card_path}: model file {self.path} does not exist")
        digest = sha256_of(self.path)
        if digest != self.sha256:
            raise ModelCardError(f"{self.path}: sha256 {digest[:12]}... does not match the card's "
                                 f"{self.sha256[:12]}... (file changed or card out of date); not loaded")

    def applies_to(self, modality: str | None) -> bool:
        return not self.modalities or (modality or "") in self.modalities

    def to_json(self) -> dict:
        return {"id": self.id, "version": self.version, "name": self.name, "task": self.task,
                "path": str(self.path), "intended_use": self.intended_use, "modality": list(self.modalities),
                "labels": [{"value": label.value, "name": label.name} for label in self.labels],
                "training_data": self.training_data.to_json() if self.training_data else None,
                "validated_on": [v.to_json() for v in self.validated_on]}

    def figure(self, name: str) -> tuple[float | str, Validation] | None:
        """The first `validated_on` figure called `name`, with the data set it was measured on."""
        for validation in self.validated_on:
            if name in validation.figures:
                return validation.figures[name], validation
        return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
