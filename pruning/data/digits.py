"""``digits``: scikit-learn's handwritten digits, the embedded default dataset.

1,797 grey 8x8 images of the digits 0-9 (the UCI "Optical Recognition of Handwritten Digits" set,
Alpaydin & Kaynak 1998), shipped inside scikit-learn (``sklearn.datasets.load_digits``), so the
default run needs no download and no files. Pixel values are counts 0..16.

The train/test split is fixed (stratified 80/20, split seed ``SPLIT_SEED``), independent of the
run's seed: every run, whatever its seed, is scored on the same 360 test images, so accuracies of
different runs are comparable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pruning.data.base import DATASETS

SPLIT_SEED = 0
TEST_FRACTION = 0.2
# Mean and std of all pixels of the whole set after scaling to [0, 1]; constants so that the
# normalisation does not depend on the split or on max_train_samples.
MEAN = 0.30526
STD = 0.37605


@DATASETS.register("digits", description="scikit-learn handwritten digits: 8x8 grey, 10 classes, "
                                         "1,437 train / 360 test, no download needed")
class Digits:
    in_channels = 1
    image_size = 8
    num_classes = 10
    test_examples = 360  # the fixed split's test set (one example = 0.28 accuracy points)
    class_names = tuple(str(d) for d in range(10))

    @classmethod
    def missing(cls, root: Path) -> list[str]:
        """Embedded in scikit-learn: nothing is ever missing."""
        return []

    @classmethod
    def load(cls, root: Path, *, download: bool, seed: int):
        """The fixed stratified split; ``root``, ``download`` and ``seed`` are unused on purpose
        (the data ships with scikit-learn and the split must not follow the run's seed)."""
        from sklearn.datasets import load_digits  # late: scikit-learn is slow to import
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0 - MEAN) / STD  # (1797, 8, 8)
        labels = bunch.target.astype(np.int64)                           # (1797,)
        train_x, test_x, train_y, test_y = train_test_split(
            images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
        as_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)  # (N, 1, 8, 8)
        return (as_nchw(train_x), torch.from_numpy(train_y),
                as_nchw(test_x), torch.from_numpy(test_y))
