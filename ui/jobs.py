"""Background jobs: runs and sweeps that train in daemon threads, within the server's limits.

This is the engine; it imports no Streamlit (``ui.live`` draws jobs and keeps the one
``JobManager`` of a server process). Why threads: Streamlit runs a page's script to completion
before the browser sees anything, so a run trained inside the script would freeze the page (and
its Stop button). Instead a page starts a ``Job`` once, when a button is pressed; the job runs
its configs through ``pruning.sweeps.run_sweep`` in a ``threading.Thread(daemon=True)`` (a sweep
trains each run as a Ray task and this process writes the store; a single run calls
``pruning.session.run_session`` in the thread itself) with

- ``should_stop`` = the job's ``should_stop``: true once Stop was pressed, the job ran past the
  server's time limit, or the visitor who started it has left (the run ends cleanly within one
  step or one scoring pass and is recorded as ``stopped`` with its history), and
- ``on_event`` = a callback that copies the latest progress into the job under a lock; the
  session's ``created`` event tells the job the id of each run as soon as its row exists, so
  the live panel can read that run's epoch rows while it trains.

Limits (``JobLimits``, read from the environment so a lab server can set them): epochs per run,
every whole-number method setting (SynFlow and i-SpaSP iterations, i-SpaSP pruning batches, ADMM
rounds …), seconds per job, jobs per server and jobs per visitor. A config over a limit is refused
before anything starts, with one line naming the limit and its variable.

A visitor who leaves (closes the tab, loses the connection) cannot see or stop their job any more
from their page, yet it would keep a share of the server's cores: such a job stops once its
visitor has been gone for ``left_grace_s`` (a reconnect within that time keeps it). Its history
is kept, as for any stopped run. Every running job is also listed, with Stop, on the Runs page.

Threads and CPU cores: ``torch.set_num_threads`` sets the size of torch's intra-op pool for the
whole process, not per thread. Every job sets the same value, ``job_threads()`` = half the cores
(at least 1; ``PRUNING_JOB_THREADS`` overrides), so two concurrent runs share the machine instead
of each starting a pool as large as the machine and thrashing. Measured on a 2-core machine that
was busy with other work: the default session took 22 s with 1 thread and 360-480 s with 2
(OpenMP workers spinning against the other processes), so oversubscribing is the worse mistake.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from pruning.config import ConfigError, RunConfig
from pruning.store import RunStore
from pruning.training import Event
from ui.safe_text import md

#: finished jobs kept for their sessions to read back (oldest dropped first)
KEEP_FINISHED = 64
#: how often (seconds) a running job asks whether its visitor is still connected
PRESENCE_EVERY_S = 1.0


def job_threads() -> int:
    """Torch intra-op threads per job: ``PRUNING_JOB_THREADS``, else half the cores (≥ 1)."""
    raw = os.environ.get("PRUNING_JOB_THREADS", "")
    if raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class JobLimits:
    """What one server lets a job do. Each field is set by the environment variable in
    ``JobLimits.VARIABLES`` (README, "Serving the app"); the defaults suit a lab server."""
    max_epochs: int = 200               # epochs of one run
    max_method_iterations: int = 1000   # every whole-number method setting (iterations, rounds …)
    max_seconds: float = 3600.0         # wall time of one job (a sweep counts as one job)
    max_jobs: int = 4                   # jobs training at once on the server
    max_jobs_per_visitor: int = 2       # jobs one browser session may have training at once
    left_grace_s: float = 30.0          # a job stops once its visitor has been gone this long

    VARIABLES = {
        "max_epochs": "PRUNING_MAX_EPOCHS",
        "max_method_iterations": "PRUNING_MAX_METHOD_ITERATIONS",
        "max_seconds": "PRUNING_MAX_JOB_SECONDS",
        "max_jobs": "PRUNING_MAX_JOBS",
        "max_jobs_per_visitor": "PRUNING_MAX_JOBS_PER_VISITOR",
        "left_grace_s": "PRUNING_LEFT_GRACE_SECONDS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "JobLimits":
        """The limits set in the environment (others at their defaults); ConfigError if one is
        not a positive number."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(cls.VARIABLES[f.name], "").strip()
            if not raw:
                continue
            kind = int if f.type == "int" else float
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not value > 0 or value == float("inf"):
                raise ConfigError(f"{cls.VARIABLES[f.name]}={raw!r} is not a positive "
                                  f"{'whole number' if kind is int else 'number'}; unset it for "
                                  f"the default ({getattr(cls(), f.name):g}) or give one")
            values[f.name] = value
        return cls(**values)

    def check(self, config: RunConfig) -> None:
        """ConfigError naming the limit and its variable when ``config`` asks for more work."""
        if config.epochs > self.max_epochs:
            raise ConfigError(f"{config.epochs} epochs is over this server's limit of "
                              f"{self.max_epochs} per run ({self.VARIABLES['max_epochs']}); "
                              f"choose fewer epochs")
        from pruning.methods import method_config

        settings = method_config(config)
        if settings is None:
            return
        for f in dataclasses.fields(settings):
            value = getattr(settings, f.name)
            if isinstance(value, int) and not isinstance(value, bool) \
                    and value > self.max_method_iterations:
                raise ConfigError(
                    f"{config.method} {f.name}={value} is over this server's limit of "
                    f"{self.max_method_iterations} for a method's counts "
                    f"({self.VARIABLES['max_method_iterations']}); choose a smaller {f.name}")


