"""Background jobs: a run or a sweep trains in a daemon thread while the page stays responsive.

Why threads: Streamlit runs a page's script to completion before the browser sees anything, so a
run trained inside the script would freeze the page (and its Stop button). Instead a page calls
``start_run`` / ``start_sweep`` once, when a button is pressed; the job calls
``pruning.session.run_session`` in a ``threading.Thread(daemon=True)`` with

- ``should_stop`` = a ``threading.Event`` that the Stop button sets (the run ends cleanly between
  optimizer steps and is recorded as ``stopped`` with its history), and
- ``on_event`` = a callback that copies the latest progress into the job under a lock.

The page then shows ``live_panel(job_id)``: an ``st.fragment(run_every=...)`` that re-reads the
job's progress and the store's epoch rows about once a second (live accuracy/sparsity curves) and,
when the job ends, triggers one full rerun (``st.rerun()``) so the page draws the result from the
store.

Jobs live in one process-wide ``JobManager`` (``manager()``, an ``st.cache_resource``): sessions
only keep job ids (``ui.state``), so two browser tabs each have their own independent job and
neither blocks the other. Nothing here is module-level mutable state.

Threads and CPU cores: ``torch.set_num_threads`` sets the size of torch's intra-op pool for the
whole process, not per thread. Every job sets the same value, ``job_threads()`` = half the cores
(at least 1; ``PRUNING_JOB_THREADS`` overrides), so two concurrent runs share the machine instead
of each starting a pool as large as the machine and thrashing. The small default models are
dominated by per-op overhead, so one run loses little by using half the cores. Measured on a
2-core machine that was busy with other work: the default session took 22 s with 1 thread and
360-480 s with 2 (OpenMP workers spinning against the other processes), so oversubscribing is by
far the worse mistake.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from pruning.config import ConfigError, RunConfig
from pruning.store import RunStore
from pruning.training import Event
from ui.safe_text import md

#: how often the live panel refreshes while a job runs (seconds)
REFRESH_S = 1.0
#: at most this many jobs train at once in one server; more are refused with a message
MAX_RUNNING = 4
#: finished jobs kept for their sessions to read back (oldest dropped first)
KEEP_FINISHED = 64


def job_threads() -> int:
    """Torch intra-op threads per job: ``PRUNING_JOB_THREADS``, else half the cores (≥ 1)."""
    raw = os.environ.get("PRUNING_JOB_THREADS", "")
    if raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class JobProgress:
    """An immutable copy of a job's state, safe to read from any thread."""
    job_id: str
    kind: str                      # "run" | "sweep"
    status: str = "running"        # running | done | failed | stopped
    phase: str = "preparing"       # the library's phase name (train, prune, finetune, measure …)
    step: int = 0
    total: int = 0
    within: float = 0.0            # progress of the current config, never going back
    index: int = 0                 # 1-based number of the config now training (sweeps)
    count: int = 1                 # how many configs the job trains
    metrics: dict = field(default_factory=dict)   # the latest event's metrics
    last_epoch: dict = field(default_factory=dict)  # the latest epoch_end metrics
    run_ids: tuple = ()            # runs this job created, in order
    statuses: tuple = ()           # final status of each finished run, in order
    message: str = ""
    error: str | None = None       # a one-line, user-facing reason when the job failed
    started: float = 0.0
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def run_id(self) -> str | None:
        """The run being trained now, or the last one the job trained."""
        return self.run_ids[-1] if self.run_ids else None

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1] over every config of the job."""
        if not self.running:
            return 1.0
        done = max(self.index - 1, 0)
        return min(1.0, (done + self.within) / max(self.count, 1))

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started


class _TrackingStore(RunStore):
    """A RunStore that tells the job the id of each run as soon as ``run_session`` creates it,
    so the live panel can read that run's epoch rows while it trains."""

    def __init__(self, home, on_create: Callable[[str], None]):
        super().__init__(home)
        self._on_create = on_create

    def create_run(self, config, environment=None, name=None) -> str:
        run_id = super().create_run(config, environment, name)
        self._on_create(run_id)
        return run_id


