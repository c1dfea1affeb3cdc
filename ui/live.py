"""Live jobs in the app: the server's one ``JobManager``, starting jobs for the visitor, the
live panel of a job (progress, curves, Stop) and the list of every running job (Runs page).

Pages start jobs through ``start_job(slot, configs)`` and show them with ``show_job(slot)``; a
page with nothing to draw calls ``empty_state(...)``: a message plus a button that trains the
session that would fill it, here, with live progress.

The engine (``ui.jobs``) imports no Streamlit; this module ties it to the Streamlit server: the
visitor who starts a job is the browser session (``owner``), and the session's connection to
the server says whether that visitor is still there (``owner_present``). The live panel is an
``st.fragment(run_every=REFRESH_S)`` that re-reads the job's progress (per-step curves kept by the
job) 2.5 times a second and, when the job ends, draws the outcome and the run's curves, then
triggers one full rerun so the page draws what the run changed.

Jobs live in one process-wide ``JobManager`` (``manager()``, an ``st.cache_resource``): sessions
only keep job ids (``ui.state``), so two browser tabs each have their own independent job and
neither blocks the other.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import streamlit as st

from pruning.config import ConfigError, RunConfig
from pruning.store import RunStore
from ui import page, state
from ui.charts.training import LIVE_COLUMNS, SPARSITY_LINES, live_curves, training_curves
from ui.formatting import fmt_pct
from ui.jobs import Job, JobLimits, JobManager, JobProgress, check_config
from ui.safe_text import md

#: how often the live panel and the running-jobs list refresh while a job runs (seconds)
REFRESH_S = 0.4  # the library reports progress at 4 Hz; redraw at 2.5 Hz


def limits() -> JobLimits:
    """This server's job limits (environment); a bad value stops the page with one line."""
    try:
        return JobLimits.from_env()
    except ConfigError as exc:
        st.error(f"The server's settings are wrong: {exc}")
        st.stop()


def manager() -> JobManager:
    """The one JobManager of this Streamlit server process (shared by every session)."""
    return _manager(limits())


@st.cache_resource(show_spinner=False)
def _manager(job_limits: JobLimits) -> JobManager:
    return JobManager(job_limits)


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else None


def _presence(session_id: str) -> Callable[[], bool]:
    """Whether the browser session ``session_id`` is still connected (True where no server
    runs, e.g. in script tests: nobody can leave then)."""
    def present() -> bool:
        from streamlit.runtime import Runtime

        return not Runtime.exists() or Runtime.instance().is_active_session(session_id)
    return present


def _submit(configs: Sequence[RunConfig], store: RunStore, **options) -> Job:
    jobs = manager()
    for config in configs:  # nothing starts if one is bad
        check_config(config, jobs.limits)
    owner = _session_id()
    return jobs.submit(Job(configs, store, limits=jobs.limits, owner=owner,
                           owner_present=_presence(owner) if owner else None, **options))


def start_run(config: RunConfig, store: RunStore, *, name: str | None = None,
              measure_latency: bool = True) -> Job:
    """Validate ``config`` (ConfigError if bad or over a limit) and train it in the background."""
    return _submit([config], store, kind="run", names=[name], measure_latency=measure_latency)


def start_sweep(configs: Sequence[RunConfig], store: RunStore, *,
                measure_latency: bool = True) -> Job:
    """Validate every config first (nothing starts if one is bad), then train them in turn."""
    return _submit(configs, store, kind="sweep", measure_latency=measure_latency)


# ---- rendering -------------------------------------------------------------------------------
def _progress_text(p: JobProgress) -> str:
    parts = [f"{p.fraction:.0%}"]
    if p.count > 1:
        parts.append(f"run {max(p.index, 1)} of {p.count}")
    m = p.metrics
    if p.running:
        parts.append(p.phase)
        if m.get("epoch") is not None and not m.get("epoch_end"):
            parts.append(f"epoch {m['epoch']}")
    parts.append(f"{p.elapsed_s:.0f} s elapsed")
    return " · ".join(parts)


def _metrics_row(p: JobProgress) -> None:
    m, last = p.metrics, p.last_epoch
    cols = st.columns(5)
    cols[0].metric("Epochs done", last.get("epoch", 0))
    loss = m.get("loss", last.get("train_loss"))
    cols[1].metric("Train loss", "–" if loss is None else f"{loss:.3f}")
    cols[2].metric("Train accuracy", fmt_pct(m.get("train_acc_running", last.get("train_acc"))))
    cols[3].metric("Test accuracy", fmt_pct(last.get("test_acc")))
    sparsity = m.get("mask_sparsity", last.get("mask_sparsity", m.get("target_sparsity")))
    cols[4].metric("Sparsity (mask)", fmt_pct(sparsity))


def _final_message(p: JobProgress) -> None:
    what = "Sweep" if p.kind == "sweep" else "Run"
    if p.status == "done" and not p.error:
        st.success(f"{what} finished in {p.elapsed_s:.0f} s.")
    elif p.status == "done":
        st.warning(md(f"{what} finished in {p.elapsed_s:.0f} s; {p.message}. First error: {p.error}"))
    elif p.status == "stopped":
        reason = p.stop_reason or "stopped"
        st.warning(f"{what} {reason[0].lower()}{reason[1:]} after {p.elapsed_s:.0f} s; what it "
                   "trained so far is kept (status “stopped”).")
    else:
        st.error(md(f"{what} failed: {p.error or 'see the Runs page for details'}"))


