"""Registered model architectures (``MODELS``), built for a dataset's channels, size and classes.

Each entry is a factory ``factory(in_channels, num_classes, image_size, width) -> nn.Module``
registered with ``register_model``, which also records the smallest input the architecture
takes (every stride-2 step must still see at least one pixel). ``check_compatible`` refuses a
model/input pair below that with a message naming the fix, before anything is written.

Every model registers its modules in data-flow order (stem first, classifier last), because
``masks.prunable_layers`` takes "first" and "last" layer in registration order.

- ``mlp``: LeNet-300-100; ``lenet5``: LeNet-5 (LeCun et al. 1998).
- ``small_cnn``: conv-BN-ReLU stack, the fast default for digits.
- ``vgg11``, ``vgg16``: CIFAR-style VGG with BatchNorm (Simonyan & Zisserman 2015).
- ``resnet20``, ``resnet56``: CIFAR ResNets (He et al. 2016).
- ``resnet18``, ``mobilenet_v2``: torchvision's models (He et al. 2016; Sandler et al. 2018)
  adapted to 8-32 px inputs.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pruning.config import ConfigError, RunConfig
from pruning.registry import Registry

Factory = Callable[[int, int, int, float], nn.Module]

MODELS: Registry[Factory] = Registry("model")


def register_model(name: str, *, description: str, min_image_size: int = 1
                   ) -> Callable[[Factory], Factory]:
    """Register a factory; ``min_image_size`` is the smallest input side it accepts."""
    def decorator(factory: Factory) -> Factory:
        factory.min_image_size = min_image_size
        return MODELS.register(name, description=description)(factory)
    return decorator


def scaled(channels: int, width: float) -> int:
    """A layer width under the width multiplier; never below one unit."""
    return max(1, int(round(channels * width)))


def check_compatible(model_name: str, in_channels: int, image_size: int) -> None:
    """Raise ConfigError when ``model_name`` cannot take ``(in_channels, image_size, image_size)``
    inputs; the message names the fix."""
    if model_name not in MODELS:
        raise ConfigError(f"unknown model {model_name!r}; choose one of: {', '.join(MODELS.names())}")
    if in_channels < 1:
        raise ConfigError(f"model {model_name} needs at least one input channel, got {in_channels}")
    smallest = MODELS.get(model_name).min_image_size
    if image_size < smallest:
        raise ConfigError(
            f"model {model_name} needs images of at least {smallest}x{smallest} px, got "
            f"{image_size}x{image_size}; use --image-size {max(smallest, 16)} or a smaller model "
            f"such as small_cnn or mlp")


def build_model(config: RunConfig, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The config's model for this input shape, freshly initialised from ``config.seed``.

    The initialisation draws from a private generator seeded with ``config.seed`` (never the
    process's global RNG), so the same config always yields the same initial weights, whatever
    ran before or runs beside it in another thread.
    """
    from pruning.seeding import private_rng

    check_compatible(config.model, in_channels, image_size)
    factory = MODELS.get(config.model)
    with private_rng(torch.Generator().manual_seed(config.seed)):
        return factory(in_channels, num_classes, image_size, config.width)


# Registration happens on import; order here is the order users see.
from pruning.models import (  # noqa: E402,F401
    small_cnn, mlp, lenet5, vgg, resnet_cifar, torchvision_models)
