"""Datasets: the fixed digits split, resizing and channels, batching, and torchvision's readers on
tiny files written here in the real formats (idx ubyte for MNIST, pickled batches for CIFAR);
which datasets are present (a file check), where their files go, and downloading them."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from pruning.config import ConfigError, RunConfig
from pruning.data import (DATASETS, DatasetMissingError, data_root, dataset_shape, load_dataset,
                          resize, to_channels)
from pruning.data.digits import Digits
from pruning import data
from pruning.data import vision
from pruning.data.vision import CIFAR10, CIFAR100, MNIST, DatasetChecksumError, FashionMNIST


# --- digits -------------------------------------------------------------------------------------

def test_digits_split_is_fixed_disjoint_and_stratified():
    first, again = Digits.load(Path("unused"), download=False, seed=0), \
        Digits.load(Path("unused"), download=False, seed=123)
    for a, b in zip(first, again):  # the run's seed does not move the split
        assert torch.equal(a, b)
    train_x, train_y, test_x, test_y = first
    assert (train_x.shape, test_x.shape) == ((1437, 1, 8, 8), (360, 1, 8, 8))
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    train_rows = {row.numpy().tobytes() for row in train_x}
    test_rows = {row.numpy().tobytes() for row in test_x}
    assert len(train_rows) == 1437 and len(test_rows) == 360  # the 1,797 images are distinct
    assert not train_rows & test_rows
    # stratified: every class has 20 % of its images in the test set, up to rounding
    all_counts = torch.bincount(torch.cat([train_y, test_y]), minlength=10)
    test_counts = torch.bincount(test_y, minlength=10)
    assert torch.all((test_counts - 0.2 * all_counts).abs() <= 1)


def test_digits_read_without_scikit_learn_equal_its_own_loader_and_split():
    """The stored split order and the csv reader give exactly what load_digits and
    train_test_split give (same images, same order), and loading imports no scikit-learn."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from pruning.data.digits import MEAN, SPLIT_SEED, STD, TEST_FRACTION

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0 - MEAN) / STD
    expected = train_test_split(images, bunch.target, test_size=TEST_FRACTION,
                                stratify=bunch.target, random_state=SPLIT_SEED)
    train_x, train_y, test_x, test_y = Digits.load(Path("unused"), download=False, seed=0)
    for ours, theirs in zip((train_x, test_x, train_y, test_y), expected):
        assert np.array_equal(ours.squeeze(1).numpy() if ours.dim() == 4 else ours.numpy(),
                              theirs)
    probe = ("import sys; from pathlib import Path; from pruning.data.digits import Digits; "
             "Digits.load(Path('.'), download=False, seed=0); "
             "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True)
    assert out.stdout.strip() == "False"


def test_digits_normalised_with_constants(digits):
    everything = torch.cat([digits.train_x, digits.test_x])
    assert abs(float(everything.mean())) < 1e-3 and abs(float(everything.std()) - 1) < 1e-3
    # a blank pixel (count 0) maps to -mean/std exactly
    from pruning.data.digits import MEAN, STD
    assert float(everything.min()) == pytest.approx(-MEAN / STD, abs=1e-6)


def test_load_dataset_digits_bundle(digits):
    assert (digits.name, digits.in_channels, digits.image_size, digits.num_classes) == \
        ("digits", 1, 8, 10)
    assert digits.class_names == tuple("0123456789")
    assert dataset_shape(RunConfig()) == (1, 8, 10)
    other_seed = load_dataset(RunConfig(seed=7))
    assert torch.equal(other_seed.test_x, digits.test_x)
    assert torch.equal(other_seed.train_y, digits.train_y)


@pytest.mark.parametrize("size,channels", [(16, 3), (32, 3), (32, 1), (16, 0)])
def test_upsampling_and_channels(digits, size, channels):
    config = RunConfig(image_size=size, channels=channels)
    bundle = load_dataset(config)
    c = channels or 1
    assert bundle.train_x.shape == (1437, c, size, size)
    assert bundle.test_x.shape == (360, c, size, size)
    assert (bundle.in_channels, bundle.image_size) == (c, size) == dataset_shape(config)[:2]
    assert torch.equal(bundle.train_y, digits.train_y)
    for ch in range(1, c):  # grey repeated over RGB
        assert torch.equal(bundle.train_x[:, ch], bundle.train_x[:, 0])
    # bilinear: values stay within the source range (no overshoot as with bicubic), and pooling
    # back to 8x8 gives (a blurred copy of) the source image
    assert bundle.train_x.min() >= digits.train_x.min() - 1e-5
    assert bundle.train_x.max() <= digits.train_x.max() + 1e-5
    down = torch.nn.functional.adaptive_avg_pool2d(bundle.test_x[:, :1], 8)
    assert torch.corrcoef(torch.stack([down.flatten(), digits.test_x.flatten()]))[0, 1] > 0.95


def test_resize_keeps_constant_images_and_shrinks_with_antialias():
    constant = torch.full((2, 1, 8, 8), 0.7)
    assert torch.allclose(resize(constant, 32), constant.new_full((2, 1, 32, 32), 0.7))
    checker = (torch.arange(32).view(1, 32) + torch.arange(32).view(32, 1)) % 2
    small = resize(checker.float().view(1, 1, 32, 32), 8)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.05)  # antialiased: grey


