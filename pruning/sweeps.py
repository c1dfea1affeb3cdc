"""Sweeps: many run configs, each a Ray task, with this process as the store's only writer.

``run_sweep(configs, store, ...)`` is the one sweep engine of the CLI (``python -m pruning
sweep``) and of the app's sweep jobs (``ui.jobs``). Two engines:

- ``ray`` (the default): every config is one Ray task. With no address ``ray.init()`` starts a
  local Ray sized to this machine (one run per core, each with one torch thread; one run per
  GPU with ``num_gpus=1`` where there are GPUs), bound to 127.0.0.1 and without the dashboard.
  An address (``address=`` / ``PRUNING_RAY_ADDRESS``) joins a running cluster (``ray start
  --head`` on one machine, ``ray start --address ...`` on the others).
- ``local``: today's loop, one run after another in this process. It is also what runs when
  Ray cannot start here; ``SweepOutcome.note`` then says why, in one line.

Why Ray Core and not Ray Tune: a sweep here is a fixed grid whose runs report to our own store;
Tune would bring its own trial scheduler, result logger and experiment folders (a second
writer and a second copy of every history), and its search algorithms have nothing to search.
Plain tasks give exactly what is needed: placement by resources, cancellation, and a clear
error when a worker or node dies.

One writer. Workers never open the SQLite store (it may not even be on their machine). Each
task runs the ordinary ``run_session`` against a ``StoreProxy``: an object with the write side
of ``RunStore`` that pushes every record (run created, epoch row, trace, mask snapshot, progress
event) to a ``RecordSink`` actor pinned to this process's node, in batches a few times a second. The driver drains that sink a
few times a second and writes the records through ``RunStore`` in arrival order, so the app
shows sweep runs live exactly as local ones. The final model and the run's end (status, summary,
error) come back as the task's result, and are written after every streamed record of that run.

Faults. Tasks run with ``max_retries=0``: a retried task would be a second run of the same
config. A worker that dies mid-run leaves its run ``failed`` ("worker lost ...") with the history
that reached the driver. Stop (``should_stop`` true, or Ctrl-C) cancels the tasks not yet
running and asks the running ones, through the sink, to stop; they end ``stopped`` with their
history, as a local run does. A cluster that goes away ends the sweep with ``SweepOutcome.
aborted`` saying so; every run it had started is recorded ``failed`` with what it had, and this
process leaves the cluster (Ray ends a driver still connected to a cluster that has gone).

Data on workers: the embedded digits need nothing; torchvision datasets are read from each
worker's own ``PRUNING_DATA``, and a worker without them refuses the run with a message that
names the worker.

Importing Ray takes seconds, so this module imports it only inside the functions that need it.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pruning.config import ConfigError, RunConfig
from pruning.masks import Mask
from pruning.store import Run, RunStore
from pruning.training import Event

ENGINES = ("ray", "local")
#: the default engine where the caller does not choose (tests set ``local``)
ENGINE_VARIABLE = "PRUNING_SWEEP_ENGINE"
#: a running Ray cluster to join, e.g. ``127.0.0.1:6379``
ADDRESS_VARIABLE = "PRUNING_RAY_ADDRESS"
#: how often the driver writes what arrived (seconds)
POLL_S = 0.2
#: how often a worker sends its buffered records to the driver (seconds)
FLUSH_S = 0.25
#: how often a worker asks the driver whether to stop (seconds): Stop acts within about a second
STOP_POLL_S = 0.5
#: how long running tasks get to end cleanly after Stop before they are cancelled by force
STOP_GRACE_S = 30.0
#: a driver call to the cluster that takes longer than this means the cluster has gone
CLUSTER_TIMEOUT_S = 30.0
#: how long a failed task waits before its run is recorded as one lost worker. When the whole
#: cluster goes, Ray often reports a task's node dead while the sink still answers for a moment
#: (seen with every node killed at once); waiting tells the two apart, and the records the
#: worker sent just before it died are written meanwhile.
LOST_GRACE_S = 3.0

OnEvent = Callable[[int, Event], None]
OnRunEnd = Callable[[int, "Run | None", "str | None"], None]


@dataclass
class SweepOutcome:
    """What a sweep did. ``runs`` holds the runs it created, in config order; ``errors`` one
    line per config that ended without a run (refused on its worker, lost before starting)."""
    engine: str
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str | None = None       # why the local engine ran although Ray was asked for
    aborted: str | None = None    # the cluster went away: what happened, in one line
    stopped: bool = False


def default_engine() -> str:
    engine = (os.environ.get(ENGINE_VARIABLE) or "ray").strip()
    if engine not in ENGINES:
        raise ConfigError(f"{ENGINE_VARIABLE}={engine!r} is not an engine; choose ray or local")
    return engine


def default_address() -> str | None:
    return (os.environ.get(ADDRESS_VARIABLE) or "").strip() or None


def run_sweep(configs: Sequence[RunConfig], store: RunStore, *,
              names: Sequence[str | None] | None = None, engine: str | None = None,
              address: str | None = None, on_event: OnEvent | None = None,
              on_run_end: OnRunEnd | None = None, should_stop: Callable[[], bool] | None = None,
              download: bool = False, measure_latency: bool = True,
              runner: Callable[..., Run] | None = None, local_cpus: int | None = None,
              keep_ray: bool = False) -> SweepOutcome:
    """Train every config and record it in ``store``; see the module docstring.

    ``on_event(index, event)`` gets each run's events (``created`` carries the store's run id);
    ``on_run_end(index, run, error)`` is called once per config that ended, with its Run or,
    when none was created, a one-line error. ``runner`` (tests) replaces ``run_session`` and
    implies the local engine. ``local_cpus`` sizes a local Ray (default: every core);
    ``keep_ray`` leaves Ray running for the next sweep of this process (the app), otherwise a
    Ray started here is shut down at the end.
    """
    names = list(names) if names is not None else [None] * len(configs)
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise ConfigError(f"unknown sweep engine {engine!r}; choose ray or local")
    address = address or default_address()
    on_event = on_event or (lambda index, event: None)
    on_run_end = on_run_end or (lambda index, run, error: None)
    should_stop = should_stop or (lambda: False)
    note = None
    if engine == "ray" and runner is None:
        try:
            ray = connect(address, local_cpus)
        except RayUnavailable as exc:
            if address:  # the user named a cluster: running here instead would surprise them
                raise ConfigError(str(exc)) from None
            note = f"{exc}; running the sweep in this process instead"
        else:
            sweep = _RaySweep(ray, configs, store, names, on_event, on_run_end, should_stop,
                              download, measure_latency)
            try:
                return sweep.run()
            finally:
                # A driver left connected to a cluster that has gone is killed by Ray about a
                # minute later (its GCS client gives up and exits the process): the app with it.
                if sweep.cluster_lost or (not keep_ray and not address):
                    ray.shutdown()
    outcome = _local_sweep(configs, store, names, on_event, on_run_end, should_stop, download,
                           measure_latency, runner)
    outcome.note = note
    return outcome


# ---- the local engine -----------------------------------------------------------------------
def _local_sweep(configs, store, names, on_event, on_run_end, should_stop, download,
                 measure_latency, runner) -> SweepOutcome:
    from pruning.session import run_session

    outcome = SweepOutcome(engine="local")
    for index, (config, name) in enumerate(zip(configs, names)):
        if should_stop():
            outcome.stopped = True
            break
        options: dict[str, Any] = {} if runner else {"download": download}
        try:
            run = (runner or run_session)(
                config, store, on_event=lambda event, i=index: on_event(i, event),
                should_stop=should_stop, name=name, measure_latency=measure_latency, **options)
        except ConfigError as exc:  # e.g. dataset files missing: nothing was written
            _refused(outcome, on_run_end, index, str(exc))
            continue
        except Exception as exc:  # run_session records failed runs itself: this is a bug
            _refused(outcome, on_run_end, index, f"{type(exc).__name__}: {exc}")
            continue
        outcome.runs.append(run)
        on_run_end(index, run, None)
        if run.status == "stopped":  # only a request stops a run (Stop, Ctrl-C): end the sweep
            outcome.stopped = True
            break
    return outcome


def _refused(outcome: SweepOutcome, on_run_end: OnRunEnd, index: int, error: str) -> None:
    outcome.errors.append(error)
    on_run_end(index, None, error)


# ---- starting Ray ---------------------------------------------------------------------------
class RayUnavailable(Exception):
    """Ray could not start here or could not reach the cluster; the message says why."""


# Ray's runtime is per process by Ray's design; this lock only keeps two threads (two app
# sessions starting sweeps at once) from both calling ray.init.
_INIT_LOCK = threading.Lock()


def connect(address: str | None = None, num_cpus: int | None = None):
    """The ``ray`` module, initialised: joined to ``address`` or a local Ray started here."""
    if not address or address.split(":")[0] in ("127.0.0.1", "localhost"):
        # Ray resolves 127.0.0.1 to the machine's routable address unless told it is not part
        # of a cluster; a local Ray must listen on the loopback only. Read when ray is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"Ray is not installed ({exc})") from None
    with _INIT_LOCK:
        if ray.is_initialized():
            return ray
        options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                       logging_level="warning")
        try:
            if address:  # other machines get this code with the job
                ray.init(address=address, runtime_env={"py_modules": [_package_dir()]},
                         **options)
            else:
                # "local": a new Ray of our own, never a cluster someone started on this machine.
                # Ray runs workers at niceness 15 so that they yield to other work; here they are
                # the work asked for, and at 15 on a busy 2-core machine two runs got less CPU
                # than one run in this process (the 12-run sweep took 1.4-2.4x as long).
                ray.init(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1",
                         runtime_env=_local_runtime_env(),
                         _system_config={"worker_niceness": 0}, **options)
        except Exception as exc:  # Ray says why in many ways; one line for the user
            where = f"reach the Ray cluster at {address}" if address else "start a local Ray"
            cause = exc.__cause__ or exc  # Ray's own reason, e.g. a missing token
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise RayUnavailable(f"could not {where}: {first}") from None
    return ray


def _package_dir() -> str:
    """This ``pruning`` package, shipped to the workers so every node runs this code."""
    return str(Path(__file__).resolve().parent)


def _local_runtime_env() -> dict[str, Any] | None:
    """What the workers of a local Ray need to import this package: nothing where they find it
    already (Ray gives them the driver's working folder and environment, and an installed
    package is on every path). Any runtime environment makes Ray start workers of its own for
    the job instead of the ones it started with the node, seconds on a small machine."""
    import sys

    parent = str(Path(_package_dir()).parent)
    found = {os.path.abspath(os.curdir), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    if parent in found or not any(parent == os.path.abspath(p or os.curdir) for p in sys.path):
        return None  # on the workers' path, or installed (found through site-packages)
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(
        [parent, *filter(None, [os.environ.get("PYTHONPATH")])])}}


def task_resources(config: RunConfig, cluster_gpus: float) -> dict[str, float]:
    """What one run asks of the cluster: a GPU where it trains on one, else its CPU threads."""
    wants_gpu = config.device == "cuda" or (config.device == "auto" and cluster_gpus >= 1)
    return {"num_cpus": max(1, config.threads), "num_gpus": 1 if wants_gpu else 0}


# ---- the worker side ------------------------------------------------------------------------
class RecordSink:
    """A Ray actor on the driver's node: workers push records, the driver drains them.

    One-threaded on purpose: Ray runs the calls of one caller on such an actor in the order they
    were made, so each run's records arrive in the order its worker produced them.
    """

    def __init__(self) -> None:
        self._records: list[tuple] = []
        self._stop = False

    def push(self, records: list[tuple]) -> None:
        self._records.extend(records)

    def drain(self) -> list[tuple]:
        records, self._records = self._records, []
        return records

    def request_stop(self) -> None:
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop


class StoreProxy:
    """The write side of ``RunStore`` that ``run_session`` needs, on a worker: every write
    becomes a record pushed to the driver's sink. Run ids here are the task's key; the driver
    maps them to the ids its store gives."""

    def __init__(self, sink, key: str):
        self.sink, self.key = sink, key
        self.pushed = 0  # records sent: the driver finishes the run once it has them all
        self._buffer: list[tuple] = []
        self._flushed_at = time.monotonic()
        self._snapshot_steps: list[dict[str, Any]] = []
        self._config: RunConfig | None = None
        self._environment: dict[str, Any] = {}
        self._name: str | None = None
        self.end: dict[str, Any] = {}
        self.model: Any = None
        self.whole_module = False

    def _push(self, *record: Any) -> None:
        self._buffer.append((self.key, *record))
        self.pushed += 1
        # Records travel in batches, a few a second: one actor call per record cost the sink
        # and the driver a tenth of a 2-core machine in a sweep. The run's creation goes at once
        # (the driver shows the run from then on).
        if record[0] == "create" or time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered. Never waited for: a task blocked in ray.get lends its CPU to
        the next task, and Ray would start more runs (and worker processes) than cores."""
        if self._buffer:
            self.sink.push.remote(self._buffer)
            self._buffer = []
        self._flushed_at = time.monotonic()

    def create_run(self, config: RunConfig, environment: dict[str, Any] | None = None,
                   name: str | None = None) -> str:
        self._config, self._name = config, name
        self._environment = dict(environment or {}, **worker_identity())
        self._push("create", config.to_json(), self._environment, name)
        return self.key

    def add_epoch(self, run_id: str, row: dict[str, Any]) -> None:
        self._push("epoch", row)

    def add_trace(self, run_id: str, kind: str, step: int, payload: dict[str, Any]) -> None:
        self._push("trace", kind, int(step), payload)

    def add_snapshot(self, run_id: str, step: int, epoch: float, mask: Mask) -> None:
        sparsity = mask.sparsity()
        self._snapshot_steps.append({"step": int(step), "epoch": float(epoch),
                                     "sparsity": sparsity})
        self._push("snapshot", int(step), float(epoch), mask.to_bytes(), sparsity)

    def snapshots(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._snapshot_steps)

    def save_model(self, run_id: str, model, whole_module: bool) -> None:
        """Kept for the task's result: the driver saves it once the run's records are in."""
        # The module itself travels (Ray pickles it between our own processes): the driver's
        # store describes its architecture for a file that loads with weights_only=True.
        self.whole_module = whole_module
        self.model = model.to("cpu")

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        self.end = {"status": status, "summary": summary or {}, "error": error}

    def get_run(self, run_id: str) -> Run:
        return Run(id=self.key, config=self._config or RunConfig(),
                   status=self.end.get("status", "running"), created=time.time(),
                   name=self._name, summary=self.end.get("summary", {}),
                   environment=self._environment, error=self.end.get("error"))


