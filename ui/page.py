"""What every page is built on: setup, the run store, captions, user errors, links.

A page starts with ``page_setup(title, intro)``, reads runs through ``runs()`` and
``epochs()`` (cached until the store changes: every write bumps the store's ``generation``, read
for the price of one tiny query) or ``store()`` for anything else, puts a one-line
``caption`` under every chart, and wraps library calls in ``with user_errors():`` so bad input
becomes an ``st.error`` naming the fix instead of a traceback.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import streamlit as st

from pruning.config import ConfigError
from pruning.store import Run, RunStore, StoreUnreadableError, home_dir
from ui import state, store_health
from ui.safe_text import md

APP_TITLE = "Pruning Explorer"


def page_setup(title: str, intro: str | None = None, *, icon: str = "✂️") -> None:
    """Page config, title, a one-paragraph intro and the sidebar's status lines."""
    try:
        st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=icon, layout="wide")
    except st.errors.StreamlitAPIException:
        pass  # already set by the navigation entry point for this run
    st.title(title)
    if intro:
        st.markdown(intro)
    _sidebar()
    store_health.guard(store())  # an unreadable store: one error and a way out, not a traceback


def _sidebar() -> None:
    from ui import live  # imported here: live imports this module (store, user_errors)

    with st.sidebar:
        st.caption(f"**{APP_TITLE}** — see what pruning does to a network: which layers lose "
                   "how much, how masks change during training, and what it buys in accuracy, "
                   "size, FLOPs and latency.")
        running = [job for job in map(live.manager().get, state.session_jobs().values())
                   if job is not None and job.progress().running]
        if running:
            # drawn once per page run, so no live percentage here: the page that started the
            # job shows that
            st.info(f"{len(running)} of your runs or sweeps {'is' if len(running) == 1 else 'are'}"
                    " training in the background; the page you started it on shows its progress.")
        st.caption(f"Runs are stored in `{store().home}`.")


def store() -> RunStore:
    """The run store (``PRUNING_HOME``, default ``~/.pruning``): one object per home folder,
    shared by every session and job thread (it keeps one SQLite connection per thread)."""
    return _store_at(str(home_dir()))


@st.cache_resource(show_spinner=False)
def _store_at(home: str) -> RunStore:
    return RunStore(home)


def runs(status: str | None = None, limit: int | None = None, offset: int = 0) -> list[Run]:
    """``store().list_runs(...)``, cached until a run is added, changed or deleted (by any
    process), and at most a minute (a run whose process died is then noticed)."""
    current = store()
    return list(_cached_runs(str(current.home), current.generation("runs"), status, limit,
                             offset, int(time.time() // RUNS_TTL_S)))


#: how long a cached list of runs is kept without a store change (a run whose process died is
#: noticed by the next read after this)
RUNS_TTL_S = 60


@st.cache_resource(show_spinner=False, max_entries=32)
def _cached_runs(home: str, generation: int, status: str | None, limit: int | None,
                 offset: int, period: int) -> tuple[Run, ...]:
    # cache_resource, not cache_data: the same Run objects for every rerun and session instead
    # of unpickling 1,000 of them at each rerun (60 ms a page). Pages only read runs; the
    # caller gets its own list. ``period`` renews the entry every RUNS_TTL_S seconds.
    return tuple(_store_at(home).list_runs(status=status, limit=limit, offset=offset))


def epochs(run_id: str) -> list[dict]:
    """``store().epochs(run_id)``, cached until the store's history changes."""
    current = store()
    return _cached_epochs(str(current.home), current.generation("history"), run_id)


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_epochs(home: str, generation: int, run_id: str) -> list[dict]:
    return _store_at(home).epochs(run_id)


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Turn ConfigError (bad input, unknown run …) into ``st.error`` with the library's message."""
    try:
        yield
    except StoreUnreadableError as exc:
        store_health.offer_fresh_store(store(), exc)
    except ConfigError as exc:  # messages echo user input (names, URL values): shown as text
        st.error(md(f"{prefix}{exc}"))


def caption(text: str) -> None:
    """The one-line “what am I looking at” under a chart."""
    st.caption(text)


def charts_side_by_side(*charts: tuple[Any, str, str]) -> None:
    """Plotly figures in equal columns, each ``(figure, widget key, caption)``."""
    for column, (figure, key, text) in zip(st.columns(len(charts)), charts):
        with column:
            st.plotly_chart(figure, key=key)
            caption(text)


def page_link(path: str, label: str) -> None:
    """``st.page_link`` to another page of the app; plain text when the page runs on its own
    (``streamlit run pages/x.py`` or a test), where Streamlit knows no other pages."""
    try:
        st.page_link(path, label=label)
    except st.errors.StreamlitAPIException:
        name = path.rsplit("/", 1)[-1].removesuffix(".py").split("_", 1)[-1].replace("_", " ")
        st.markdown(f"{label} (the *{name}* page in the sidebar)")
