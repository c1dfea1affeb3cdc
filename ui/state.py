"""What one browser session remembers, in ``st.session_state``: ids and choices, never models.

Streamlit reruns a page's script on every interaction, so anything that must outlive a rerun goes
here. Keys are namespaced strings so pages cannot collide; values are plain ids (job ids, run ids)
that are looked up again in the job manager or the store, because the objects they name can be
large (models) or shared by other sessions (the store). One process serves many users, so none of
this is module-level state: ``st.session_state`` is per browser session.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

_JOB = "job:"
_RUNS = "runs:"


def job_id(slot: str) -> str | None:
    """The id of the background job this session started in ``slot`` (a page's name), if any."""
    return st.session_state.get(_JOB + slot)


def set_job(slot: str, job: str) -> None:
    st.session_state[_JOB + slot] = job


def clear_job(slot: str) -> None:
    st.session_state.pop(_JOB + slot, None)


def session_jobs() -> dict[str, str]:
    """{slot: job id} for every job this session started and has not cleared."""
    return {k[len(_JOB):]: v for k, v in st.session_state.items()
            if isinstance(k, str) and k.startswith(_JOB) and v}


def chosen_runs(key: str) -> list[str]:
    """Run ids chosen under ``key`` (e.g. the Runs page's comparison), in the order chosen."""
    return list(st.session_state.get(_RUNS + key, []))


def set_chosen_runs(key: str, run_ids: list[str]) -> None:
    st.session_state[_RUNS + key] = list(run_ids)


def remember(key: str, value: Any) -> None:
    """Keep a small choice (a string, a number, a list of ids) for this session."""
    st.session_state["choice:" + key] = value


def recall(key: str, default: Any = None) -> Any:
    return st.session_state.get("choice:" + key, default)


def last_run() -> str | None:
    """The run this session trained most recently (pages open on it by default)."""
    return st.session_state.get("last_run")


def set_last_run(run_id: str | None) -> None:
    if run_id:
        st.session_state["last_run"] = run_id