class Job:
    """One background job: trains ``configs`` one after another with ``run_session``."""

    def __init__(self, configs: Sequence[RunConfig], store: RunStore, *, kind: str = "run",
                 names: Sequence[str | None] | None = None, measure_latency: bool = True,
                 threads: int | None = None,
                 runner: Callable[..., Any] | None = None):
        if not configs:
            raise ConfigError("nothing to run: the list of configurations is empty")
        self.id = uuid.uuid4().hex[:12]
        self.configs = list(configs)
        self.names = list(names) if names is not None else [None] * len(self.configs)
        self.store_home = store.home
        self.measure_latency = measure_latency
        self.threads = threads or job_threads()
        self._runner = runner
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress = JobProgress(job_id=self.id, kind=kind, count=len(self.configs),
                                     started=time.time())
        self._thread = threading.Thread(target=self._work, name=f"pruning-job-{self.id}",
                                        daemon=True)

    # ---- control (any thread) ----------------------------------------------------------------
    def start(self) -> "Job":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to end; the run in progress is recorded as ``stopped`` with its history."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def progress(self) -> JobProgress:
        with self._lock:
            return self._progress

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, CLI-like callers); True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- worker thread ------------------------------------------------------------------------
    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._progress = replace(self._progress, **changes)

    def _add_run(self, run_id: str) -> None:
        with self._lock:
            self._progress = replace(self._progress, run_ids=self._progress.run_ids + (run_id,))

    def _on_event(self, event: Event) -> None:
        metrics = dict(event.metrics)
        changes: dict[str, Any] = {"phase": event.phase, "step": event.step, "total": event.total,
                                   "metrics": metrics}
        if event.total > 0:
            # phases after training (e.g. "measure", step 0 of 1) must not move the bar back
            with self._lock:
                changes["within"] = max(self._progress.within,
                                        min(1.0, event.step / event.total))
        if metrics.get("epoch_end"):
            changes["last_epoch"] = metrics
        # a phase's own note (e.g. "measuring FLOPs and latency"), cleared by the next event
        changes["message"] = str(metrics.get("message") or "")
        self._update(**changes)

    def _work(self) -> None:
        try:
            self._train_all()
        except BaseException as exc:  # never leave a dead job looking "running" to its page
            self._update(status="failed", finished=time.time(), message="failed",
                         error=f"{type(exc).__name__}: {exc}")

    def _train_all(self) -> None:
        import torch

        from pruning.session import run_session

        runner = self._runner or run_session
        # Process-wide setting (see the module docstring); every job sets the same value.
        torch.set_num_threads(self.threads)
        store = _TrackingStore(self.store_home, self._add_run)
        statuses: list[str] = []
        errors: list[str] = []
        for index, (config, name) in enumerate(zip(self.configs, self.names), start=1):
            if self._stop.is_set():
                break
            self._update(index=index, phase="preparing", step=0, total=0, within=0.0, metrics={},
                         last_epoch={}, message=f"preparing run {index} of {len(self.configs)}")
            try:
                run = runner(config, store, on_event=self._on_event,
                             should_stop=self._stop.is_set, name=name,
                             measure_latency=self.measure_latency)
            except ConfigError as exc:  # e.g. dataset files missing: nothing was written
                errors.append(str(exc))
                statuses.append("failed")
                self._update(statuses=tuple(statuses))
                continue
            except Exception as exc:  # the library records failed runs itself; this is a bug
                errors.append(f"{type(exc).__name__}: {exc}")
                statuses.append("failed")
                self._update(statuses=tuple(statuses))
                continue
            statuses.append(run.status)
            if run.status == "failed" and run.error:
                errors.append(run.error.splitlines()[0])
            self._update(statuses=tuple(statuses))
        if self._stop.is_set():
            status = "stopped"
        elif statuses and all(s == "failed" for s in statuses):
            status = "failed"
        else:
            status = "done"
        message = {"done": "finished", "stopped": "stopped by the user",
                   "failed": "failed"}[status]
        if errors and status != "failed":
            message += f" ({len(errors)} of {len(self.configs)} runs failed)"
        self._update(status=status, finished=time.time(), message=message,
                     error=errors[0] if errors else None)


