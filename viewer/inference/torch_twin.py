"""A PyTorch twin of an ONNX model (onnx2torch), for gradient methods such as Grad-CAM.

ONNX Runtime has no gradients, so Grad-CAM needs the same network in torch. The twin is only
trusted after it reproduces ONNX Runtime's output on the very input being explained
(`check_twin`); otherwise the caller falls back to occlusion, which needs forward passes only.
"""

from __future__ import annotations

import sys
import types

import numpy as np

from viewer.core.errors import RadSightError
from viewer.inference.card import ModelCard

TOLERANCE = 1e-3  # largest |twin - ONNX Runtime| on the class probabilities that still counts as the same model


class TwinError(RadSightError):
    """No faithful torch twin: conversion failed or the twin disagrees with ONNX Runtime."""


def _torchvision_stand_in() -> None:
    """onnx2torch imports torchvision for its NMS and RoIAlign converters only. Where the only
    torchvision available does not load against the installed torch (a CUDA build next to the CPU
    torch, ENVIRONMENT.md), a stand-in with those two ops raising a clear error lets every other
    converter work."""
    try:
        import torchvision  # noqa: F401
        return
    except Exception:  # a broken torchvision raises RuntimeError or ImportError while registering ops
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

    def unavailable(*_args, **_kwargs):
        raise TwinError("this model uses NonMaxSuppression or RoiAlign, which need a working torchvision")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable
    package = types.ModuleType("torchvision")
    package.ops = ops
    package.__radsight_stand_in__ = True
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = package, ops


_TWINS: dict[tuple[str, str], object] = {}


def torch_twin(card: ModelCard):
    """The ONNX graph converted to a torch.nn.Module in eval mode (cached per file and hash)."""
    key = (str(card.path), card.sha256)
    if key not in _TWINS:
        _torchvision_stand_in()
        import onnx
        import onnx2torch

        card.verify_file()
        try:
            model = onnx2torch.convert(onnx.load(str(card.path)))
        except Exception as exc:  # onnx2torch raises NotImplementedError, KeyError, ... for unsupported graphs
            raise TwinError(f"model {card.id} {card.version}: onnx2torch cannot convert it "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from None
        _TWINS[key] = model.eval()
    return _TWINS[key]


def run_twin(twin, batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """(N, C, *spatial) in, the model's raw output (N, K) out, in the card's axis order."""
    import torch

    x = np.moveaxis(batch, 1, -1) if card.axes.endswith("C") else batch
    with torch.no_grad():
        return twin(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def check_twin(twin, batch: np.ndarray, card: ModelCard, onnx_scores: np.ndarray, probabilities) -> float:
    """Largest probability difference between the twin and ONNX Runtime on `batch`; raises
    TwinError above TOLERANCE, so an unfaithful twin never explains anything."""
    twin_probabilities = probabilities(card, run_twin(twin, batch, card)[0])
    onnx_probabilities = probabilities(card, onnx_scores)
    diff = float(np.max(np.abs(twin_probabilities - onnx_probabilities)))
    if not diff <= TOLERANCE:
        raise TwinError(f"model {card.id} {card.version}: the torch twin differs from ONNX Runtime by {diff:.2g} "
                        f"in probability (tolerance {TOLERANCE:g})")
    return diff


def target_layer(twin, card: ModelCard):
    """(name, module) of the layer to explain: the card's `explain.target_layer` (ONNX node name,
    as onnx2torch names modules after nodes) or else the last convolution of the graph."""
    import torch

    modules = dict(twin.named_modules())
    wanted = card.explain.get("target_layer")
    if wanted:
        name = wanted.lstrip("/")
        if name not in modules:
            raise TwinError(f"model {card.id}: explain.target_layer '{wanted}' is not a layer of the model")
        return name, modules[name]
    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    last = None
    for node in twin.graph.nodes:  # graph order, so the last convolution is the deepest one
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), convs):
            last = str(node.target)
    if last is None:
        raise TwinError(f"model {card.id} has no convolution layer for Grad-CAM")
    return last, modules[last]