def test_to_channels_luma_and_repeat():
    rgb = torch.randn(4, 3, 5, 5)
    grey = to_channels(rgb, 1)
    assert torch.allclose(grey[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    assert torch.equal(to_channels(grey, 3)[:, 2], grey[:, 0])
    assert to_channels(rgb, 3) is rgb


def test_max_train_samples_is_a_seeded_subset(digits):
    a = load_dataset(RunConfig(max_train_samples=100, seed=1))
    b = load_dataset(RunConfig(max_train_samples=100, seed=1))
    c = load_dataset(RunConfig(max_train_samples=100, seed=2))
    assert a.train_x.shape[0] == 100 and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.train_x, c.train_x)
    assert torch.equal(a.test_x, digits.test_x)  # the test set is never cut
    full = {row.numpy().tobytes(): int(y) for row, y in zip(digits.train_x, digits.train_y)}
    assert all(full[row.numpy().tobytes()] == int(y) for row, y in zip(a.train_x, a.train_y))
    assert load_dataset(RunConfig(max_train_samples=5000)).train_x.shape[0] == 1437


# --- DataBundle ---------------------------------------------------------------------------------

def test_batches_seeded_and_complete(digits):
    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return [y.clone() for _, y in digits.batches("train", 100, shuffle=True, generator=g)]

    first, same, other = order(3), order(3), order(4)
    assert all(torch.equal(a, b) for a, b in zip(first, same))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert len(first) == digits.steps_per_epoch("train", 100) == 15  # ceil(1437 / 100)
    assert [len(y) for y in first][-1] == 37
    assert torch.equal(torch.cat(first).sort().values, digits.train_y.sort().values)
    x0, y0 = next(digits.batches("test", 64))
    assert torch.equal(x0, digits.test_x[:64]) and torch.equal(y0, digits.test_y[:64])


def test_subset_and_unknown_split(digits):
    x, y = digits.subset("train", 32)
    assert torch.equal(x, digits.train_x[:32]) and torch.equal(y, digits.train_y[:32])
    assert len(torch.unique(y)) > 1
    with pytest.raises(ValueError, match="train or test"):
        digits.steps_per_epoch("val", 10)


def test_dataset_shape_needs_no_files(tmp_home):
    assert not data_root().exists()
    assert dataset_shape(RunConfig(dataset="mnist")) == (1, 28, 10)
    assert dataset_shape(RunConfig(dataset="cifar100")) == (3, 32, 100)
    assert dataset_shape(RunConfig(dataset="fashion_mnist", channels=3, image_size=32)) == (3, 32, 10)
    assert dataset_shape(RunConfig(dataset="cifar10", channels=1, image_size=16)) == (1, 16, 10)
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'.*digits"):
        dataset_shape(RunConfig(dataset="svhn"))


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"
    monkeypatch.delenv("PRUNING_DATA")
    assert data_root() == Path.home() / ".pruning" / "data"


def test_every_dataset_declares_its_shape():
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert len(cls.class_names) == cls.num_classes
        assert cls.in_channels in (1, 3) and cls.image_size in (8, 28, 32)


# --- torchvision datasets on tiny files in the real formats -------------------------------------

def mnist_pixels(n: int) -> np.ndarray:
    k, h, w = np.meshgrid(np.arange(n), np.arange(28), np.arange(28), indexing="ij")
    return ((k * 11 + h * 9 + w) % 256).astype(np.uint8)  # (n, 28, 28)


def write_idx(folder: Path, prefix: str, labels: list[int]) -> None:
    """Uncompressed idx3 images / idx1 labels, as torchvision unpacks them into <Class>/raw."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, 28, 28) + mnist_pixels(n).tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + bytes(labels))


def cifar_pixels(n: int, offset: int) -> np.ndarray:
    k, c, h, w = np.meshgrid(np.arange(n) + offset, np.arange(3), np.arange(32), np.arange(32),
                             indexing="ij")
    return ((k * 7 + c * 50 + h * 3 + w) % 256).astype(np.uint8)  # (n, 3, 32, 32)


def write_cifar(folder: Path, files: dict[str, list[int]], label_key: str, meta: tuple[str, str, list]):
    """Pickled dicts with 'data' (n, 3072) uint8 rows (R, G, B planes) and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    offset = 0
    for name, labels in files.items():
        rows = cifar_pixels(len(labels), offset).reshape(len(labels), 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, label_key: labels}, f)
        offset += len(labels)
    meta_file, meta_key, names = meta
    with open(folder / meta_file, "wb") as f:
        pickle.dump({meta_key: names}, f)


