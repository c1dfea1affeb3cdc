"""``lenet5``: LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document
recognition"), with ReLU and max-pooling as in the pruning papers' re-implementations (Han et al.
2015; Lee et al. 2019, SNIP).

Two 5x5 conv layers (6 and 16 maps), each followed by 2x2 max-pooling, then 120-84-classes fully
connected. The first conv pads by 2 so 28 px MNIST keeps its size, as is usual; the second pads
only when the map is too small for an unpadded 5x5 window to leave at least 5x5 (8 and 16 px
inputs), so 28 and 32 px inputs see the classic unpadded layer.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.models.base import register_model, scaled


class LeNet5(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: float = 1.0):
        super().__init__()
        c1, c2, f1, f2 = (scaled(c, width) for c in (6, 16, 120, 84))
        pooled = image_size // 2                      # after conv1 (size kept) and pool1
        pad2 = 0 if pooled - 4 >= 5 else 2            # unpadded 5x5 only when >= 5x5 remains
        side = (pooled + 2 * pad2 - 4) // 2           # after conv2 and pool2
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=pad2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * side * side, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, classes) logits; shapes below for S = 28."""
        x = self.pool(torch.relu(self.conv1(x)))      # (B, 6, 14, 14)
        x = self.pool(torch.relu(self.conv2(x)))      # (B, 16, 5, 5)
        x = x.flatten(1)                              # (B, 400)
        x = torch.relu(self.fc1(x))                   # (B, 120)
        x = torch.relu(self.fc2(x))                   # (B, 84)
        return self.fc3(x)                            # (B, classes)


@register_model("lenet5", min_image_size=4,
                description="LeNet-5 (LeCun et al. 1998): two 5x5 conv + 120-84 linear; "
                            "width multiplier scales all")
def lenet5(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return LeNet5(in_channels, num_classes, image_size, width)
