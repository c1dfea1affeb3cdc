"""``digits``: scikit-learn's handwritten digits, the embedded default dataset.

1,797 grey 8x8 images of the digits 0-9 (the UCI "Optical Recognition of Handwritten Digits" set,
Alpaydin & Kaynak 1998), shipped inside scikit-learn (``sklearn.datasets.load_digits``), so the
default run needs no download and no files. Pixel values are counts 0..16.

The train/test split is fixed (stratified 80/20, split seed ``SPLIT_SEED``), independent of the
run's seed: every run, whatever its seed, is scored on the same 360 test images, so accuracies of
different runs are comparable. The split is scikit-learn's ``train_test_split`` of the example
indices; its order is stored in ``digits_split.npy`` (train indices, then test indices), and the
images are read from scikit-learn's own ``digits.csv.gz`` without importing scikit-learn, which
takes ~0.7 s (SciPy): the first run of a process pays only for what it uses.
``tests/test_data.py`` checks both against ``load_digits`` and ``train_test_split``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pruning.config import ConfigError
from pruning.data.base import DATASETS

SPLIT_SEED = 0
TEST_FRACTION = 0.2
TRAIN_EXAMPLES = 1437
#: train_test_split(range(1797), test_size=TEST_FRACTION, stratify=labels,
#: random_state=SPLIT_SEED): the train indices, then the test indices (uint16)
SPLIT_FILE = Path(__file__).with_name("digits_split.npy")
# Mean and std of all pixels of the whole set after scaling to [0, 1]; constants so that the
# normalisation does not depend on the split or on max_train_samples.
MEAN = 0.30526
STD = 0.37605


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 8, 8) uint8 counts 0..16, labels (1797,) int64) from the copy of the data
    inside scikit-learn, found without importing it (what ``load_digits`` reads)."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded digits ship with scikit-learn, which is not installed; "
                          "install it (pip install scikit-learn)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (1797, 65): 64 pixels, label
    return table[:, :-1].reshape(-1, 8, 8).astype(np.uint8), table[:, -1]


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
        pixels, labels = read_digits()
        images = (pixels.astype(np.float32) / 16.0 - MEAN) / STD  # (1797, 8, 8)
        order = np.load(SPLIT_FILE).astype(np.int64)             # (1797,) train, then test
        train_index, test_index = order[:TRAIN_EXAMPLES], order[TRAIN_EXAMPLES:]
        train_x, test_x = images[train_index], images[test_index]
        train_y, test_y = labels[train_index], labels[test_index]
        as_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)  # (N, 1, 8, 8)
        return (as_nchw(train_x), torch.from_numpy(train_y),
                as_nchw(test_x), torch.from_numpy(test_y))
