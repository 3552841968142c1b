"""Explanations of a classifier's decision as heatmaps on the study: Grad-CAM (captum) on a
faithful torch twin of the ONNX model, or occlusion (captum, forward passes through ONNX Runtime)
for models that cannot be converted. The map lives on the model's input grid, whose affine holds
the crop's position, so it overlays the study exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewer.core.results import Heatmap
from viewer.core.volume import Volume
from viewer.inference.card import ModelCard
from viewer.inference.run import (InferenceError, as_batch, check_applicable, classifier_input,
                                  probabilities_of)
from viewer.inference.session import ModelSession, get_session
from viewer.inference.torch_twin import TwinError, check_twin, target_layer, torch_twin
from viewer.inference.transforms import output_fill

METHOD_NAMES = {"gradcam": "Grad-CAM", "occlusion": "Occlusion"}


def explain(volume: Volume, card: ModelCard, point_lps=None, method: str | None = None, target: int | None = None,
            provider: str | None = None, session: ModelSession | None = None,
            cancelled: Callable[[], bool] | None = None) -> Heatmap:
    """Heatmap of why `card` gives class `target` (default: its top class) for the volume or the
    crop around `point_lps`. method: 'gradcam', 'occlusion' or 'auto'/None (the card's choice;
    auto = Grad-CAM when a faithful twin exists, else occlusion, with the reason in `note`)."""
    if card.task != "classification":
        raise InferenceError(f"model {card.id} is a {card.task} model; explanations are for classifiers")
    method = (method or card.explain.get("method") or "auto").lower()
    if method not in ("auto", *METHOD_NAMES):
        raise InferenceError(f"unknown explanation method {method!r}; use gradcam, occlusion or auto")
    check_applicable(card, volume)
    session = session or get_session(card, provider)
    pre = classifier_input(volume, card, point_lps)
    batch = as_batch(pre, card)
    scores = session.predict(batch)[0]
    probabilities = probabilities_of(card, scores)
    target = int(np.argmax(probabilities)) if target is None else int(target)
    if not 0 <= target < len(card.labels):
        raise InferenceError(f"model {card.id} has classes 0..{len(card.labels) - 1}; no class {target}")
    note, layer = "", ""
    if method in ("auto", "gradcam"):
        try:
            twin = torch_twin(card)
            diff = check_twin(twin, batch, card, scores, probabilities_of)
            layer, module = target_layer(twin, card)
            relevance = gradcam(twin, module, batch, target, card)
            method = "gradcam"
            note = f"torch twin (onnx2torch) matches ONNX Runtime within {diff:.1e}"
        except TwinError as exc:
            if method == "gradcam":
                raise InferenceError(f"Grad-CAM is not possible: {exc}") from None
            method, note = "occlusion", f"Grad-CAM not possible ({exc}); occlusion used instead"
    if method == "occlusion":
        relevance = occlusion(session, batch, target, card, cancelled)
    values = _normalise(relevance).reshape(pre.shape)
    point = tuple(float(v) for v in point_lps) if point_lps is not None else None
    return Heatmap(pre.with_voxels(values.astype(np.float32), unit="1"), card.ref, METHOD_NAMES[method],
                   card.labels[target], float(probabilities[target]), layer, point, session.provider, note)


def gradcam(twin, layer, batch: np.ndarray, target: int, card: ModelCard) -> np.ndarray:
    """Grad-CAM of `layer` for class `target`, upsampled to the input's spatial size (linear)."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    x = np.moveaxis(batch, 1, -1) if card.axes.endswith("C") else batch
    inputs = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    cam = LayerGradCam(twin, layer).attribute(inputs, target=target, relu_attributions=True)
    if cam.dim() != batch.ndim:
        raise TwinError(f"layer output has {cam.dim() - 2} spatial axes, the input {batch.ndim - 2}")
    mode = "trilinear" if batch.ndim == 5 else "bilinear"
    cam = LayerAttribution.interpolate(cam.detach(), tuple(batch.shape[2:]), mode)
    return cam[0, 0].numpy()


def occlusion(session: ModelSession, batch: np.ndarray, target: int, card: ModelCard,
              cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """Drop in the target's probability when a patch (a quarter of each side) is replaced by
    empty space (the preprocessed background value), patches sliding by half their size."""
    import torch
    from captum.attr import Occlusion

    def forward(x: torch.Tensor) -> torch.Tensor:
        if cancelled is not None and cancelled():
            raise InferenceError("cancelled")
        scores = session.predict(x.detach().numpy())
        return torch.from_numpy(np.stack([probabilities_of(card, s) for s in scores]))

    spatial = batch.shape[2:]
    window = tuple(max(1, n // 4) for n in spatial)
    strides = tuple(max(1, w // 2) for w in window)
    attribution = Occlusion(forward).attribute(
        torch.from_numpy(batch), sliding_window_shapes=(batch.shape[1],) + window,
        strides=(batch.shape[1],) + strides, baselines=output_fill(card.preprocessing), target=target,
        perturbations_per_eval=max(card.batch_size, 8))
    return np.clip(attribution[0].sum(dim=0).numpy(), 0, None)


def _normalise(relevance: np.ndarray) -> np.ndarray:
    """To [0, 1] by the map's maximum: Grad-CAM and occlusion scales mean nothing across cases."""
    top = float(np.max(relevance))
    return relevance / top if top > 0 else np.zeros_like(relevance)
