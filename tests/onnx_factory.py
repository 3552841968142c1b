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


def export(model, example, folder, card: dict, dynamic=True, opset=17):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    axes = {0: "n"}
    if dynamic:
        axes.update({i: f"s{i}" for i in range(2, example.ndim)} if not getattr(model, "channels_last", False)
                    else {i: f"s{i}" for i in range(1, example.ndim - 1)})
    torch.onnx.export(model.eval(), example, str(path), input_names=["image"], output_names=["scores"],
                      dynamic_axes={"image": axes, "scores": axes}, opset_version=opset, dynamo=False)
    card = {"id": folder.name, "version": "0.1", "file": "model.onnx", "sha256": sha256_of(path),
            "intended_use": "test", "modality": ["CT"], "input": {"name": "image"}, "output": {"name": "scores"},
            **card}
    (folder / "card.json").write_text(json.dumps(card))
    return ModelCard.from_file(folder / "card.json")


class BlobNet(torch.nn.Module):
    """Classifier (blob, no blob) that looks for a bright blob anywhere in its input: a mean filter
    with a threshold, max-pooling, a second mean filter ('conv2', the Grad-CAM layer), global
    average pooling and a linear layer. The decisive feature is wherever the blob is, so an
    explanation's peak must lie on the blob."""

    def __init__(self, dims: int = 3):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        pool = torch.nn.MaxPool3d if dims == 3 else torch.nn.MaxPool2d
        self.conv1, self.relu1, self.pool = conv(1, 1, 3, padding=1), torch.nn.ReLU(), pool(2)
        self.conv2, self.relu2 = conv(1, 1, 3, padding=1), torch.nn.ReLU()
        self.fc = torch.nn.Linear(1, 2)
        with torch.no_grad():
            # Distinct weights: the exporter merges identical initialisers, which onnx2torch cannot map back.
            self.conv1.weight[:] = 1.0 / 3 ** dims
            self.conv2.weight[:] = 1.1 / 3 ** dims
            self.conv1.bias[:] = -0.5  # only voxels brighter than the middle of the window count
            self.conv2.bias[:] = 0.0
            self.fc.weight[:] = torch.tensor([[3000.0], [-3000.0]])
            self.fc.bias[:] = torch.tensor([-1.0, 1.0])

    def forward(self, x):
        f = self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))
        return self.fc(f.mean(dim=tuple(range(2, x.dim()))))
