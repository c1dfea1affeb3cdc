"""Choosing runs and reading them as frames: run pickers, run titles, run and epoch frames.

``run_picker`` / ``runs_picker`` let the user choose among ``finished_runs(...)``; ``runs_frame``
and ``epochs_frame`` turn runs and their epoch rows into pandas frames for tables and charts.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import streamlit as st

from pruning.results import METRICS
from pruning.store import Run, RunStore
from ui import formatting, page, state
from ui.charts.style import schedule_of


def run_title(run: Run) -> str:
    """A short label for pickers and legends: the run's name/label plus its id's tail."""
    return f"{formatting.run_label(run)} · {run.id[-6:]}"


RUN_COLUMNS = ("id", "label", "status", "created", "model", "dataset", "method", "schedule",
               "granularity", "scope", "target", "seed", "epochs", "sparsity")


def runs_frame(runs: Sequence[Run], titles: bool = True) -> pd.DataFrame:
    """One row per run: id, label, status, the main config fields and every summary value."""
    rows = []
    for run in runs:
        c = run.config
        row = {"id": run.id, "label": run_title(run) if titles else run.label(),
               "status": run.status, "created": run.created, "model": c.model,
               "dataset": c.dataset, "method": c.method,
               "schedule": schedule_of(c.method, c.schedule),
               "target_text": formatting.short_target(c),
               "granularity": c.granularity, "scope": c.scope, "target": c.sparsity,
               "seed": c.seed, "epochs": c.epochs}
        for metric in METRICS:  # derived ones too (the headline "sparsity")
            row[metric.key] = metric.value(run.summary)
        for key, value in run.summary.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                row.setdefault(key, value)
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))


def epochs_frame(store_: RunStore, run_ids: Sequence[str],
                 labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Epoch rows of several runs stacked, with a ``run`` column (label) and ``run_id``."""
    frames = []
    for run_id in run_ids:
        rows = page.epochs(run_id) if store_ is page.store() else store_.epochs(run_id)
        if rows:
            frame = pd.DataFrame(rows)
            frame["run_id"] = run_id
            frame["run"] = (labels or {}).get(run_id, run_id)
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["epoch", "test_acc", "target_sparsity", "mask_sparsity",
                                     "run", "run_id"])
    return pd.concat(frames, ignore_index=True)


def finished_runs(store_: RunStore | None = None, *, statuses: Sequence[str] = ("done",),
                  where: Callable[[Run], bool] | None = None) -> list[Run]:
    """Runs with one of ``statuses`` (newest first), optionally filtered by ``where``."""
    runs = [r for r in (store_.list_runs() if store_ is not None else page.runs())
            if r.status in statuses]
    return [r for r in runs if where is None or where(r)]


def run_picker(label: str, runs: Sequence[Run], *, key: str, default: str | None = None,
               help: str | None = None, param: str | None = None) -> Run | None:
    """A selectbox over ``runs`` (newest first); returns the chosen Run or None if none exist.

    Opens on the run named by the URL's ``param`` (default: ``key``), else on ``default`` when
    given and present, else on the session's last run, else the newest; the choice is written
    back to the URL.
    """
    if not runs:
        return None
    by_id = {r.id: r for r in runs}
    ids = list(by_id)
    preferred = default if default in by_id else state.last_run()
    index = ids.index(preferred) if preferred in by_id else 0
    chosen = state.linked(st.selectbox, label, ids, index=index, key=key, help=help,
                          format_func=lambda run_id: run_title(by_id[run_id]),
                          param=param or key, codec=state.choice(ids))
    return by_id.get(chosen)


def runs_picker(label: str, runs: Sequence[Run], *, key: str, default_count: int = 2,
                default: Sequence[str] | None = None, help: str | None = None,
                max_selections: int | None = None, param: str | None = None) -> list[Run]:
    """A multiselect over ``runs``; opens on the ids in the URL's ``param`` (default: ``key``),
    else on ``default`` ids or the ``default_count`` newest; the choice is written to the URL."""
    if not runs:
        return []
    by_id = {r.id: r for r in runs}
    initial = [i for i in (default or []) if i in by_id] or list(by_id)[:default_count]
    chosen = state.linked(st.multiselect, label, list(by_id), default=initial, key=key, help=help,
                          format_func=lambda run_id: run_title(by_id[run_id]),
                          max_selections=max_selections, param=param or key,
                          codec=state.choices(list(by_id), max_selections))
    return [by_id[i] for i in chosen]


def runs_with_trace(store, runs: Sequence, kind: str) -> list:
    """The runs (in the given order) that recorded at least one trace of ``kind``."""
    return [r for r in runs if kind in store.trace_kinds(r.id)]