def write_dataset(root: Path, name: str) -> tuple[list[int], list[int]]:
    """Tiny files for ``name`` under ``root``; returns (train labels, test labels)."""
    if name in ("mnist", "fashion_mnist"):
        folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
        train, test = [3, 1, 4, 1, 5], [9, 2, 6]
        write_idx(folder, "train", train)
        write_idx(folder, "t10k", test)
        return train, test
    if name == "cifar10":
        batches = {f"data_batch_{i}": [i, (i * 3) % 10] for i in range(1, 6)}
        batches["test_batch"] = [7, 8, 9]
        write_cifar(root / "cifar-10-batches-py", batches, "labels",
                    ("batches.meta", "label_names", list(CIFAR10.class_names)))
        train = [y for i in range(1, 6) for y in batches[f"data_batch_{i}"]]
        return train, batches["test_batch"]
    files = {"train": [0, 42, 99, 57], "test": [13, 77]}
    write_cifar(root / "cifar-100-python", files, "fine_labels",
                ("meta", "fine_label_names", list(CIFAR100.class_names)))
    return files["train"], files["test"]


VISION = {"mnist": MNIST, "fashion_mnist": FashionMNIST, "cifar10": CIFAR10, "cifar100": CIFAR100}


@pytest.fixture(autouse=True)
def tiny_files_have_no_published_sums(monkeypatch):
    """The tiny CIFAR files written here are not torchvision's, so the published md5s cannot
    match them; the checksum tests at the end set the sums they check against."""
    for cls in (CIFAR10, CIFAR100):
        monkeypatch.setattr(cls, "checksums", classmethod(lambda c: {}))


