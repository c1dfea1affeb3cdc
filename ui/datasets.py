"""Which datasets this server has, and getting the missing ones: the Run form's dataset panel.

``dataset_panel(name)`` sits under the dataset choice. A dataset whose files are present (digits
is embedded: always) gets one line saying so. A missing one gets the exact folder and files that
``PRUNING_DATA`` needs and a button that downloads it with torchvision in a background thread;
while that runs the panel refreshes itself, and a failure (no network from this server, a full
disk) is shown as one error line with the same folder explanation. The panel returns why the
dataset cannot be used yet, so the page disables Run with that reason.

Downloads are shared by every session of the server process (``Downloads``, one per process via
``st.cache_resource``), so two visitors asking for the same dataset start one download.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import streamlit as st

from pruning import data
from ui.safe_text import md


class Downloads:
    """Background dataset downloads of this server process, one per (data folder, dataset)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-download")
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, str], Future] = {}

    def start(self, name: str, root: Path) -> Future:
        """Start downloading ``name`` into ``root`` unless that is already under way."""
        with self._lock:
            key = (str(root), name)
            future = self._futures.get(key)
            if future is None or future.done():
                future = self._pool.submit(data.download, name, root)
                self._futures[key] = future
            return future

    def get(self, name: str, root: Path) -> Future | None:
        with self._lock:
            return self._futures.get((str(root), name))


@st.cache_resource(show_spinner=False)
def downloads() -> Downloads:
    return Downloads()


def unavailable(name: str) -> str | None:
    """Why dataset ``name`` cannot be used on this server now (its files are missing), or None."""
    root = data.data_root()
    if data.available(name, root):
        return None
    return (f"dataset {name} is not on this server yet: download it on the Run page (under the "
            f"dataset choice) or put its files in {root / data.dataset_class(name).folder}")


def dataset_panel(name: str, *, key: str) -> str | None:
    """Under the dataset choice: present, downloading, failed or missing (with the folder to
    fill and a download button). Returns why the dataset cannot be used now, else None."""
    root = data.data_root()
    cls = data.dataset_class(name)
    reason = unavailable(name)
    if reason is None:
        where = "embedded in the app" if not hasattr(cls, "folder") else \
            f"present in {root / cls.folder}"
        st.caption(md(f"✓ {name} is {where}."))
        return None
    future = downloads().get(name, root)
    if future is not None and not future.done():
        _downloading(name, root)
        return reason
    failed = future.exception() if future is not None else None
    if failed is not None:
        st.error(md(f"Download failed: {failed}. This server may not reach the internet; "
                    f"instead, {data.placement(name, root)}."))
    else:
        st.warning(md(f"{name} is not on this server. Download it (about {cls.download_mb} MB "
                      f"from torchvision's mirrors), or {data.placement(name, root)}."))
    left, right = st.columns(2)
    if left.button(f"Download {name} (~{cls.download_mb} MB)", key=f"{key}-download"):
        downloads().start(name, root)
        st.rerun()
    right.button("Check the folder again", key=f"{key}-recheck",
                 help="after copying the files in by hand")
    return reason


@st.fragment(run_every=1.0)
def _downloading(name: str, root: Path) -> None:
    """A self-refreshing line while the download runs; the whole page reruns when it ends (so
    Run is enabled, or the failure shown)."""
    future = downloads().get(name, root)
    if future is None or future.done():
        st.rerun(scope="app")
    st.info(md(f"Downloading {name} into {root} in the background … (the page updates when it "
               "is done)"))
