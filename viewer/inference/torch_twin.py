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


def model_layout(batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """(N, C, *spatial) to the model's own axis order (channels last where the card says so)."""
    return np.ascontiguousarray(np.moveaxis(batch, 1, -1) if card.axes.endswith("C") else batch, np.float32)


def run_twin(twin, batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """(N, C, *spatial) in, the model's raw output (N, K) out."""
    import torch

    with torch.no_grad():
        return twin(torch.from_numpy(model_layout(batch, card))).numpy()


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


def target_layer(twin, card: ModelCard, wanted: str | None = None):
    """(name, module) of the layer to explain: `wanted`, else the card's `explain.target_layer`
    (ONNX node name, as onnx2torch names modules after nodes), else the last convolution."""
    import torch

    modules = dict(twin.named_modules())
    wanted = wanted or card.explain.get("target_layer")
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


_SPATIALLY_NEUTRAL = ("BatchNorm", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Identity",
                      "Dropout", "InstanceNorm", "GroupNorm", "LayerNorm", "OnnxBinaryMathOperation", "OnnxCast")


def layer_grid(twin, layer_name: str, spatial_dims: int):
    """(scale, offset) per spatial axis such that cell o of the layer's output is centred on input
    voxel scale * o + offset, from the convolutions and poolings on the path from the input to the
    layer; None where that path holds a module whose effect on positions is not known here.

    captum's LayerAttribution.interpolate (F.interpolate, align_corners=False) assumes offset =
    (scale - 1) / 2, true for unpadded stride-2 pooling but not for padded strided convolutions
    or poolings (ResNet's 3x3 stride-2 with padding 1 centres cell o on voxel 2o, not 2o + 0.5):
    three such layers put the map 3.5 voxels off. Hence this bookkeeping, which no library offers."""
    import torch

    modules = dict(twin.named_modules())
    nodes = {str(n.target): n for n in twin.graph.nodes if n.op == "call_module"}
    node = nodes.get(layer_name)
    if node is None:
        return None
    path = []
    while node is not None and node.op != "placeholder":
        if node.op == "call_module":
            module = modules[str(node.target)]
            if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.MaxPool1d,
                                   torch.nn.MaxPool2d, torch.nn.MaxPool3d, torch.nn.AvgPool1d, torch.nn.AvgPool2d,
                                   torch.nn.AvgPool3d)):
                path.append(module)
            elif not any(type(module).__name__.startswith(name) for name in _SPATIALLY_NEUTRAL):
                return None
        elif node.op != "call_function" and node.op != "call_method":
            return None
        node = next((a for a in node.args if hasattr(a, "op")), None)
    scale, offset = np.ones(spatial_dims), np.zeros(spatial_dims)

    def per_axis(value, default):
        value = default if value is None else value
        return np.broadcast_to(np.asarray(value if not isinstance(value, str) else default, float), (spatial_dims,))

    for module in reversed(path):  # input side first
        if isinstance(getattr(module, "padding", 0), str):
            return None  # 'same'/'valid' padding strings: leave it to the fallback
        k = per_axis(module.kernel_size, 1)
        s = per_axis(module.stride, k)
        p = per_axis(module.padding, 0)
        d = per_axis(getattr(module, "dilation", 1), 1)
        offset = offset + scale * (d * (k - 1) / 2 - p)
        scale = scale * s
    return scale, offset


def head_after(twin, layer_name: str):
    """The part of the twin after `layer_name` as a module taking that layer's output, or None when
    later layers also read earlier activations (skip connections): then the whole twin must run.

    With the head alone, Grad-CAM takes the layer's activation from ONNX Runtime's own forward pass
    and back-propagates through the head only, so the explained activation is the deployed
    model's, and the cost is little more than one forward pass."""
    import torch
    from torch import fx

    nodes = list(twin.graph.nodes)
    start = next((n for n, node in enumerate(nodes) if node.op == "call_module" and str(node.target) == layer_name), None)
    if start is None:
        return None
    graph = fx.Graph()
    env = {nodes[start]: graph.placeholder("activation")}
    for node in nodes[start + 1:]:
        if node.op == "get_attr":
            env[node] = graph.node_copy(node, lambda d: env[d])
            continue
        if node.op == "placeholder" or any(d not in env and d.op != "get_attr" for d in node.all_input_nodes):
            if node.op == "output" or node.users:
                return None  # something after the layer reads the input or an earlier activation
            continue
        for d in node.all_input_nodes:
            if d not in env:  # a constant defined before the layer
                env[d] = graph.node_copy(d, lambda x: env[x])
        env[node] = graph.node_copy(node, lambda d: env[d])
    head = fx.GraphModule(twin, graph)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.entry = torch.nn.Identity()  # the layer Grad-CAM attributes to
            self.rest = head

        def forward(self, activation):
            return self.rest(self.entry(activation))

    return Head().eval()


def with_layer_output(card: ModelCard, layer_name: str, provider: str = "CPUExecutionProvider",
                      threads: int | None = None):
    """(session, output name): an ONNX Runtime session of the card's model on `provider` that also
    returns the named layer's output (cached); None when the layer is not a node of the graph.

    Its threads do not spin-wait after a run: torch works on the activation right after, and
    spinning threads took the cores from it (measured on 2 cores: the map cost 20x a forward pass
    with spinning, 2-3x without)."""
    key = (str(card.path), card.sha256, layer_name, provider, threads)
    if key not in _LAYER_SESSIONS:
        import onnx
        import onnxruntime as ort

        card.verify_file()
        model = onnx.load(str(card.path))
        node = next((n for n in model.graph.node if n.name.lstrip("/") == layer_name), None)
        if node is None:
            _LAYER_SESSIONS[key] = None
        else:
            model.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(model.SerializeToString(), options, providers=[provider])
            _LAYER_SESSIONS[key] = (session, node.output[0])
    return _LAYER_SESSIONS[key]


_LAYER_SESSIONS: dict[tuple, object] = {}
