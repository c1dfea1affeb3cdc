"""The run store's health, checked on every page before it reads runs.

- runs.db that SQLite cannot read: one error naming the file and the fix, and a button that moves
  it aside (the old file is kept, renamed ``runs.db.damaged-<time>``) so a fresh store starts;
  the page stops there instead of showing a traceback.
- rows that cannot be decoded: a warning listing them (the other runs show as usual).
- config fields written by a newer version: a caption saying they are kept but not used.
"""
from __future__ import annotations

import streamlit as st

from pruning.store import RunStore, StoreUnreadableError
from ui.safe_text import md

MOVED_KEY = "store-moved-aside"


def guard(store: RunStore) -> None:
    """Check ``store`` for the page about to read it; on an unreadable store offer to move it
    aside and stop the page."""
    moved = st.session_state.pop(MOVED_KEY, None)
    if moved:
        st.success(md(f"The damaged store was moved to {moved} (kept for recovery); a fresh "
                      f"store starts with the next run."))
    try:
        store.check()
        damaged, newer = _findings(str(store.home), store.generation("runs"))
    except StoreUnreadableError as exc:
        offer_fresh_store(store, exc)
        st.stop()
    if damaged:
        lines = "\n".join(f"- {md(bad.describe())}" for bad in damaged)
        st.warning(f"{len(damaged)} run(s) in the store cannot be read and are left out of every "
                   f"list; the others are fine:\n{lines}")
    if newer:
        fields = sorted({k for r in newer for k in r.unknown_fields})
        st.caption(md(f"{len(newer)} run(s) were written by a newer version: their config "
                      f"fields {', '.join(fields)} are kept in the store but not used here."))


@st.cache_data(show_spinner=False, max_entries=8)
def _findings(home: str, generation: int) -> tuple[list, list]:
    """(damaged rows, runs with fields of a newer version): read once per store change, not on
    every page load (each reads and decodes every run row)."""
    store = RunStore(home)
    try:
        if not store.db_path.exists():
            return [], []
        return store.damaged_runs(), [r for r in store.list_runs() if r.unknown_fields]
    finally:
        store.close()


def offer_fresh_store(store: RunStore, exc: StoreUnreadableError) -> None:
    """The unreadable store's error, and a button that moves it aside (keeping it)."""
    st.error(md(str(exc)))
    if st.button("Move the damaged store aside and start a fresh one", key="store-move-aside",
                 type="primary", help="Renames runs.db (and its -wal/-shm files) to "
                                      "runs.db.damaged-<time> in the same folder; nothing is "
                                      "deleted."):
        st.session_state[MOVED_KEY] = str(store.move_aside())
        st.rerun()
