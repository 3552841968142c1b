"""Explanations of a classifier's decision as heatmaps on the study: Grad-CAM (captum) on a
faithful torch twin of the ONNX model, or occlusion (captum, forward passes through ONNX Runtime)
for models that cannot be converted. The map lives on the model's input grid, whose affine holds
the crop's position, so it overlays the study exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np

from viewer.core.results import Heatmap
from viewer.core.volume import Volume
from viewer.inference.card import ModelCard
from viewer.inference.explain_quality import mass_inside
from viewer.inference.run import (InferenceError, as_batch, check_applicable, classifier_input,
                                  probabilities_of)
from viewer.inference.session import ModelSession, get_session
from viewer.inference.torch_twin import (TOLERANCE, TwinError, check_twin, head_after, layer_grid, model_layout,
                                         target_layer, torch_twin, with_layer_output)
from viewer.inference.transforms import output_fill

CAM_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}
CAM_METHODS = tuple(CAM_NAMES)
METHOD_NAMES = {**CAM_NAMES, "occlusion": "Occlusion"}


def explain(volume: Volume, card: ModelCard, point_lps=None, method: str | None = None, target: int | None = None,
            provider: str | None = None, session: ModelSession | None = None,
            cancelled: Callable[[], bool] | None = None, layer: str | None = None,
            finding: Callable[[np.ndarray], np.ndarray] | None = None) -> Heatmap:
    """Heatmap of why `card` gives class `target` (default: its top class) for the volume or the
    crop around `point_lps`. method: a class activation map (gradcam, hirescam, gradcam++,
    layercam), 'occlusion', or 'auto'/None: the card's choice (explain.method, with explain.cam
    naming the map), auto = a class activation map when a faithful twin exists, else occlusion,
    with the reason in `note`. `layer` overrides the card's explain.target_layer.

    `finding`: the lesion as a predicate on LPS points (explain_quality.sphere / in_mask); the
    share of the map's mass inside it goes into `mass_inside`, and the note says so when most of
    the map lies outside: then the map does not show that the model looked at the finding."""
    if card.task != "classification":
        raise InferenceError(f"model {card.id} is a {card.task} model; explanations are for classifiers")
    requested = (method or "").lower()  # the caller's choice; the card's explain.method is a family
    method = (requested or card.explain.get("method") or "auto").lower()
    if method not in ("auto", *METHOD_NAMES):
        raise InferenceError(f"unknown explanation method {method!r}; use {', '.join(METHOD_NAMES)} or auto")
    cam = requested if requested in CAM_NAMES else str(card.explain.get("cam", "gradcam")).lower()
    if cam not in CAM_NAMES:
        raise InferenceError(f"model {card.id}: explain.cam {cam!r} is not one of {', '.join(CAM_NAMES)}")
    check_applicable(card, volume)
    session = session or get_session(card, provider)
    pre = classifier_input(volume, card, point_lps)
    batch = as_batch(pre, card)
    scores = session.predict(batch)[0]
    probabilities = probabilities_of(card, scores)
    target = int(np.argmax(probabilities)) if target is None else int(target)
    if not 0 <= target < len(card.labels):
        raise InferenceError(f"model {card.id} has classes 0..{len(card.labels) - 1}; no class {target}")
    note, layer_name = "", ""
    if method != "occlusion":
        try:
            twin = torch_twin(card)
            layer_name, module = target_layer(twin, card, layer)
            grid = layer_grid(twin, layer_name, len(batch.shape) - 2)
            fine = fine_layer(twin, card) if layer is None else None
            fast = gradcam_on_onnx_activation(card, twin, layer_name, batch, target, session, cam, grid, fine)
            if fast is not None:
                relevance, diff = fast
                note = (f"activation from ONNX Runtime, gradients through the torch twin's layers after it "
                        f"(onnx2torch; matches ONNX Runtime within {diff:.1e})")
            else:
                diff = check_twin(twin, batch, card, scores, probabilities_of)
                relevance = gradcam(twin, module, model_layout(batch, card), target, batch.shape[2:], cam, grid,
                                    fine=fine and fine[1:])
                note = f"torch twin (onnx2torch) matches ONNX Runtime within {diff:.1e}"
            if fine:
                note += f"; times the same map at {fine[0]} (explain.fine_layer), which places it to a finer cell"
                layer_name = f"{layer_name} x {fine[0]}"
            if grid is None:
                note += "; layer geometry not known, cells assumed spread evenly over the input"
            method = cam
        except TwinError as exc:
            if method != "auto":
                raise InferenceError(f"{CAM_NAMES[cam]} is not possible: {exc}") from None
            method, note = "occlusion", f"{CAM_NAMES[cam]} not possible ({exc}); occlusion used instead"
    if method == "occlusion":
        relevance = occlusion(session, batch, target, card, cancelled)
    values = pre.with_voxels(_normalise(relevance).reshape(pre.shape).astype(np.float32), unit="1")
    point = tuple(float(v) for v in point_lps) if point_lps is not None else None
    heatmap = Heatmap(values, card.ref, METHOD_NAMES[method], card.labels[target], float(probabilities[target]),
                      layer_name, point, session.provider, note)
    return with_finding(heatmap, finding) if finding is not None else heatmap


MOSTLY_OUTSIDE = 0.5  # below this share of the map's mass inside the finding, the result says so


def with_finding(heatmap: Heatmap, finding: Callable[[np.ndarray], np.ndarray]) -> Heatmap:
    """The heatmap with the share of its mass inside the finding, and a warning in its note when
    most of it lies outside."""
    share = mass_inside(heatmap, finding)
    text = f"{share:.0%} of the map's mass lies inside the finding"
    if share < MOSTLY_OUTSIDE:
        text = (f"most of the map lies outside the finding ({share:.0%} inside): the classifier's evidence "
                f"is not shown to be the finding itself")
    note = f"{heatmap.note}; {text}" if heatmap.note else text
    return dataclasses.replace(heatmap, mass_inside=share, note=note)


def layer_gradients(model, layer, inputs: np.ndarray, target: int, known_activation: bool = False,
                    scores: list | None = None):
    """(activation, gradient of the target's score) of `layer`, each (1, C, *cells), from one
    forward and one backward pass (captum's compute_layer_gradients_and_eval, the primitive under
    its LayerGradCam); `layer` may be a list: then a list of pairs. The model's output of that same
    pass is appended to `scores` when given, so checking it against ONNX Runtime costs no extra
    pass. `known_activation` is kept for callers: the one pass yields every activation anyway."""
    import torch
    from captum._utils.gradient import compute_layer_gradients_and_eval

    def forward(x):
        out = model(x)
        if scores is not None:
            scores.append(out.detach())
        return out

    layers = layer if isinstance(layer, list) else [layer]
    gradients, activations = compute_layer_gradients_and_eval(forward, layers, torch.from_numpy(inputs),
                                                              target_ind=target)
    pairs = [(a[0].detach().numpy().astype(np.float64), g[0].detach().numpy().astype(np.float64))
             for a, g in zip(activations, gradients)]
    return pairs if isinstance(layer, list) else pairs[0]


def class_activation_map(activation: np.ndarray, gradient: np.ndarray, method: str = "gradcam") -> np.ndarray:
    """The layer-resolution map (*cells) from a layer's activation A and gradient g (1, C, *cells).

    gradcam:   ReLU(sum_c mean(g_c) A_c)            (Selvaraju et al. 2017; captum LayerGradCam)
    hirescam:  ReLU(sum_c g_c * A_c)                (Draelos & Carin 2020: cell by cell, so a cell
                                                     the score does not depend on gets nothing)
    gradcam++: ReLU(sum_c w_c A_c), w_c = sum(alpha * ReLU(g_c)), alpha = g^2 / (2 g^2 + sum(A) g^3)
               (Chattopadhay et al. 2018, the closed form for an exponential score)
    layercam:  ReLU(sum_c ReLU(g_c) * A_c)          (Jiang et al. 2021)
    captum has Grad-CAM only; the others are these one-line formulas on captum's gradients."""
    a, g = activation[0], gradient[0]
    cells = tuple(range(1, a.ndim))
    if method == "gradcam":
        cam = np.tensordot(g.mean(axis=cells), a, axes=1)
    elif method == "hirescam":
        cam = (g * a).sum(axis=0)
    elif method == "gradcam++":
        g2, g3 = g ** 2, g ** 3
        denominator = 2 * g2 + a.sum(axis=cells, keepdims=True) * g3
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=np.abs(denominator) > 1e-12)
        cam = np.tensordot((alpha * np.maximum(g, 0)).sum(axis=cells), a, axes=1)
    elif method == "layercam":
        cam = (np.maximum(g, 0) * a).sum(axis=0)
    else:
        raise InferenceError(f"unknown class activation map {method!r}; use one of {', '.join(CAM_METHODS)}")
    return np.maximum(cam, 0)


