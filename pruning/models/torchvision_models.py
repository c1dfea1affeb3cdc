"""``resnet18`` and ``mobilenet_v2``: torchvision's models, untrained, adapted to 8-32 px inputs.

- ResNet-18 (He et al. 2016): the usual CIFAR adaptation, a 3x3 stride-1 stem instead of the
  7x7 stride-2 one and no max-pool, so the network downsamples 8x instead of 32x (32 px -> 4x4
  before pooling; 8 px -> 1x1). torchvision's ResNet has fixed widths, so the width multiplier
  does not apply (RunConfig.width is documented as "for models that have one").
- MobileNetV2 (Sandler et al. 2018): stride-1 stem and stride 1 in the second bottleneck stage
  (the common CIFAR setting), again 8x downsampling in all; torchvision's ``width_mult`` is the
  width multiplier.

Both take any number of input channels (the stem is rebuilt) and classes (``num_classes``).
Replacing a submodule keeps its place in the module order, so the stem stays the first layer.
"""
from __future__ import annotations

from torch import nn

from pruning.models.base import register_model


def _stem(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 stride-1 conv, initialised as torchvision initialises its convs."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


@register_model("resnet18", min_image_size=8,
                description="ResNet-18 (He et al. 2016) from torchvision, 3x3 stem and no "
                            "max-pool for small images; fixed widths (no width multiplier)")
def resnet18(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18  # late: torchvision is slow to import

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = _stem(in_channels, model.conv1.out_channels)  # (B, C, S, S) -> (B, 64, S, S)
    model.maxpool = nn.Identity()
    return model


# torchvision's (expansion t, channels c, blocks n, first stride s) with the second stage's
# stride 2 -> 1: with the stride-1 stem the network downsamples 8x, so 8 px inputs end at 1x1.
SMALL_INPUT_SETTING = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
                       [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


@register_model("mobilenet_v2", min_image_size=8,
                description="MobileNetV2 (Sandler et al. 2018) from torchvision, stride-1 stem "
                            "and 8x downsampling for small images; width multiplier")
def mobilenet_v2(in_channels: int, num_classes: int, image_size: int, width: float) -> nn.Module:
    from torchvision.models import MobileNetV2

    model = MobileNetV2(num_classes=num_classes, width_mult=width,
                        inverted_residual_setting=SMALL_INPUT_SETTING)
    stem = model.features[0][0]  # Conv2dNormActivation's conv
    model.features[0][0] = _stem(in_channels, stem.out_channels)
    return model
