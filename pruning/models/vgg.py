"""``vgg11``, ``vgg16``: VGG (Simonyan & Zisserman 2015) in the CIFAR form used by the pruning
literature (Liu et al. 2017, network slimming; Frankle & Carbin 2019; Lee et al. 2019, SNIP).

3x3 conv-BatchNorm-ReLU stacks separated by 2x2 max-pooling, then global average pooling and a
single linear classifier (the CIFAR variant drops ImageNet VGG's two 4096-unit layers).
Small inputs: a max-pool that would shrink the map below 1 px is left out (8 px digits keep
three of the five), so every configuration runs on 8-32 px. The width multiplier scales every
conv layer.
"""
from __future__ import annotations

import torch
from torch import nn

from pruning.models.base import register_model, scaled

# Output channels per conv layer; "M" is a 2x2 max-pool.
CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
}


class VGG(nn.Module):
    def __init__(self, config: tuple, in_channels: int, num_classes: int, image_size: int,
                 width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for item in config:
            if item == "M":
                if side // 2 >= 1:  # keep at least a 1x1 map
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            out = scaled(item, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, classes) logits."""
        x = self.features(x)                # (B, 512w, s, s), s = 1 for S in 8..32
        x = self.pool(x).flatten(1)         # (B, 512w)
        return self.classifier(x)           # (B, classes)


@register_model("vgg11", description="VGG-11 (Simonyan & Zisserman 2015), CIFAR form: 8 conv-BN "
                                     "layers + 1 linear; width multiplier")
def vgg11(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return VGG(CONFIGS["vgg11"], in_channels, num_classes, image_size, width)


@register_model("vgg16", description="VGG-16 (Simonyan & Zisserman 2015), CIFAR form: 13 conv-BN "
                                     "layers + 1 linear; width multiplier")
def vgg16(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    return VGG(CONFIGS["vgg16"], in_channels, num_classes, image_size, width)
