"""The dataset registry and what every dataset file uses: ``DATASETS``, ``DatasetMissingError``,
``normalise`` (re-exported by ``pruning.data``).

Kept apart from the package's ``__init__`` so the dataset files import it without importing the
package that imports them (no import cycle).
"""
from __future__ import annotations

import torch

from pruning.config import ConfigError
from pruning.registry import Registry

DATASETS: Registry[type] = Registry("dataset")

SPLITS = ("train", "test")


class DatasetMissingError(ConfigError):
    """The dataset's files are not on disk; the message names the folder and ``--download``."""


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in [0, 255] -> float32 standardised per channel."""
    channels = images.shape[1]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
    # contiguous() on the uint8 tensor: a permuted (N, H, W, C) source is copied at 1/4 the cost.
    return images.contiguous().to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)