class JobManager:
    """Process-wide registry of jobs by id; sessions hold only the ids."""

    def __init__(self, max_running: int = MAX_RUNNING, keep_finished: int = KEEP_FINISHED):
        self.max_running = max_running
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def submit(self, job: Job) -> Job:
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.is_alive())
            if running >= self.max_running:
                raise ConfigError(f"{running} runs are already training on this server; "
                                  f"wait for one to finish (or stop yours) and try again")
            finished = [k for k, j in self._jobs.items() if not j.is_alive()]
            for key in finished[:max(0, len(finished) - self.keep_finished + 1)]:
                del self._jobs[key]
            self._jobs[job.id] = job
        return job.start()

    def get(self, job_id: str | None) -> Job | None:
        if not job_id:
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.is_alive()]


@st.cache_resource(show_spinner=False)
def manager() -> JobManager:
    """The one JobManager of this Streamlit server process (shared by every session)."""
    return JobManager()


def check_config(config: RunConfig) -> None:
    """What can be refused at once, before a thread starts: ConfigError naming the fix."""
    from pruning import data, models
    from pruning.session import resolve_device

    config.validate()
    channels, size, _ = data.dataset_shape(config)
    models.check_compatible(config.model, channels, size)
    resolve_device(config.device)


def start_run(config: RunConfig, store: RunStore, *, name: str | None = None,
              measure_latency: bool = True) -> Job:
    """Validate ``config`` (ConfigError if bad) and train it in the background."""
    check_config(config)
    return manager().submit(Job([config], store, kind="run", names=[name],
                                measure_latency=measure_latency))


def start_sweep(configs: Sequence[RunConfig], store: RunStore, *,
                measure_latency: bool = True) -> Job:
    """Validate every config first (nothing starts if one is bad), then train them in turn."""
    for config in configs:
        check_config(config)
    return manager().submit(Job(configs, store, kind="sweep", measure_latency=measure_latency))


# ---- rendering --------------------------------------------------------------------------------
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
    from ui.common import fmt_pct

    m, last = p.metrics, p.last_epoch
    cols = st.columns(4)
    cols[0].metric("Epochs done", last.get("epoch", 0))
    loss = m.get("loss", last.get("train_loss"))
    cols[1].metric("Train loss", "–" if loss is None else f"{loss:.3f}")
    cols[2].metric("Test accuracy", fmt_pct(last.get("test_acc")))
    sparsity = last.get("mask_sparsity", m.get("target_sparsity"))
    cols[3].metric("Sparsity (mask)", fmt_pct(sparsity))


def _final_message(p: JobProgress) -> None:
    what = "Sweep" if p.kind == "sweep" else "Run"
    if p.status == "done" and not p.error:
        st.success(f"{what} finished in {p.elapsed_s:.0f} s.")
    elif p.status == "done":
        st.warning(md(f"{what} finished in {p.elapsed_s:.0f} s; {p.message}. First error: {p.error}"))
    elif p.status == "stopped":
        st.warning(f"{what} stopped after {p.elapsed_s:.0f} s; what it trained so far is kept "
                   "(status “stopped”).")
    else:
        st.error(md(f"{what} failed: {p.error or 'see the Runs page for details'}"))


def live_panel(job_id: str | None, *, key: str, show_curves: bool = True,
               store: RunStore | None = None) -> JobProgress | None:
    """Show a job's progress, live curves and a Stop button; None if the job is unknown.

    While the job runs, a fragment refreshes every ``REFRESH_S`` seconds without rerunning the
    page; when the job ends it reruns the whole page once so the page can draw the result. After
    that the panel shows the final status line (and returns the final progress).
    """
    job = manager().get(job_id)
    if job is None:
        return None
    started_running = job.progress().running

    @st.fragment(run_every=REFRESH_S if started_running else None)
    def panel() -> None:
        p = job.progress()
        if started_running and not p.running:
            st.rerun()  # the job ended: let the page draw the result from the store
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
            _live_curves(p, store or RunStore(job.store_home), key)

    panel()
    return job.progress()


def _live_curves(p: JobProgress, store: RunStore, key: str) -> None:
    from ui import charts

    rows = store.epochs(p.run_id)
    if not rows:
        st.caption("Curves appear after the first epoch.")
        return
    frame = pd.DataFrame(rows)
    st.plotly_chart(charts.training_curves(frame), key=f"{key}-live")
    st.caption("Test accuracy (left) and sparsity (right) after each epoch of the run"
               + (" in progress" if p.running else "")
               + ": dashed = the schedule's target, solid = the mask's actual sparsity.")
