"""ONNX models made in the tests (torch export), each with a card: known behaviour, any convention."""

from __future__ import annotations

import json

import torch

from viewer.inference.card import ModelCard, sha256_of

class Threshold3D(torch.nn.Module):
    """Channel 1 - channel 0 = x - 0.5: argmax is 1 where the windowed input is above 0.5."""

    def __init__(self, channels_last: bool = False, probabilities: bool = False, dims: int = 3):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(1, 2, 1)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([-10.0, 10.0]).reshape((2, 1) + (1,) * dims)
            self.conv.bias[:] = torch.tensor([5.0, -5.0])
        self.channels_last, self.probabilities = channels_last, probabilities

    def forward(self, x):
        if self.channels_last:  # (N, D, H, W, C) in and out; explicit permutes export cleanly
            x = x.permute(0, 4, 1, 2, 3)
        y = self.conv(x)
        if self.probabilities:
            y = torch.softmax(y, dim=1)
        return y.permute(0, 2, 3, 4, 1) if self.channels_last else y


class CentreBrightness(torch.nn.Module):
    """Classifier: logits (bright, dark) from the mean of the central 4^3 voxels of the crop."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.features.weight[:] = 1.0 / 27
            self.features.bias[:] = 0.0

    def forward(self, x):
        f = self.features(x)
        n = f.shape[-1]
        c = f[..., n // 2 - 2:n // 2 + 2, n // 2 - 2:n // 2 + 2, n // 2 - 2:n // 2 + 2].mean(dim=(2, 3, 4))
        return torch.cat([(c - 0.5) * 20, (0.5 - c) * 20], dim=1)


def export(model, example, folder, card: dict, dynamic=True):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    axes = {0: "n"}
    if dynamic:
        axes.update({i: f"s{i}" for i in range(2, example.ndim)} if not getattr(model, "channels_last", False)
                    else {i: f"s{i}" for i in range(1, example.ndim - 1)})
    torch.onnx.export(model.eval(), example, str(path), input_names=["image"], output_names=["scores"],
                      dynamic_axes={"image": axes, "scores": axes}, opset_version=17, dynamo=False)
    card = {"id": folder.name, "version": "0.1", "file": "model.onnx", "sha256": sha256_of(path),
            "intended_use": "test", "modality": ["CT"], "input": {"name": "image"}, "output": {"name": "scores"},
            **card}
    (folder / "card.json").write_text(json.dumps(card))
    return ModelCard.from_file(folder / "card.json")
