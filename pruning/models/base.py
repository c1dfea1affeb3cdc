"""The model registry and what every model factory uses: ``MODELS``, ``register_model``,
``scaled``, ``check_compatible``, ``build_model`` (re-exported by ``pruning.models``).

Kept apart from the package's ``__init__`` so the model files import it without importing the
package that imports them (no import cycle).
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