#: the most live-curve points a job keeps for its current run (older ones are thinned)
CURVE_POINTS = 1000


def _with_point(curve: tuple, point: tuple) -> tuple:
    """``curve`` plus ``point``; past CURVE_POINTS every other old point is dropped, so a long
    run keeps an even, bounded sample of its whole history."""
    if len(curve) >= CURVE_POINTS:
        curve = curve[::2]
    return curve + (point,)


@dataclass(frozen=True)
class JobProgress:
    """An immutable copy of a job's state, safe to read from any thread."""
    job_id: str
    kind: str                      # "run" | "sweep"
    status: str = "running"        # running | done | failed | stopped
    phase: str = "preparing"       # the library's phase name (train, prune, finetune, measure …)
    step: int = 0
    total: int = 0
    within: float = 0.0            # progress of the configs training now, summed (on Ray several
                                   # train at once); each config's never goes back
    index: int = 0                 # configs ended + 1: the 1-based number of the next to end
    count: int = 1                 # how many configs the job trains
    metrics: dict = field(default_factory=dict)   # the latest event's metrics
    last_epoch: dict = field(default_factory=dict)  # the latest epoch_end metrics
    run_ids: tuple = ()            # runs this job created, in order
    statuses: tuple = ()           # final status of each finished run, in order
    message: str = ""
    error: str | None = None       # a one-line, user-facing reason when the job failed
    stop_reason: str | None = None  # why it was asked to stop (the user, the time limit …)
    started: float = 0.0
    finished: float | None = None
    # The current run's progress events as (step, running loss, running training accuracy,
    # mask sparsity, target sparsity), at most CURVE_POINTS of them (thinned evenly beyond).
    curve: tuple = ()

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


