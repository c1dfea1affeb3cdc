"""Shared fixtures: isolated PRUNING_HOME / PRUNING_DATA folders and the default digits data."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pruning.config import RunConfig
from pruning.data import DataBundle, load_dataset


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PRUNING_HOME -> tmp_path/home and PRUNING_DATA -> tmp_path/data; returns the home folder."""
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def _digits_once() -> DataBundle:
    return load_dataset(RunConfig())


@pytest.fixture
def digits(_digits_once: DataBundle) -> DataBundle:
    """The default digits DataBundle (8x8, 1 channel, 10 classes); a copy each test may modify."""
    return dataclasses.replace(_digits_once, **{
        name: getattr(_digits_once, name).clone()
        for name in ("train_x", "train_y", "test_x", "test_y")})


def pytest_configure(config):
    # The suite runs as `pytest -n 2` on 2 cores: one intra-op thread per worker avoids the two
    # workers' thread pools thrashing each other (tiny models gain nothing from more threads).
    import torch

    torch.set_num_threads(1)
    # Sweeps run in-process unless a test asks for Ray (tests/test_sweeps_ray.py): starting Ray
    # takes seconds and processes, which the app's and the CLI's other tests do not need.
    os.environ.setdefault("PRUNING_SWEEP_ENGINE", "local")
