"""``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` through torchvision's own readers.

The files live where torchvision puts them under the data root (``$PRUNING_DATA``):
``MNIST/raw/*-ubyte``, ``FashionMNIST/raw/*-ubyte``, ``cifar-10-batches-py/``,
``cifar-100-python/``. Nothing is downloaded unless the caller passes ``download=True`` (the CLI's
``--download``) or calls ``fetch`` (the app's download button); otherwise missing files raise
DatasetMissingError naming the folder and the flag. ``missing(root)`` lists the absent files
without reading any, so the app can say which datasets are present before a run.

Datasets: MNIST (LeCun et al. 1998), Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), CIFAR-10 and
CIFAR-100 (Krizhevsky 2009). Images are standardised per channel with each training set's
published mean/std.

Checksums. Every file whose md5 torchvision publishes is verified before it is read: CIFAR's
batch and meta files (pickles: a tampered one would run code when unpickled, so a mismatch is
refused before any unpickling) and MNIST/Fashion-MNIST's .gz archives when they are present
(torchvision publishes no sums for the unpacked idx files, which are read as plain bytes). A
mismatch raises DatasetChecksumError naming the file and the fix. Hashing CIFAR's ~180 MB takes
about 0.2 s, so a file's verification is remembered in ``.pruning-verified.json`` beside it,
keyed on its size, inode and modification and change times (any rewrite changes the change
time) and re-done when any of them differs. torchvision's own per-load check is switched off
(None sums in a reader subclass) since ours replaces it; downloads stay verified by torchvision
(archive md5).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import torch

from pruning.config import ConfigError
from pruning.data.base import DATASETS, DatasetMissingError, normalise

#: where a folder's verified files are remembered (see the module docstring)
VERIFIED_FILE = ".pruning-verified.json"


class DatasetChecksumError(ConfigError):
    """A dataset file does not match the checksum torchvision publishes for it."""


# Errors torchvision's readers raise on truncated or foreign files.
_READ_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, EOFError,
                pickle.UnpicklingError)


class TorchvisionDataset:
    """Shared loading: check files, optionally download, read both splits, normalise."""
    name: str
    in_channels: int
    image_size: int
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # where the files are, relative to the data root
    torchvision_name: str  # the reader's class name in torchvision.datasets
    download_mb: int  # the size of what torchvision downloads
    # A file format's subclass provides: reader() -> the torchvision class that reads the files,
    # files() -> the names expected in ``folder``, images(dataset) -> uint8 (N, C, H, W).

    @classmethod
    def torchvision_class(cls) -> type:
        import torchvision.datasets  # late: torchvision takes about a second to import
        return getattr(torchvision.datasets, cls.torchvision_name)

    @classmethod
    def load(cls, root: Path, *, download: bool, seed: int):
        """Normalised ``(N, C, H, W)`` float32 images and int64 labels of both splits. ``seed`` is
        unused: the train/test split is the dataset's own."""
        folder = Path(root) / cls.folder
        reader = cls.reader()
        if download:
            try:
                cls.fetch(root)
            except DatasetMissingError as exc:
                raise DatasetMissingError(f"{exc}; check the connection, or copy the files "
                                          f"there and drop --download") from None
        missing = cls.missing(root)
        if missing:
            raise DatasetMissingError(
                f"dataset {cls.name} not found: {folder} has no {missing[0]}; rerun with "
                f"--download to fetch it there, or set PRUNING_DATA to where the files are")
        cls.verify(folder)
        try:
            train, test = reader(str(root), train=True), reader(str(root), train=False)
            splits = [(cls.images(d), torch.as_tensor(d.targets, dtype=torch.int64))
                      for d in (train, test)]
        except _READ_ERRORS as exc:
            raise ConfigError(f"could not read {cls.name} from {folder} ({_one_line(exc)}); delete "
                              f"the folder and rerun with --download") from None
        (train_x, train_y), (test_x, test_y) = splits
        return (normalise(train_x, cls.mean, cls.std), train_y,
                normalise(test_x, cls.mean, cls.std), test_y)


    @classmethod
    def missing(cls, root: Path) -> list[str]:
        """The files this dataset needs that are not in ``root/folder`` (no file is read)."""
        folder = Path(root) / cls.folder
        return [name for name in cls.files() if not (folder / name).is_file()]

    @classmethod
    def fetch(cls, root: Path) -> None:
        """Download the dataset into ``root`` with torchvision (files already there are kept;
        torchvision checks each archive's md5). DatasetMissingError, naming the folder and the
        reason, when it cannot (no network, a mirror down, a full disk)."""
        folder = Path(root) / cls.folder
        try:
            cls.reader()(str(root), train=True, download=True)
        except _READ_ERRORS as exc:
            raise DatasetMissingError(
                f"could not download {cls.name} into {folder} ({_one_line(exc)})") from None

    @classmethod
    def checksums(cls) -> dict[str, str]:
        """{file name in ``folder``: md5} as torchvision publishes them (see subclasses)."""
        return {}

    @classmethod
    def verify(cls, folder: Path) -> None:
        """Check every present file that has a published md5; DatasetChecksumError if one
        differs. Files verified before and unchanged since are not hashed again."""
        record_path = folder / VERIFIED_FILE
        try:
            record = json.loads(record_path.read_text())
            record = record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            record = {}
        changed = False
        for name, md5 in cls.checksums().items():
            path = folder / name
            if not path.is_file():
                continue  # an optional archive; required files were checked for by load
            info = path.stat()
            stamp = [info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns, md5]
            if record.get(name) == stamp:
                continue
            if _md5(path) != md5:
                raise DatasetChecksumError(
                    f"{cls.name} file {path} does not match torchvision's published checksum "
                    f"(md5 {md5}): it is damaged or not the original, and is not read; delete "
                    f"{folder} and rerun with --download")
            record[name] = stamp
            changed = True
        if changed:
            partial = record_path.with_name(record_path.name + ".partial")
            try:  # a read-only data folder just means hashing again next time
                partial.write_text(json.dumps(record))
                os.replace(partial, record_path)
            except OSError:
                partial.unlink(missing_ok=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _IdxDataset(TorchvisionDataset):
    """MNIST-format files: uncompressed idx3/idx1 ubyte in ``<Class>/raw``."""
    in_channels = 1
    image_size = 28
    num_classes = 10

    @classmethod
    def reader(cls) -> type:
        return cls.torchvision_class()

    @classmethod
    def files(cls) -> list[str]:
        # torchvision lists the .gz archives; it reads the unpacked files next to them.
        return [name.removesuffix(".gz") for name, _ in cls.reader().resources]

    @classmethod
    def checksums(cls) -> dict[str, str]:
        # the .gz archives torchvision downloads (kept beside the unpacked files)
        return {name: md5 for name, md5 in cls.reader().resources}

    @classmethod
    def images(cls, dataset) -> torch.Tensor:
        return dataset.data.unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)