class Job:
    """One background job: trains ``configs`` through ``pruning.sweeps.run_sweep`` (a sweep on
    Ray, several runs at once; a single run, or any job where Ray is unavailable, in turn in
    this thread with ``run_session``).

    ``owner`` names the visitor (browser session) that started it and ``owner_present`` says
    whether that visitor is still connected; ``clock`` (seconds, monotonic) measures the time
    limit and the visitor's absence, and is injected by tests.
    """

    def __init__(self, configs: Sequence[RunConfig], store: RunStore, *, kind: str = "run",
                 names: Sequence[str | None] | None = None, measure_latency: bool = True,
                 threads: int | None = None, runner: Callable[..., Any] | None = None,
                 limits: JobLimits | None = None, owner: str | None = None,
                 owner_present: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not configs:
            raise ConfigError("nothing to run: the list of configurations is empty")
        self.id = uuid.uuid4().hex[:12]
        self.configs = list(configs)
        self.names = list(names) if names is not None else [None] * len(self.configs)
        self.store = store
        self.measure_latency = measure_latency
        self.threads = threads or job_threads()
        self.limits = limits or JobLimits()
        self.owner = owner
        self._owner_present = owner_present
        self._clock = clock
        self._runner = runner
        self._lock = threading.Lock()
        self._within: dict[int, float] = {}  # progress of each config training now
        self._errors: list[str] = []         # one line per config that failed
        self._stop = threading.Event()
        # Blocks until the server's warm-up has ended (JobManager.submit sets it): a first run
        # that trained while the warm-up imported the same modules in another thread would wait
        # for the GIL at each of its many small steps and take several times as long.
        self.wait_until_ready: Callable[[], None] | None = None
        self._started_at = clock()
        self._next_presence_check = self._started_at
        self._absent_since: float | None = None
        self._progress = JobProgress(job_id=self.id, kind=kind, count=len(self.configs),
                                     started=time.time())
        self._thread = threading.Thread(target=self._work, name=f"pruning-job-{self.id}",
                                        daemon=True)

    # ---- control (any thread) ----------------------------------------------------------------
    def start(self) -> "Job":
        self._thread.start()
        return self

    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask the job to end; the run in progress is recorded as ``stopped`` with its history."""
        with self._lock:
            if self._progress.stop_reason is None:
                self._progress = replace(self._progress, stop_reason=reason)
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def should_stop(self) -> bool:
        """The run's ``should_stop``: Stop was pressed, the time limit passed, or the visitor has
        been gone longer than the grace period. Called at every step and scoring pass, so it
        reads the visitor's presence at most every ``PRESENCE_EVERY_S`` seconds."""
        if self._stop.is_set():
            return True
        now = self._clock()
        if now - self._started_at > self.limits.max_seconds:
            self.stop(f"stopped at this server's time limit of {self.limits.max_seconds:g} s "
                      f"per job ({JobLimits.VARIABLES['max_seconds']})")
        elif self._owner_present is not None and now >= self._next_presence_check:
            self._next_presence_check = now + PRESENCE_EVERY_S
            if self._owner_present():
                self._absent_since = None
            elif self._absent_since is None:
                self._absent_since = now
            elif now - self._absent_since >= self.limits.left_grace_s:
                self.stop("stopped because the visitor who started it left")
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

    def _on_event(self, index: int, event: Event) -> None:
        """An event of config ``index`` (several train at once on Ray): the bar adds up each
        running config's progress, and never goes back within one config."""
        metrics = dict(event.metrics)
        if event.phase == "created":  # a run row now exists: the live panel can follow it
            with self._lock:
                self._within[index] = 0.0
                self._progress = replace(self._progress, curve=(),
                                         run_ids=self._progress.run_ids + (metrics["run_id"],))
            return
        changes: dict[str, Any] = {"phase": event.phase, "step": event.step, "total": event.total,
                                   "metrics": metrics}
        with self._lock:
            if event.total > 0:
                # phases after training (e.g. "measure", step 0 of 1) must not move the bar back
                self._within[index] = max(self._within.get(index, 0.0),
                                          min(1.0, event.step / event.total))
                changes["within"] = sum(self._within.values())
        if metrics.get("epoch_end"):
            changes["last_epoch"] = metrics
        elif "train_acc_running" in metrics:  # a live progress event: one point of the curves
            point = (event.step, metrics.get("loss"), metrics.get("train_acc_running"),
                     metrics.get("mask_sparsity"), metrics.get("target_sparsity"))
            with self._lock:
                changes["curve"] = _with_point(self._progress.curve, point)
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

        from pruning.sweeps import default_engine, run_sweep

        # Process-wide setting (see the module docstring); every job sets the same value. Runs
        # on Ray set their own, one thread per core they were given.
        torch.set_num_threads(self.threads)
        if self.wait_until_ready is not None:
            self._update(message="preparing: the server is still loading PyTorch")
            self.wait_until_ready()
        engine = default_engine() if self._progress.kind == "sweep" and not self._runner \
            else "local"
        self._update(index=1, message=f"preparing run 1 of {len(self.configs)}")
        outcome = run_sweep(self.configs, self.store, names=self.names, engine=engine,
                            on_event=self._on_event, on_run_end=self._on_run_end,
                            should_stop=self.should_stop, measure_latency=self.measure_latency,
                            runner=self._runner, keep_ray=True)
        statuses = self.progress().statuses
        if outcome.aborted:
            status = "failed"
        elif self._stop.is_set():
            status = "stopped"
        elif statuses and all(s == "failed" for s in statuses):
            status = "failed"
        else:
            status = "done"
        message = {"done": "finished", "stopped": self.progress().stop_reason or "stopped",
                   "failed": "failed"}[status]
        errors = ([outcome.aborted] if outcome.aborted else []) + self._errors
        if errors and status != "failed":
            message += f" ({len(self._errors)} of {len(self.configs)} runs failed)"
        if outcome.note:
            message += f"; {outcome.note}"
        self._update(status=status, finished=time.time(), message=message,
                     error=errors[0] if errors else None)

    def _on_run_end(self, index: int, run: Any, error: str | None) -> None:
        """One config ended (``run`` None when it was refused before a run existed)."""
        if run is not None:
            reason = self.progress().stop_reason
            if run.status == "stopped" and reason and run.error != reason:
                # the session records every stop as the user's; say what really ended it
                self.store.finish_run(run.id, "stopped", run.summary, error=reason)
            if run.status == "failed" and run.error:
                error = run.error.splitlines()[0]
        if error:
            self._errors.append(error)
        with self._lock:
            self._within.pop(index, None)
            p = self._progress
            ended = len(p.statuses) + 1
            changes: dict[str, Any] = {}
            if not self._within and ended < p.count:  # nothing trains now: the next prepares
                changes = dict(phase="preparing", step=0, total=0, metrics={}, last_epoch={},
                               message=f"preparing run {ended + 1} of {p.count}")
            self._progress = replace(
                p, statuses=p.statuses + (run.status if run is not None else "failed",),
                index=min(ended + 1, p.count), within=sum(self._within.values()), **changes)


class JobManager:
    """Process-wide registry of jobs by id, which enforces the limits on running jobs; sessions
    hold only the ids."""

    def __init__(self, limits: JobLimits | None = None, keep_finished: int = KEEP_FINISHED):
        self.limits = limits or JobLimits()
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._warm_up: threading.Thread | None = None

    def warm_up(self, work: Callable[[], Any] | None = None) -> None:
        """Start ``work`` (default: ``pruning.warmup.warm_up``, the first run's one-time imports
        and kernels) in a background thread, once per manager; jobs submitted meanwhile wait for
        it to end before they train. A failed warm-up only means the first run pays it itself."""
        def default() -> None:
            from pruning.warmup import warm_up

            warm_up()

        def guarded() -> None:
            try:
                (work or default)()
            except Exception:
                pass

        with self._lock:
            if self._warm_up is None:
                self._warm_up = threading.Thread(target=guarded, name="pruning-warm-up",
                                                 daemon=True)
                self._warm_up.start()

    def _wait_for_warm_up(self) -> None:
        if self._warm_up is not None:
            self._warm_up.join()

    def submit(self, job: Job) -> Job:
        """Start ``job``, or ConfigError when the server or its visitor is at the limit."""
        with self._lock:
            # a job counts from its submission (its thread starts after the lock is released)
            running = [j for j in self._jobs.values() if j.progress().running]
            if len(running) >= self.limits.max_jobs:
                raise ConfigError(
                    f"{len(running)} runs are already training on this server, its limit "
                    f"({JobLimits.VARIABLES['max_jobs']}={self.limits.max_jobs}); wait for one "
                    f"to finish, or stop one in “Running now” on the Runs page")
            mine = [j for j in running if job.owner is not None and j.owner == job.owner]
            if len(mine) >= self.limits.max_jobs_per_visitor:
                raise ConfigError(
                    f"you already have {len(mine)} runs or sweeps training, this server's limit "
                    f"per visitor ({JobLimits.VARIABLES['max_jobs_per_visitor']}="
                    f"{self.limits.max_jobs_per_visitor}); stop one (Runs page) or wait for it")
            finished = [k for k, j in self._jobs.items() if not j.progress().running]
            for key in finished[:max(0, len(finished) - self.keep_finished + 1)]:
                del self._jobs[key]
            self._jobs[job.id] = job
            if self._warm_up is not None and self._warm_up.is_alive():
                job.wait_until_ready = self._wait_for_warm_up
        return job.start()

    def get(self, job_id: str | None) -> Job | None:
        if not job_id:
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def running(self) -> list[Job]:
        """Jobs still training, oldest first."""
        with self._lock:
            return [j for j in self._jobs.values() if j.progress().running]


def check_config(config: RunConfig, limits: JobLimits) -> None:
    """What can be refused at once, before a thread starts: ConfigError naming the fix."""
    from pruning import data, models
    from pruning.session import resolve_device
    from pruning.validation import validate

    config = validate(config)
    limits.check(config)
    channels, size, _ = data.dataset_shape(config)
    models.check_compatible(config.model, channels, size)
    resolve_device(config.device)