def upsample(cam: np.ndarray, spatial_shape, grid=None) -> np.ndarray:
    """The layer-resolution map onto the input grid, linearly, with cell o centred on input voxel
    scale * o + offset (`grid` = (scale, offset) per axis from torch_twin.layer_grid; None: cells
    evenly spread over the input as captum's LayerAttribution.interpolate assumes). Edges hold
    the nearest cell's value.

    Multilinear interpolation is separable, so it is done axis by axis with a small weight matrix
    each: the same values as scipy's map_coordinates(order=1, mode='nearest'), which computes every
    output voxel on its own and took a fifth of the whole map's time on a 32^3 crop."""
    spatial_shape = tuple(int(n) for n in spatial_shape)
    if cam.ndim != len(spatial_shape):
        raise TwinError(f"the layer's output has {cam.ndim} spatial axes, the input {len(spatial_shape)}")
    if grid is None:
        scale = np.array(spatial_shape, float) / np.array(cam.shape, float)
        grid = scale, (scale - 1) / 2
    scale, offset = (np.asarray(v, float) for v in grid)
    out = np.asarray(cam, np.float64)
    for a, n in enumerate(spatial_shape):
        cells = out.shape[a]
        position = np.clip((np.arange(n) - offset[a]) / scale[a], 0, cells - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, cells - 1)
        weights = np.zeros((n, cells))
        np.add.at(weights, (np.arange(n), low), 1 - (position - low))
        np.add.at(weights, (np.arange(n), high), position - low)
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [a])), 0, a)
    return out