def live_panel(job_id: str | None, *, key: str, show_curves: bool = True,
               store: RunStore | None = None) -> JobProgress | None:
    """Show a job's progress, live curves and a Stop button; None if the job is unknown.

    While the job runs, a fragment refreshes every ``REFRESH_S`` seconds without rerunning the
    page; when the job ends the fragment draws the outcome and the run's curves, then reruns the
    whole page once so the page can draw what the run changed. After that the panel shows the
    final status line (and returns the final progress).
    """
    job = manager().get(job_id)
    if job is None:
        return None
    started_running = job.progress().running

    @st.fragment(run_every=REFRESH_S if started_running else None)
    def panel() -> None:
        p = job.progress()
        ended_now = started_running and not p.running
        if p.running:
            st.progress(p.fraction, text=_progress_text(p))
            _metrics_row(p)
            stop_col, msg_col = st.columns([1, 5])
            if stop_col.button("Stop", key=f"{key}-stop", disabled=job.stop_requested,
                               help="End the run cleanly after the current step; its history is kept."):
                job.stop()
            if job.stop_requested:
                msg_col.caption("stopping after the current step…")
            if p.message:
                msg_col.caption(p.message)
        else:
            _final_message(p)
        if show_curves and p.run_id and (p.running or p.kind == "run"):
            _live_curves(p, store or job.store, key)
        if ended_now:
            # The job ended: its outcome and curves are drawn above already (the visitor sees
            # them at once); now the whole page reruns to draw what the new run changes.
            st.rerun()

    panel()
    return job.progress()


def _live_curves(p: JobProgress, store: RunStore, key: str) -> None:
    """While the run trains: its per-step curves (from the job, no store read); after: the
    per-epoch test accuracy and sparsity from the store."""
    if p.running and p.curve:
        st.plotly_chart(live_curves(pd.DataFrame(list(p.curve), columns=LIVE_COLUMNS)),
                        key=f"{key}-steps")
        st.caption("The run in progress, step by step: running training loss and accuracy "
                   "(smoothed over the last batches) and sparsity (dashed = the schedule's "
                   "target, solid = the mask).")
        return
    rows = store.epochs(p.run_id)
    if not rows:
        st.caption("Curves appear after the first epoch.")
        return
    frame = pd.DataFrame(rows)
    st.plotly_chart(training_curves(frame), key=f"{key}-live")
    st.caption("Test accuracy (left) and sparsity (right) after each epoch of the run"
               + (" in progress" if p.running else "")
               + f": {SPARSITY_LINES}.")


def running_jobs(*, key: str = "running") -> None:
    """Every job training on this server, newest first, each with its progress and Stop.

    Any visitor can stop any job here, as any visitor can rename or delete any run: the app has
    no accounts, and the job limits keep one visitor from taking the whole server. The list
    refreshes every ``REFRESH_S`` seconds while something runs.
    """
    jobs = manager()
    me = _session_id()

    @st.fragment(run_every=REFRESH_S if jobs.running() else None)
    def listing() -> None:
        running = list(reversed(jobs.running()))
        if not running:
            st.caption("Nothing is training on this server now.")
            return
        job_limits = jobs.limits
        st.caption(f"{len(running)} of at most {job_limits.max_jobs} jobs training; each stops "
                   f"after {job_limits.max_seconds:g} s, or {job_limits.left_grace_s:g} s after "
                   "its visitor leaves. Stop ends a run after its current step; its history is "
                   "kept.")
        for job in running:
            p = job.progress()
            whose = "yours" if me is not None and job.owner == me else "another visitor's"
            what = (f"sweep of {p.count} runs" if p.kind == "sweep" else "run") + f" ({whose})"
            run = f" · run `{p.run_id}`" if p.run_id else ""
            text_col, stop_col = st.columns([5, 1], vertical_alignment="center")
            text_col.progress(p.fraction, text=f"{what}{run} · {_progress_text(p)}")
            if stop_col.button("Stop", key=f"{key}-stop-{job.id}", disabled=job.stop_requested,
                               help="End this job cleanly after the current step."):
                job.stop()
                st.rerun(scope="fragment")

    listing()


# ---- jobs a page starts -----------------------------------------------------------------------
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


def show_job(slot: str, *, show_curves: bool = True) -> JobProgress | None:
    """The live panel of the job this session started in ``slot``; remembers its last run."""
    progress = live_panel(state.job_id(slot), key=slot, show_curves=show_curves)
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
    with page.user_errors():
        if len(configs) == 1:
            job = start_run(configs[0], page.store(), name=name, measure_latency=measure_latency)
        else:
            job = start_sweep(configs, page.store(), measure_latency=measure_latency)
        state.set_job(slot, job.id)
        st.rerun()  # redraw the page with its start button disabled and the live panel
    return None


def slot_running(slot: str) -> bool:
    """True while the job this session started in ``slot`` is training."""
    job = manager().get(state.job_id(slot))
    return job is not None and job.progress().running
