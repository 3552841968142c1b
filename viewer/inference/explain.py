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
from viewer.inference.torch_twin import (TOLERANCE, TwinError, check_twin, head_after, model_layout, target_layer,
                                         torch_twin, with_layer_output)
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
            layer, module = target_layer(twin, card)
            fast = gradcam_on_onnx_activation(card, twin, layer, batch, target, session)
            if fast is not None:
                relevance, diff = fast
                note = (f"activation from ONNX Runtime, gradients through the torch twin's layers after it "
                        f"(onnx2torch; matches ONNX Runtime within {diff:.1e})")
            else:
                diff = check_twin(twin, batch, card, scores, probabilities_of)
                relevance = gradcam(twin, module, model_layout(batch, card), target, batch.shape[2:])
                note = f"torch twin (onnx2torch) matches ONNX Runtime within {diff:.1e}"
            method = "gradcam"
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


def gradcam(model, layer, inputs: np.ndarray, target: int, spatial_shape) -> np.ndarray:
    """Grad-CAM (captum) of `layer` of the torch `model` for class `target`, upsampled (linear)
    to `spatial_shape`, the model input's size."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, layer).attribute(torch.from_numpy(inputs), target=target, relu_attributions=True)
    if cam.dim() != len(spatial_shape) + 2:
        raise TwinError(f"the layer's output has {cam.dim() - 2} spatial axes, the input {len(spatial_shape)}")
    mode = "trilinear" if len(spatial_shape) == 3 else "bilinear"
    cam = LayerAttribution.interpolate(cam.detach(), tuple(spatial_shape), mode)
    return cam[0, 0].numpy()


_HEADS: dict[tuple, object] = {}


def gradcam_on_onnx_activation(card: ModelCard, twin, layer: str, batch: np.ndarray, target: int,
                               session: ModelSession):
    """(map, largest probability difference) from one ONNX Runtime pass that also yields the
    layer's activation, back-propagated through the twin's head only; None when the graph does not
    split there (then the whole twin is used)."""
    import torch

    key = (id(twin), layer)
    if key not in _HEADS:
        _HEADS[key] = head_after(twin, layer)
    head, layered = _HEADS[key], with_layer_output(card, layer, session.provider)
    if head is None or layered is None:
        return None
    onnx_session, activation_name = layered
    activation, scores = onnx_session.run([activation_name, session.output_name],
                                          {session.input.name: model_layout(batch, card)})
    with torch.no_grad():
        head_scores = head(torch.from_numpy(activation)).numpy()[0]
    diff = float(np.max(np.abs(probabilities_of(card, head_scores) - probabilities_of(card, scores[0]))))
    if not diff <= TOLERANCE:
        raise TwinError(f"model {card.id} {card.version}: the torch twin after {layer} differs from ONNX Runtime "
                        f"by {diff:.2g} in probability (tolerance {TOLERANCE:g})")
    return gradcam(head, head.entry, activation, target, batch.shape[2:]), diff


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