def worker_identity() -> dict[str, Any]:
    """Which machine and process ran a run (its environment record; a lost worker is named)."""
    import ray

    context = ray.get_runtime_context()
    return {"ray_node": socket.gethostname(), "ray_node_ip": ray.util.get_node_ip_address(),
            "ray_node_id": context.get_node_id(), "ray_worker_pid": os.getpid()}


def remote_run(config: RunConfig, name: str | None, key: str, sink, download: bool,
               measure_latency: bool) -> dict[str, Any]:
    """One sweep run on a worker (the body of the Ray task)."""
    import ray
    import torch

    from pruning.session import run_session

    # One torch thread per CPU the task was given (Ray sets OMP_NUM_THREADS alike).
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    proxy = StoreProxy(sink, key)
    next_check, stop, asked = [0.0], [False], [sink.stop_requested.remote()]

    def should_stop() -> bool:
        """Whether the driver asked to stop: the answer is read once it is there (never waited
        for: see StoreProxy._push), and asked for again at most every STOP_POLL_S."""
        now = time.monotonic()
        if not stop[0] and now >= next_check[0]:
            next_check[0] = now + STOP_POLL_S
            ready, _ = ray.wait(asked, timeout=0)
            if ready:
                stop[0] = ray.get(ready[0])
                asked[0] = sink.stop_requested.remote()
        return stop[0]

    def on_event(event: Event) -> None:
        proxy._push("event", event.phase, event.step, event.total, dict(event.metrics))

    try:
        run_session(config, proxy, on_event=on_event, should_stop=should_stop,
                    download=download, name=name, measure_latency=measure_latency)
    except ConfigError as exc:  # refused before anything was recorded: say which worker
        proxy.flush()
        return {"key": key, "records": proxy.pushed,
                "refused": f"on worker {socket.gethostname()} "
                           f"({ray.util.get_node_ip_address()}): {exc}"}
    proxy.flush()
    return {"key": key, "records": proxy.pushed, **proxy.end, "model": proxy.model,
            "whole_module": proxy.whole_module}


