"""What every page needs: setup, the store, run pickers, empty states, captions, user errors.

A page starts with ``page_setup(title, intro)``, reads runs through ``store()``, lets the user
choose runs with ``run_picker`` / ``runs_picker``, shows ``empty_state(...)`` when there is nothing
to draw (a message plus a button that trains the session that would fill it), puts a one-line
``caption`` under every chart, and wraps library calls in ``with user_errors():`` so bad input
becomes an ``st.error`` naming the fix instead of a traceback.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import streamlit as st

from pruning.config import ConfigError, RunConfig
from pruning.results import METRICS, Metric, time_breakdown_text
from pruning.store import Run, RunStore, StoreUnreadableError, home_dir
from ui import jobs, live, state, store_health
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


# ---- formatting -------------------------------------------------------------------------------
def fmt_pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}%}"


def fmt_int(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def fmt_mflops(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value) / 1e6:.2f} M"


def fmt_ms(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.2f} ms"


#: how st.dataframe shows each metric format of pruning.results.FORMATS
COLUMN_FORMATS = {"pct": "percent", "int": "localized", "mflops": "compact", "ms": "%.2f ms",
                  "s": "%.1f s", "float": "%.4g"}


def metric_column(metric: Metric) -> Any:
    """The column config of a metric in ``st.dataframe``: its label, format and help."""
    return st.column_config.NumberColumn(metric.label, format=COLUMN_FORMATS[metric.fmt],
                                         help=metric.description or None)


def metric_columns(view: str) -> dict[str, Any]:
    """Column configs of every metric shown in ``view`` (pruning.results.VIEWS), in order."""
    return {metric.key: metric_column(metric) for metric in METRICS.view(view)}


def metric_tiles(summary: dict[str, Any], view: str, per_row: int = 5) -> None:
    """``st.metric`` tiles of the metrics shown in ``view`` (missing values as "–")."""
    metrics = METRICS.view(view)
    for start in range(0, len(metrics), per_row):
        for col, metric in zip(st.columns(per_row), metrics[start:start + per_row]):
            col.metric(metric.label[:1].upper() + metric.label[1:],
                       metric.text(metric.value(summary)), help=metric.description or None)


def fmt_time(epoch_seconds: float | None) -> str:
    if not epoch_seconds:
        return "–"
    return dt.datetime.fromtimestamp(epoch_seconds).strftime("%Y-%m-%d %H:%M")


def run_title(run: Run) -> str:
    """A short label for pickers and legends: the run's name/label plus its id's tail."""
    return f"{run.label()} · {run.id[-6:]}"


# ---- frames -----------------------------------------------------------------------------------
RUN_COLUMNS = ("id", "label", "status", "created", "model", "dataset", "method", "schedule",
               "granularity", "scope", "target", "seed", "epochs", "sparsity")


def runs_frame(runs: Sequence[Run], titles: bool = True) -> pd.DataFrame:
    """One row per run: id, label, status, the main config fields and every summary value."""
    rows = []
    for run in runs:
        c = run.config
        row = {"id": run.id, "label": run_title(run) if titles else run.label(),
               "status": run.status, "created": run.created, "model": c.model,
               "dataset": c.dataset, "method": c.method, "schedule": c.schedule,
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
        rows = store_.epochs(run_id)
        if rows:
            frame = pd.DataFrame(rows)
            frame["run_id"] = run_id
            frame["run"] = (labels or {}).get(run_id, run_id)
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["epoch", "test_acc", "target_sparsity", "mask_sparsity",
                                     "run", "run_id"])
    return pd.concat(frames, ignore_index=True)


# ---- pickers ----------------------------------------------------------------------------------
def finished_runs(store_: RunStore | None = None, *, statuses: Sequence[str] = ("done",),
                  where: Callable[[Run], bool] | None = None) -> list[Run]:
    """Runs with one of ``statuses`` (newest first), optionally filtered by ``where``."""
    runs = [r for r in (store_ or store()).list_runs() if r.status in statuses]
    return [r for r in runs if where is None or where(r)]


def run_picker(label: str, runs: Sequence[Run], *, key: str, default: str | None = None,
               help: str | None = None) -> Run | None:
    """A selectbox over ``runs`` (newest first); returns the chosen Run or None if none exist.

    Opens on ``default`` when given and present, else on the session's last run, else the newest.
    """
    if not runs:
        return None
    by_id = {r.id: r for r in runs}
    ids = list(by_id)
    preferred = default if default in by_id else state.last_run()
    index = ids.index(preferred) if preferred in by_id else 0
    chosen = st.selectbox(label, ids, index=index, key=key, help=help,
                          format_func=lambda run_id: run_title(by_id[run_id]))
    return by_id.get(chosen)


def runs_picker(label: str, runs: Sequence[Run], *, key: str, default_count: int = 2,
                default: Sequence[str] | None = None, help: str | None = None,
                max_selections: int | None = None) -> list[Run]:
    """A multiselect over ``runs``; opens on ``default`` ids or the ``default_count`` newest."""
    if not runs:
        return []
    by_id = {r.id: r for r in runs}
    initial = [i for i in (default or []) if i in by_id] or list(by_id)[:default_count]
    chosen = st.multiselect(label, list(by_id), default=initial, key=key, help=help,
                            format_func=lambda run_id: run_title(by_id[run_id]),
                            max_selections=max_selections)
    return [by_id[i] for i in chosen]


# ---- empty states -----------------------------------------------------------------------------
DEFAULT_SESSION_LABEL = "Run the default session (small CNN · digits · one-cycle · 90 %)"


def default_config() -> RunConfig:
    """The default session: small CNN on the embedded digits, magnitude, one-cycle, 90 %."""
    return RunConfig()


def empty_state(message: str, *, key: str, config: RunConfig | None = None,
                button: str | None = None, configs: Sequence[RunConfig] | None = None) -> None:
    """Say what to run to fill this page, with a button that runs it here, with live progress.

    ``config`` defaults to the default session; ``configs`` (several) starts a sweep instead.
    When the job ends the page reruns and, now that the store has data, draws it.
    """
    st.info(message)
    slot = f"empty:{key}"
    label = button or (DEFAULT_SESSION_LABEL if config is None and not configs
                       else "Run it now")
    if st.button(label, key=f"{key}-empty-run", type="primary", disabled=slot_running(slot)):
        start_job(slot, list(configs) if configs else [config or default_config()])
    show_job(slot)


def show_job(slot: str, *, show_curves: bool = True) -> jobs.JobProgress | None:
    """The live panel of the job this session started in ``slot``; remembers its last run."""
    progress = live.live_panel(state.job_id(slot), key=slot, show_curves=show_curves)
    if progress is None:
        state.clear_job(slot)
        return None
    if not progress.running:
        state.set_last_run(progress.run_id)
    return progress


def start_job(slot: str, configs: Sequence[RunConfig], *, name: str | None = None,
              measure_latency: bool = True) -> None:
    """Start a run (one config) or a sweep (several) for ``slot`` and rerun the page so it shows
    the live panel; on bad input show st.error (naming the fix) and return."""
    with user_errors():
        if len(configs) == 1:
            job = live.start_run(configs[0], store(), name=name, measure_latency=measure_latency)
        else:
            job = live.start_sweep(configs, store(), measure_latency=measure_latency)
        state.set_job(slot, job.id)
        st.rerun()  # redraw the page with its start button disabled and the live panel
    return None


def slot_running(slot: str) -> bool:
    """True while the job this session started in ``slot`` is training."""
    job = live.manager().get(state.job_id(slot))
    return job is not None and job.progress().running


# ---- one run's report -------------------------------------------------------------------------
def run_report(run: Run, *, key: str, store_: RunStore | None = None,
               curves: bool = True) -> None:
    """A run's result: status, the sparsities and ratios side by side, curves, per-layer bars."""
    from ui import charts, forms

    store_ = store_ or store()
    s = run.summary
    if run.status == "failed":
        st.error(md(f"This run failed: {(run.error or 'no reason recorded').splitlines()[0]}"))
    elif run.status == "stopped":
        st.warning(f"This run was stopped after {s.get('epochs_done', 0)} epoch(s); "
                   "its history up to then is kept.")
    elif run.status == "running":
        st.info("This run is still training; its history so far is shown.")
    missing = store_.missing_files(run.id, run.status)
    if missing:
        st.warning(md(f"Run {run.id}'s files are incomplete: {', '.join(missing[:5])}"
                      f"{' …' if len(missing) > 5 else ''} missing in {store_.run_dir(run.id)}. "
                      f"Its history and summary below are intact; what needs those files "
                      f"(mask pictures, export) cannot be made for it."))
    metric_tiles(s, "detail")
    if s.get("latency_device"):
        caption(f"Latency: median over batches of {s.get('latency_batch_size', '–')} on "
                f"{s['latency_device']}, the final model after physical removal.")
    where_time_went = time_breakdown_text(s)
    if where_time_went:
        caption(f"Where the time went: {where_time_went}.")
    rows = store_.epochs(run.id)
    if curves and rows:
        st.plotly_chart(charts.training_curves(pd.DataFrame(rows)), key=f"{key}-curves")
        caption("Test accuracy (left) and sparsity (right) after each epoch: dashed = the "
                "schedule's target, solid = the mask's actual sparsity.")
    if s:
        left, right = st.columns(2)
        with left:
            st.plotly_chart(charts.sparsity_bars({run.label(): s}, height=340),
                            key=f"{key}-sparsity")
            caption("Three sparsities side by side (target, mask, effective), then the share of "
                    "all parameters that are zero and of FLOPs skipped or removed.")
        layers = next((r["layer_sparsity"] for r in reversed(rows) if r.get("layer_sparsity")),
                      None)
        with right:
            if layers:
                st.plotly_chart(charts.layer_bars(layers, title=None), key=f"{key}-layers")
                caption("Final sparsity of each prunable layer, input side on top: a global "
                        "criterion lets layers differ, a layerwise one prunes each equally.")
    with st.expander("Configuration and command line"):
        st.code(forms.cli_command(run.config), language="bash")
        st.json(run.config.to_dict(), expanded=False)


def page_link(path: str, label: str) -> None:
    """``st.page_link`` to another page of the app; plain text when the page runs on its own
    (``streamlit run pages/x.py`` or a test), where Streamlit knows no other pages."""
    try:
        st.page_link(path, label=label)
    except st.errors.StreamlitAPIException:
        name = path.rsplit("/", 1)[-1].removesuffix(".py").split("_", 1)[-1].replace("_", " ")
        st.markdown(f"{label} (the *{name}* page in the sidebar)")