def gradcam(model, layer, inputs: np.ndarray, target: int, spatial_shape, method: str = "gradcam",
            grid=None, known_activation: bool = False, fine=None, scores: list | None = None) -> np.ndarray:
    """Class activation map (`method`, see class_activation_map) of `layer` of the torch `model`
    for class `target`, on the model input's grid (`upsample`).

    `fine` = (module, grid) of an earlier layer with smaller cells: the map is the product of the
    two layers' maps, each scaled to its maximum (the multi-layer fusion of LayerCAM, Jiang et al.
    2021): the deep layer says which structure carries the class, the finer one where in that
    structure; chosen by the pointing game (bundled classifier: relu3 alone put the peak inside
    74/84 demo nodules, relu3 x relu2 82/84). With `known_activation`, the earliest of the layers
    is the one whose activation is `inputs`. `scores`: see layer_gradients."""
    if fine is None:
        activation, gradient = layer_gradients(model, layer, inputs, target, known_activation, scores)
        return upsample(class_activation_map(activation, gradient, method), spatial_shape, grid)
    fine_module, fine_grid = fine
    (fine_a, fine_g), (a, g) = layer_gradients(model, [fine_module, layer], inputs, target, known_activation,
                                               scores)
    coarse = _normalise(upsample(class_activation_map(a, g, method), spatial_shape, grid))
    return coarse * _normalise(upsample(class_activation_map(fine_a, fine_g, method), spatial_shape, fine_grid))


def fine_layer(twin, card: ModelCard):
    """(name, module, grid) of the card's explain.fine_layer (an earlier layer whose map refines
    the target layer's), or None when the card names none."""
    wanted = card.explain.get("fine_layer")
    if not wanted:
        return None
    if not isinstance(wanted, str):
        raise InferenceError(f"model {card.id}: explain.fine_layer must be a layer name (text), not {wanted!r}")
    name, module = target_layer(twin, card, wanted)
    return name, module, layer_grid(twin, name, len(card.axes) - 2)


_HEADS: dict[tuple, object] = {}


def gradcam_on_onnx_activation(card: ModelCard, twin, layer: str, batch: np.ndarray, target: int,
                               session: ModelSession, method: str = "gradcam", grid=None, fine=None):
    """(map, largest probability difference) from one ONNX Runtime pass that also yields the
    layer's activation, back-propagated through the twin's head only; None when the graph does not
    split there (then the whole twin is used). `fine` = (name, module, grid) of an earlier layer
    (see gradcam): the head then starts there and `layer` is found inside it."""
    import torch

    entry = fine[0] if fine else layer
    key = (id(twin), entry)
    if key not in _HEADS:
        _HEADS[key] = head_after(twin, entry)
    threads = session.session.get_session_options().intra_op_num_threads or None
    head, layered = _HEADS[key], with_layer_output(card, entry, session.provider, threads)
    inner = None
    if fine and head is not None:
        inner = dict(head.rest.named_modules()).get(layer)
        if inner is None:
            return None  # the target layer is not after the fine one: the whole twin is used
    if head is None or layered is None:
        return None
    onnx_session, activation_name = layered
    activation, scores = onnx_session.run([activation_name, session.output_name],
                                          {session.input.name: model_layout(batch, card)})
    head_scores: list = []
    with one_torch_thread():
        if fine:
            relevance = gradcam(head, inner, activation, target, batch.shape[2:], method, grid,
                                known_activation=True, fine=(head.entry, fine[2]), scores=head_scores)
        else:
            relevance = gradcam(head, head.entry, activation, target, batch.shape[2:], method, grid,
                                known_activation=True, scores=head_scores)
    diff = float(np.max(np.abs(probabilities_of(card, head_scores[0].numpy()[0]) - probabilities_of(card, scores[0]))))
    if not diff <= TOLERANCE:
        raise TwinError(f"model {card.id} {card.version}: the torch twin after {entry} differs from ONNX "
                        f"Runtime by {diff:.2g} in probability (tolerance {TOLERANCE:g})")
    return relevance, diff


@contextlib.contextmanager
def one_torch_thread():
    """torch on one thread inside: the head after an explained layer is a few small convolutions,
    and torch's OpenMP threads, which spin-wait between operations, cost more than they save next
    to ONNX Runtime's threads (measured on 2 cores: 10-40 ms against 1-3 ms single-threaded)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