@DATASETS.register("mnist", description="MNIST handwritten digits: 28x28 grey, 10 classes, "
                                        "60k train / 10k test (torchvision files)")
class MNIST(_IdxDataset):
    name = "mnist"
    class_names = tuple(str(d) for d in range(10))
    mean, std = (0.1307,), (0.3081,)
    folder = "MNIST/raw"
    torchvision_name = "MNIST"
    download_mb = 12


@DATASETS.register("fashion_mnist", description="Fashion-MNIST clothing: 28x28 grey, 10 classes, "
                                                "60k train / 10k test (torchvision files)")
class FashionMNIST(_IdxDataset):
    name = "fashion_mnist"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
    mean, std = (0.2860,), (0.3530,)
    folder = "FashionMNIST/raw"
    torchvision_name = "FashionMNIST"
    download_mb = 31


class _PickledBatches(TorchvisionDataset):
    """CIFAR-format files: pickled batches, verified by ``verify`` before torchvision's reader
    (a subclass without its own per-load check) unpickles them (see module doc)."""
    in_channels = 3
    image_size = 32

    @classmethod
    def reader(cls) -> type:
        base = cls.torchvision_class()
        # None as md5 makes torchvision's check_integrity an existence check (see module doc).
        return type(f"Unhashed{base.__name__}", (base,), {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        })

    @classmethod
    def files(cls) -> list[str]:
        reader = cls.reader()
        return [name for name, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]

    @classmethod
    def checksums(cls) -> dict[str, str]:
        base = cls.torchvision_class()
        return {**dict(base.train_list + base.test_list), base.meta["filename"]: base.meta["md5"]}

    @classmethod
    def images(cls, dataset) -> torch.Tensor:
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)


@DATASETS.register("cifar10", description="CIFAR-10 natural images: 32x32 RGB, 10 classes, "
                                          "50k train / 10k test (torchvision files)")
class CIFAR10(_PickledBatches):
    name = "cifar10"
    num_classes = 10
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    folder = "cifar-10-batches-py"
    torchvision_name = "CIFAR10"
    download_mb = 163


@DATASETS.register("cifar100", description="CIFAR-100 natural images: 32x32 RGB, 100 classes, "
                                           "50k train / 10k test (torchvision files)")
class CIFAR100(_PickledBatches):
    name = "cifar100"
    num_classes = 100
    # The fine labels in the order of the files' label indices (alphabetical).
    class_names = (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
        "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
        "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
        "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
        "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
        "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
        "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
        "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
        "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
        "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
        "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    folder = "cifar-100-python"
    torchvision_name = "CIFAR100"
    download_mb = 161
