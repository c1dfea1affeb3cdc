"""``small_cnn``: a small conv-BN-ReLU network, the fast default for the 8x8 digits.

Four 3x3 conv-BatchNorm-ReLU layers (two of them stride 2) and a two-layer classifier: the
smallest shape that still gives pruning something to choose between (four prunable layers
between the stem and the classifier, conv and linear alike, as in the VGG/LeNet settings of the
pruning papers) while a whole 12-epoch run on digits takes a few seconds on two CPU cores.
Larger inputs are average-pooled to 2x2 before the classifier, so one set of weights shapes
serves 8-32 px.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.models.base import register_model, scaled


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias: BatchNorm has one), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        c1, c2, c3, c4, hidden = (scaled(c, width) for c in (32, 32, 64, 64, 128))
        self.stem = conv_bn_relu(in_channels, c1)
        self.conv2 = conv_bn_relu(c1, c2, stride=2)
        self.conv3 = conv_bn_relu(c2, c3)
        self.conv4 = conv_bn_relu(c3, c4, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(c4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, classes) logits; shapes below for S = 8."""
        x = self.stem(x)                    # (B, c1, 8, 8)
        x = self.conv2(x)                   # (B, c2, 4, 4)
        x = self.conv3(x)                   # (B, c3, 4, 4)
        x = self.conv4(x)                   # (B, c4, 2, 2)
        x = self.pool(x).flatten(1)         # (B, c4 * 4); a no-op pool for S <= 8
        x = torch.relu(self.fc1(x))         # (B, hidden)
        return self.fc2(x)                  # (B, classes)


@register_model("small_cnn", min_image_size=4,
                description="Small CNN: 4 conv-BN-ReLU layers + 2 linear (about 0.1M weights); "
                            "the fast default for digits")
def small_cnn(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return SmallCNN(in_channels, num_classes, width)
