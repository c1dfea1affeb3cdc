"""``resnet20``, ``resnet56``: the CIFAR ResNets of He et al. 2016 ("Deep residual learning for
image recognition", section 4.2), depth 6n + 2.

A 3x3 stem with 16 channels, then three stages of n basic blocks with 16, 32 and 64 channels
(stride 2 at the start of stages 2 and 3), global average pooling and one linear layer.

Shortcuts: option B, a 1x1 conv + BatchNorm projection where a block changes shape (the paper's
CIFAR models use option A, zero-padding). Why B: every residual sum then joins two conv outputs,
a dependency Torch-Pruning's graph follows when channels are removed physically, whereas
option A's strided slicing and padding is not a layer it can cut. The cost is two 1x1 convs
(about 2.6k weights at width 1, 1% of ResNet-20). The width multiplier scales every stage.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.models.base import register_model, scaled


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection; the first conv may downsample."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # option B: project to the new shape
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, S, S) -> (B, c_out, S / stride, S / stride)."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            layers = []
            for j in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride=2 if i > 0 and j == 0 else 1))
                c_in = c_out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, classes) logits; shapes below for S = 32."""
        x = torch.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        x = self.layer1(x)                       # (B, 16, 32, 32)
        x = self.layer2(x)                       # (B, 32, 16, 16)
        x = self.layer3(x)                       # (B, 64, 8, 8)
        x = self.pool(x).flatten(1)              # (B, 64)
        return self.fc(x)                        # (B, classes)


@register_model("resnet20", min_image_size=4,
                description="ResNet-20 (He et al. 2016), CIFAR form: 3 stages x 3 basic blocks, "
                            "16-32-64 channels, projection shortcuts; width multiplier")
def resnet20(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return CifarResNet(20, in_channels, num_classes, width)


@register_model("resnet56", min_image_size=4,
                description="ResNet-56 (He et al. 2016), CIFAR form: 3 stages x 9 basic blocks, "
                            "16-32-64 channels, projection shortcuts; width multiplier")
def resnet56(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return CifarResNet(56, in_channels, num_classes, width)
