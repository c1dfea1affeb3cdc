"""Registered datasets (``DATASETS``) and ``load_dataset``: one run's data as in-memory tensors.

Every dataset here is small enough to live in memory as float32 tensors, so batching is plain
indexing (``training.seeded_batches``) instead of a DataLoader: same seed, same batches, and no
worker processes in the app's server.

An entry is a class with the class attributes ``in_channels``, ``image_size``, ``num_classes``,
``class_names`` and a classmethod ``load(root, *, download, seed) -> (train_x, train_y, test_x,
test_y)`` returning normalised ``(N, C, H, W)`` float32 images at the native size and int64 labels.
``load_dataset`` then applies what the RunConfig asks for on top (fewer training samples, grey to
RGB, another image size), so every entry gets those options for free.

- ``digits``: scikit-learn's 8x8 handwritten digits (ships with the package; the default).
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``: torchvision's readers on the files under
  ``data_root()`` (env ``PRUNING_DATA``); downloaded only when asked (``--download``, or
  ``download(name)``).

``available(name)`` says, without reading a file, whether a dataset can be loaded now;
``placement(name)`` says in one line which files go in which folder when it cannot.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from pruning.config import ConfigError, RunConfig

from pruning.data.base import DATASETS, SPLITS, DatasetMissingError, normalise  # noqa: F401


def data_root() -> Path:
    """Where dataset files live: ``$PRUNING_DATA``, else ``~/.pruning/data``."""
    return Path(os.environ.get("PRUNING_DATA") or Path.home() / ".pruning" / "data").expanduser()


@dataclass
class DataBundle:
    """One run's data, in memory: images ``(N, C, H, W)`` float32 normalised, labels ``(N,)`` int64."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int
    class_names: tuple[str, ...]

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"`` or ``"test"``."""
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise ValueError(f"unknown split {split!r}; choose train or test")

    def batches(self, split: str, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(B, C, H, W), (B,)`` of a split; the last may be smaller. Same generator
        state, same order."""
        from pruning.training import seeded_batches  # late: training imports nothing from here

        x, y = self.split(split)
        return seeded_batches(x, y, batch_size, shuffle, generator)

    def steps_per_epoch(self, split: str, batch_size: int) -> int:
        return math.ceil(self.split(split)[1].shape[0] / batch_size)

    def subset(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` examples ``(x, y)`` of a split: a fixed sample, e.g. for data-driven
        saliency scores. The stored order is already shuffled (digits' split, max_train_samples,
        the datasets' own files), so the first ``n`` are not one class."""
        x, y = self.split(split)
        return x[:n], y[:n]

    def __len__(self) -> int:
        return self.train_y.shape[0]


def dataset_class(name: str) -> type:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS.names())}")
    return DATASETS.get(name)


def available(name: str, root: Path | None = None) -> bool:
    """Whether every file dataset ``name`` needs is under ``root`` (default ``data_root()``):
    a cheap existence check (digits is embedded: always)."""
    return not dataset_class(name).missing(Path(root) if root is not None else data_root())


def placement(name: str, root: Path | None = None) -> str:
    """Where dataset ``name``'s files go and which are still missing, in one line."""
    cls = dataset_class(name)
    root = Path(root) if root is not None else data_root()
    missing = cls.missing(root)
    if not missing:
        return f"{name} is ready"
    folder = root / cls.folder
    return (f"put {', '.join(cls.files())} (the files torchvision's {cls.torchvision_name} "
            f"reader expects, unpacked) in the folder {folder}; "
            f"{'all are' if len(missing) == len(cls.files()) else ', '.join(missing) + ' are'}"
            f" missing there. The data folder is PRUNING_DATA (now {root})")


def download(name: str, root: Path | None = None) -> Path:
    """Download dataset ``name`` into ``root`` (default ``data_root()``) with torchvision;
    returns its folder. DatasetMissingError naming the folder and the reason when it cannot
    (e.g. no network), or when files are still missing afterwards."""
    cls = dataset_class(name)
    root = Path(root) if root is not None else data_root()
    if not cls.missing(root):
        return root / getattr(cls, "folder", "")
    cls.fetch(root)
    if cls.missing(root):
        raise DatasetMissingError(f"the download of {name} finished but {placement(name, root)}")
    return root / cls.folder


def dataset_shape(config: RunConfig) -> tuple[int, int, int]:
    """``(channels, image size, classes)`` the run's model will see, without reading any file."""
    cls = dataset_class(config.dataset)
    return (config.channels or cls.in_channels, config.image_size or cls.image_size,
            cls.num_classes)


def load_dataset(config: RunConfig, root: Path | None = None, download: bool = False) -> DataBundle:
    """The run's data: the dataset's files read from ``root`` (default ``data_root()``), then
    ``max_train_samples``, ``channels`` and ``image_size`` applied in that order (the cheap
    subset first, the costly resize last). Missing files raise DatasetMissingError."""
    cls = dataset_class(config.dataset)
    root = Path(root) if root is not None else data_root()
    train_x, train_y, test_x, test_y = cls.load(root, download=download, seed=config.seed)
    if 0 < config.max_train_samples < train_y.shape[0]:
        # A seeded sample, not the first k: the files of some datasets are ordered by class.
        keep = torch.randperm(train_y.shape[0],
                              generator=torch.Generator().manual_seed(config.seed))
        keep = keep[:config.max_train_samples]
        train_x, train_y = train_x[keep], train_y[keep]
    channels, size, num_classes = dataset_shape(config)
    train_x, test_x = (resize(to_channels(x, channels), size) for x in (train_x, test_x))
    return DataBundle(config.dataset, train_x.contiguous(), train_y.long(), test_x.contiguous(),
                      test_y.long(), num_classes, channels, size, tuple(cls.class_names))


# ITU-R BT.601 luma weights, for showing a colour dataset to a one-channel model.
_LUMA = (0.299, 0.587, 0.114)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``(N, C, H, W) -> (N, channels, H, W)``: grey repeated over RGB, or RGB to luma.

    Luma is taken of the normalised channels, so the result stays roughly zero-mean, unit-std.
    """
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.repeat(1, channels, 1, 1)
    if have == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    raise ConfigError(f"cannot turn {have}-channel images into {channels} channels; use --channels 0")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, size, size)`` by bilinear interpolation (antialiased when shrinking).

    Interpolation weights sum to one, so resizing normalised images equals normalising resized
    ones: the dataset's mean/std constants stay valid.
    """
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink)


# Registration happens on import; order here is the order users see.
from pruning.data import digits, vision  # noqa: E402,F401
