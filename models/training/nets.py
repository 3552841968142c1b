"""The two small networks (pure torch, exportable to ONNX opset 17)."""

from __future__ import annotations

import torch
from torch import nn


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """Compact fully-convolutional 3-D U-Net; input sides must be divisible by 2**(len(ch)-1)."""

    def __init__(self, channels=(8, 16, 32, 64), n_classes: int = 3):
        super().__init__()
        self.down_factor = 2 ** (len(channels) - 1)
        self.enc = nn.ModuleList()
        cin = 1
        for c in channels:
            self.enc.append(block(cin, c))
            cin = c
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_hi, c_lo in zip(channels[::-1][:-1], channels[::-1][1:]):
            self.up.append(nn.ConvTranspose3d(c_hi, c_lo, 2, stride=2))
            self.dec.append(block(2 * c_lo, c_lo))
        self.head = nn.Conv3d(channels[0], n_classes, 1)

    def forward(self, x):
        skips = []
        for n, enc in enumerate(self.enc):
            x = enc(x)
            if n < len(self.enc) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


class NoduleClassifier(nn.Module):
    """Small 3-D CNN: features.conv1..conv4 (conv4 is the last conv, the Grad-CAM target), global
    average pooling, linear to 3 logits."""

    def __init__(self, n_classes: int = 3, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential()
        cin = 1
        for n, cout in enumerate((w, 2 * w, 4 * w, 4 * w), start=1):
            self.features.add_module(f"conv{n}", nn.Conv3d(cin, cout, 3, padding=1, bias=False))
            self.features.add_module(f"bn{n}", nn.BatchNorm3d(cout))
            self.features.add_module(f"relu{n}", nn.ReLU())
            if n < 4:
                self.features.add_module(f"pool{n}", nn.MaxPool3d(2))
            cin = cout
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))