@pytest.mark.parametrize("name", list(VISION))
def test_torchvision_readers_on_tiny_files(tmp_home, name):
    root = tmp_home.parent / "data"  # PRUNING_DATA from the fixture
    train_y, test_y = write_dataset(root, name)
    bundle = load_dataset(RunConfig(dataset=name))
    cls = VISION[name]
    c, s = cls.in_channels, cls.image_size
    assert bundle.train_x.shape == (len(train_y), c, s, s)
    assert bundle.test_x.shape == (len(test_y), c, s, s)
    assert bundle.train_y.tolist() == train_y and bundle.test_y.tolist() == test_y
    assert bundle.train_x.dtype == torch.float32 and bundle.train_y.dtype == torch.int64
    # exact pixels: the files' bytes, scaled to [0, 1] and standardised per channel
    raw = torch.from_numpy(mnist_pixels(len(train_y))[:, None] if c == 1
                           else cifar_pixels(len(train_y), 0)).float() / 255
    mean = torch.tensor(cls.mean).view(1, c, 1, 1)
    std = torch.tensor(cls.std).view(1, c, 1, 1)
    assert torch.allclose(bundle.train_x, (raw - mean) / std, atol=1e-5)
    assert bundle.class_names == cls.class_names


def test_torchvision_data_resized_to_digits_shape(tmp_path):
    write_dataset(tmp_path, "cifar10")
    bundle = load_dataset(RunConfig(dataset="cifar10", image_size=8, channels=1), root=tmp_path)
    assert bundle.train_x.shape == (10, 1, 8, 8) and bundle.test_x.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"),
                                         ("cifar10", "cifar-10-batches-py"),
                                         ("cifar100", "cifar-100-python")])
def test_missing_files_name_folder_and_flag(tmp_home, name, folder):
    with pytest.raises(DatasetMissingError) as info:
        load_dataset(RunConfig(dataset=name))
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert str(tmp_home.parent / "data" / folder) in message
    assert "--download" in message and "\n" not in message


def test_partial_files_are_missing_not_read(tmp_path):
    write_dataset(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissingError, match="has no data_batch_3"):
        load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    write_dataset(tmp_path, "mnist")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetMissingError, match="t10k-labels-idx1-ubyte"):
        load_dataset(RunConfig(dataset="mnist"), root=tmp_path)


def test_unreadable_file_is_a_one_line_config_error(tmp_path):
    write_dataset(tmp_path, "mnist")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(struct.pack(">III", 0x802, 2, 28) + bytes(56))  # 2-d, not images
    with pytest.raises(ConfigError, match="could not read mnist .*--download") as info:
        load_dataset(RunConfig(dataset="mnist"), root=tmp_path)
    assert "\n" not in str(info.value)


def _no_network(*args, **kwargs):
    raise URLError("network is off in tests")


@pytest.fixture
def offline(monkeypatch):
    """torchvision's download helpers fail as they would without a connection."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _no_network)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", _no_network)


@pytest.mark.parametrize("name", ["mnist", "cifar100"])
def test_download_skips_present_files_and_reports_failures(tmp_path, offline, name):
    with pytest.raises(DatasetMissingError, match=f"could not download {name} into .*network is off"):
        load_dataset(RunConfig(dataset=name), root=tmp_path / "empty", download=True)
    train_y, _ = write_dataset(tmp_path, name)
    bundle = load_dataset(RunConfig(dataset=name), root=tmp_path, download=True)  # no network
    assert bundle.train_y.tolist() == train_y


# --- checksums ----------------------------------------------------------------------------------

class _Hostile:
    """Unpickling this creates a file: stands for any code a tampered pickle could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _sums(folder: Path, names) -> dict[str, str]:
    return {name: vision._md5(folder / name) for name in names}


def test_published_checksums_are_torchvisions():
    assert vision._PickledBatches.checksums.__func__(CIFAR10)["data_batch_1"] == \
        "c99cafc152244af753f735de768cd75f"
    assert vision._PickledBatches.checksums.__func__(CIFAR100)["meta"] == \
        "7973b15100ade9c7d40fb424638fde48"
    assert MNIST.checksums()["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


def test_files_that_differ_from_the_published_sums_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "checksums",
                        classmethod(vision._PickledBatches.checksums.__func__))
    write_dataset(tmp_path, "cifar10")  # not torchvision's files: every sum differs
    with pytest.raises(DatasetChecksumError, match="does not match torchvision's published "
                                                   "checksum .*--download") as info:
        load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    assert "\n" not in str(info.value)


