"""``mlp``: LeNet-300-100, the fully connected network of LeCun et al. 1998.

The classic benchmark of the pruning literature (Han et al. 2015, "Learning both Weights and
Connections"; Frankle & Carbin 2019, the lottery ticket hypothesis): the image is flattened and
goes through two hidden layers of 300 and 100 ReLU units. The width multiplier scales both.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.models.base import register_model, scaled


class LeNet300100(nn.Module):
    def __init__(self, in_features: int, num_classes: int, width: float = 1.0):
        super().__init__()
        h1, h2 = scaled(300, width), scaled(100, width)
        self.fc1 = nn.Linear(in_features, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, classes) logits."""
        x = x.flatten(1)                    # (B, C*H*W)
        x = torch.relu(self.fc1(x))         # (B, 300w)
        x = torch.relu(self.fc2(x))         # (B, 100w)
        return self.fc3(x)                  # (B, classes)


@register_model("mlp", description="LeNet-300-100 (LeCun et al. 1998): two hidden layers of "
                                   "300 and 100 units; width multiplier scales both")
def mlp(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return LeNet300100(in_channels * image_size * image_size, num_classes, width)
