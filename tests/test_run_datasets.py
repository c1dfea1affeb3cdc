"""The Run form's dataset panel: present datasets are said to be present, a missing one says which
files go in which folder and disables Run with that reason, its download button downloads in the
background (offline here: a one-line error naming the cause and the folder), and files put in
place by hand are found on the next look; a Trade-offs sweep on a missing dataset cannot start
either. Tiny files in the real formats come from test_data.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_data import write_dataset

ROOT = Path(__file__).resolve().parent.parent


def run_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/1_Run.py"), default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def run_button(at: AppTest):
    return at.button(key="run-start")


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_digits_is_embedded_and_runs(tmp_home):
    at = run_page()
    assert not at.exception
    assert any("digits is embedded" in c for c in texts(at.caption))
    assert not run_button(at).disabled


def test_a_missing_dataset_explains_the_folder_and_disables_run(tmp_home):
    at = run_page({"dataset": "mnist"})
    assert not at.exception
    data_root = tmp_home.parent / "data"
    (warning,) = [w for w in texts(at.warning) if "mnist" in w]
    assert str(data_root / "MNIST" / "raw").replace("_", "\\_") in warning or \
        str(data_root / "MNIST" / "raw") in warning
    assert "train-images-idx3-ubyte" in warning.replace("\\", "") and "PRUNING" in warning
    assert "--download" not in warning
    assert run_button(at).disabled
    (error,) = texts(at.error)
    assert "dataset mnist is not on this server yet" in error and "--download" not in error
    assert [b for b in at.button if b.key == "run-data-download"]


def test_files_put_in_place_are_found_and_enable_run(tmp_home):
    at = run_page({"dataset": "fashion_mnist"})
    assert run_button(at).disabled
    write_dataset(tmp_home.parent / "data", "fashion_mnist")
    at.button(key="run-data-recheck").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert any("fashion" in c and "present in" in c for c in texts(at.caption))
    assert not run_button(at).disabled


@pytest.fixture
def offline_downloads(monkeypatch):
    """torchvision's download helpers fail as they do without a connection."""
    from urllib.error import URLError

    import torchvision.datasets.mnist as tv_mnist

    def no_network(*args, **kwargs):
        raise URLError("network is unreachable")
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", no_network)


def test_download_without_network_is_a_clear_error_and_run_stays_disabled(tmp_home,
                                                                          offline_downloads):
    from ui import datasets

    at = run_page({"dataset": "mnist"})
    at.button(key="run-data-download").click().run()
    future = datasets.downloads().get("mnist", tmp_home.parent / "data")
    assert future is not None
    deadline = time.time() + 30
    while not future.done() and time.time() < deadline:
        time.sleep(0.05)
    at.run()
    assert not at.exception
    (failed,) = [e for e in texts(at.error) if e.startswith("Download failed")]
    assert "could not download mnist" in failed and "network is unreachable" in failed
    assert "may not reach the internet" in failed and "MNIST" in failed
    assert run_button(at).disabled


def test_a_sweep_on_a_missing_dataset_cannot_start(tmp_home):
    at = AppTest.from_file(str(ROOT / "pages/5_Trade-offs.py"), default_timeout=60)
    at.query_params["sweep.dataset"] = "cifar10"
    at.run()
    assert not at.exception
    (error,) = texts(at.error)
    assert error.startswith("Cannot start this sweep: dataset cifar10 is not on this server yet")
    assert "cifar-10-batches-py" in error.replace("\\", "")
    assert at.button(key="to-sweep").disabled