def test_a_tampered_pickle_is_refused_before_it_is_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    write_dataset(tmp_path, "cifar10")
    sums = _sums(folder, CIFAR10.files())
    monkeypatch.setattr(CIFAR10, "checksums", classmethod(lambda c: sums))
    marker = tmp_path / "code-ran"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({"data": _Hostile(marker), "labels": [1]}, f)
    with pytest.raises(DatasetChecksumError, match="data_batch_2 does not match"):
        load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    assert not marker.exists()
    with open(folder / "data_batch_2", "rb") as f:
        pickle.load(f)  # what reading it unchecked would have done
    assert marker.exists()


def test_verified_files_are_not_hashed_again_until_they_change(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    write_dataset(tmp_path, "cifar10")
    sums = _sums(folder, CIFAR10.files())
    monkeypatch.setattr(CIFAR10, "checksums", classmethod(lambda c: sums))
    hashed = []
    real_md5 = vision._md5
    monkeypatch.setattr(vision, "_md5", lambda path: hashed.append(path.name) or real_md5(path))
    load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    assert sorted(hashed) == sorted(CIFAR10.files())
    hashed.clear()
    load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    assert hashed == []
    content = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(content)  # rewritten: same bytes, new change time
    load_dataset(RunConfig(dataset="cifar10"), root=tmp_path)
    assert hashed == ["test_batch"]


def test_mnist_archives_are_checked_when_present(tmp_path):
    write_dataset(tmp_path, "mnist")
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").write_bytes(b"not the archive")
    with pytest.raises(DatasetChecksumError, match="train-labels-idx1-ubyte.gz does not match"):
        load_dataset(RunConfig(dataset="mnist"), root=tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").unlink()
    assert load_dataset(RunConfig(dataset="mnist"), root=tmp_path).train_y.tolist() == \
        [3, 1, 4, 1, 5]


# --- availability, placement and download, as the app uses them --------------------------------

@pytest.mark.parametrize("name", list(VISION))
def test_available_is_a_file_check_and_placement_names_folder_and_files(tmp_path, name):
    cls = VISION[name]
    assert not data.available(name, tmp_path)
    line = data.placement(name, tmp_path)
    assert str(tmp_path / cls.folder) in line and "PRUNING_DATA" in line and "\n" not in line
    assert all(f in line for f in cls.files()) and "all are missing" in line
    write_dataset(tmp_path, name)
    assert data.available(name, tmp_path) and cls.missing(tmp_path) == []
    first = cls.files()[0]
    (tmp_path / cls.folder / first).unlink()
    assert not data.available(name, tmp_path)
    assert data.placement(name, tmp_path).endswith(
        f"{first} are missing there. The data folder is PRUNING_DATA (now {tmp_path})")


def test_digits_is_always_available(tmp_path):
    assert data.available("digits", tmp_path / "nowhere")
    assert data.download("digits", tmp_path / "nowhere") == tmp_path / "nowhere"


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_offline_is_one_line_naming_the_folder_and_cause(tmp_path, offline, name):
    with pytest.raises(DatasetMissingError) as info:
        data.download(name, tmp_path)
    message = str(info.value)
    assert message.startswith(f"could not download {name} into {tmp_path / VISION[name].folder} (")
    assert "network is off in tests" in message and "\n" not in message
    assert "--download" not in message  # the app's button has no flag to drop


def test_download_of_present_files_touches_no_network(tmp_path, offline):
    write_dataset(tmp_path, "mnist")
    assert data.download("mnist", tmp_path) == tmp_path / "MNIST" / "raw"