# ---- the driver side ------------------------------------------------------------------------
def partial_summary(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """What a run lost mid-way had: its last epoch's metrics (as a stopped run's summary)."""
    last = epochs[-1] if epochs else {}
    summary = {key: last[key] for key in ("test_acc", "test_loss", "train_acc",
                                          "target_sparsity", "mask_sparsity")
               if last.get(key) is not None}
    summary["epochs_done"] = last.get("epoch", 0)
    return summary


class _RaySweep:
    """The driver's loop: submit, write what arrives, finish what returns, handle Stop."""

    def __init__(self, ray, configs, store, names, on_event, on_run_end, should_stop,
                 download, measure_latency):
        self.ray, self.store = ray, store
        self.configs, self.names = list(configs), names
        self.on_event, self.on_run_end, self.should_stop = on_event, on_run_end, should_stop
        self.download, self.measure_latency = download, measure_latency
        self.outcome = SweepOutcome(engine="ray")
        self.sweep_id = uuid.uuid4().hex[:8]
        self.run_ids: dict[str, str] = {}   # task key -> the store's run id
        self.index_of: dict[str, int] = {}  # task key -> config index
        self.ended: set[str] = set()        # task keys whose run is finished in the store
        self.runs: dict[int, Run] = {}
        self.stop_sent_at: float | None = None
        self.received: dict[str, int] = {}  # task key -> records drained so far
        # task key -> (result, when it came): results whose streamed records are still on the way
        self.early: dict[str, tuple[dict[str, Any], float]] = {}
        self.cluster_lost = False  # the sweep ended because the cluster went away
        # task key -> (why it failed, when): tasks lost, not yet recorded (see LOST_GRACE_S)
        self.failing: dict[str, tuple[Exception, float]] = {}

    def run(self) -> SweepOutcome:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.sink = ray.remote(RecordSink).options(
            num_cpus=0, max_restarts=0,  # beside this process: records survive a lost worker
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)).remote()
        gpus = ray.cluster_resources().get("GPU", 0.0)
        task = ray.remote(remote_run)
        self.pending: dict[Any, str] = {}  # task ref -> key
        for index, (config, name) in enumerate(zip(self.configs, self.names)):
            key = f"{self.sweep_id}-{index}"
            self.index_of[key] = index
            ref = task.options(max_retries=0, name=f"pruning-run-{index}",
                               **task_resources(config, gpus)).remote(
                config, name, key, self.sink, self.download, self.measure_latency)
            self.pending[ref] = key
        try:
            self._loop()
        except Exception as exc:  # the cluster went away (or stopped answering), or a fault here
            from ray.exceptions import RayError

            lost = isinstance(exc, (RayError, ConnectionError, TimeoutError))
            self.cluster_lost = lost
            self._abort(exc, "the Ray cluster went away" if lost else "the sweep's driver failed")
        finally:
            self.outcome.runs = [self.runs[i] for i in sorted(self.runs)]
        return self.outcome

    def _loop(self) -> None:
        ray = self.ray
        while self.pending or self.early or self.failing:
            try:
                ready = []
                if self.pending:
                    ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending),
                                        timeout=POLL_S)
                else:  # every task returned: only their last records are awaited
                    time.sleep(POLL_S)
                # what a returned task sent may still be on the way: see self.early
                self._write(ray.get(self.sink.drain.remote(), timeout=CLUSTER_TIMEOUT_S))
            except KeyboardInterrupt:  # Ctrl-C: a clean stop, as the app's Stop button
                self._stop()
                continue
            for ref in ready:
                self._returned(ref, self.pending.pop(ref))
            for key, (result, since) in list(self.early.items()):
                if self.received.get(key, 0) >= result["records"] \
                        or time.monotonic() - since > CLUSTER_TIMEOUT_S:
                    del self.early[key]
                    self._finish(key, result)
            for key, (exc, since) in list(self.failing.items()):
                if time.monotonic() - since > LOST_GRACE_S:
                    del self.failing[key]
                    self._lost(self.index_of[key], key, exc)
            if self.should_stop():
                self._stop()
            if self.stop_sent_at is not None \
                    and time.monotonic() - self.stop_sent_at > STOP_GRACE_S:
                for ref in self.pending:
                    ray.cancel(ref, force=True)
                self.stop_sent_at = float("inf")  # cancelled once; the refs now end as lost

    def _stop(self) -> None:
        """Ask running tasks to stop and cancel the ones that have not started."""
        if self.stop_sent_at is not None:
            return
        self.outcome.stopped = True
        self.stop_sent_at = time.monotonic()
        self.ray.get(self.sink.request_stop.remote(), timeout=CLUSTER_TIMEOUT_S)
        for ref, key in self.pending.items():
            if key not in self.run_ids:  # not started: it must not start now
                self.ray.cancel(ref)

    def _write(self, records: list[tuple]) -> None:
        store = self.store
        for key, kind, *values in records:
            self.received[key] = self.received.get(key, 0) + 1
            if kind == "create":
                config_json, environment, name = values
                config = RunConfig.from_dict(json.loads(config_json))
                self.run_ids[key] = store.create_run(config, environment, name=name)
                continue
            run_id = self.run_ids.get(key)
            if run_id is None or key in self.ended:
                continue  # records of a run already closed (lost, then late): never rewrite it
            if kind == "epoch":
                store.add_epoch(run_id, values[0])
            elif kind == "trace":
                store.add_trace(run_id, *values)
            elif kind == "snapshot":
                store.add_snapshot_bytes(run_id, *values)  # step, epoch, bytes, sparsity
            elif kind == "event":
                phase, step, total, metrics = values
                if phase == "created":
                    metrics = dict(metrics, run_id=run_id)
                self.on_event(self.index_of[key], Event(phase, step, total, metrics))

    def _returned(self, ref, key: str) -> None:
        """A task ended: finish its run now, or once its last streamed records are in."""
        try:
            result = self.ray.get(ref, timeout=CLUSTER_TIMEOUT_S)
        except Exception as exc:  # the worker (or its node) died, or the task was cancelled
            from ray.exceptions import TaskCancelledError

            if isinstance(exc, TaskCancelledError):
                self._lost(self.index_of[key], key, exc)
            else:  # recorded after LOST_GRACE_S, unless the whole cluster has gone by then
                self.failing[key] = (exc, time.monotonic())
            return
        self.early[key] = (result, time.monotonic())

    def _finish(self, key: str, result: dict[str, Any]) -> None:
        index = self.index_of[key]
        if "refused" in result:
            _refused(self.outcome, self.on_run_end, index, result["refused"])
            return
        run_id = self.run_ids[key]
        if result.get("model") is not None:
            self.store.save_model(run_id, result["model"], result["whole_module"])
        self.store.finish_run(run_id, result["status"], result["summary"], result["error"])
        self._ended(index, key)

    def _lost(self, index: int, key: str, exc: Exception) -> None:
        from ray.exceptions import TaskCancelledError

        run_id = self.run_ids.get(key)
        if run_id is None:
            if not isinstance(exc, TaskCancelledError):
                _refused(self.outcome, self.on_run_end, index,
                         f"run {index + 1} was lost before it started: {_one_line(exc)}")
            return
        if self.stop_sent_at is not None and isinstance(exc, TaskCancelledError):
            status, error = "stopped", "stopped by the user"
        else:
            status, error = "failed", f"worker lost: {_one_line(exc)}"
        self.store.finish_run(run_id, status, partial_summary(self.store.epochs(run_id)), error)
        self._ended(index, key)

    def _ended(self, index: int, key: str) -> None:
        self.ended.add(key)
        run = self.store.get_run(self.run_ids[key])
        self.runs[index] = run
        self.on_run_end(index, run, None)

    def _abort(self, exc: Exception, what: str) -> None:
        """The cluster is gone (or the driver failed): keep what arrived, close every open run as
        failed, say so. ``what`` names the cause for the user."""
        reason = _one_line(exc)
        open_keys = [k for k in self.run_ids if k not in self.ended]
        for key in open_keys:
            run_id = self.run_ids[key]
            self.store.finish_run(run_id, "failed", partial_summary(self.store.epochs(run_id)),
                                  f"{what} during the run: {reason}")
            self._ended(self.index_of[key], key)
        never = len(self.configs) - len(self.run_ids)
        self.outcome.aborted = (f"{what} ({reason}): {len(open_keys)} running "
                                f"run(s) recorded as failed with their history, {never} not "
                                f"started")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
