"""The job engine's limits: work per run, seconds per job, jobs per server and per visitor, jobs
whose visitor left; the running-jobs list with Stop; a diverged run shown in red.

Time is an injected clock that the fake runners advance one second per step, so every
assertion is about order and counts, never about how long something took.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.config import ConfigError, RunConfig
from pruning.methods import METHODS
from pruning.store import RunStore
from pruning.training import Event
from ui import jobs, live

ROOT = Path(__file__).resolve().parent.parent
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)
TIMEOUT = 120


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stepping_runner(clock: FakeClock, steps: list[int], *, release: threading.Event | None = None,
                    present: dict | None = None, leave_at: int | None = None):
    """A run_session stand-in: steps until should_stop, one clock second per step; the visitor
    leaves (``present["here"] = False``) at step ``leave_at``."""
    def runner(config, store, on_event, should_stop, name, measure_latency):
        run_id = store.create_run(config)
        on_event(Event("created", 0, 0, {"run_id": run_id}))
        for step in range(1, 100_000):
            if should_stop():
                store.finish_run(run_id, "stopped")
                return store.get_run(run_id)
            steps.append(step)
            if leave_at is not None and step == leave_at:
                present["here"] = False
            clock.now += 1.0
            if release is not None and release.wait(0.005):
                break
        store.finish_run(run_id, "done")
        return store.get_run(run_id)
    return runner


def test_a_job_stops_at_the_time_limit(tmp_path):
    clock, steps = FakeClock(), []
    job = jobs.Job([TINY, TINY], RunStore(tmp_path), kind="sweep", clock=clock,
                   limits=jobs.JobLimits(max_seconds=10), runner=stepping_runner(clock, steps))
    assert job.start().wait(TIMEOUT)
    p = job.progress()
    assert p.status == "stopped" and len(p.run_ids) == 1  # the sweep's second run never started
    assert steps[-1] == 11  # the step that crossed 10 s was the last
    assert "time limit of 10 s" in p.message and "PRUNING_MAX_JOB_SECONDS" in p.message
    run = RunStore(tmp_path).get_run(p.run_id)
    assert run.status == "stopped" and run.error == p.message  # the run says why, too


def test_a_job_submitted_during_the_warm_up_trains_only_after_it(tmp_path):
    """The first run must not compete with the server's warm-up for the GIL: it waits."""
    clock, steps, order = FakeClock(), [], []
    warm_up_may_end = threading.Event()

    def slow_warm_up():
        warm_up_may_end.wait(TIMEOUT)
        order.append("warm-up ended")

    manager = jobs.JobManager()
    manager.warm_up(slow_warm_up)
    manager.warm_up(lambda: order.append("a second warm-up"))  # once per manager
    release = threading.Event()
    runner = stepping_runner(clock, steps, release=release)

    def recording_runner(*args, **kwargs):
        order.append("run started")
        return runner(*args, **kwargs)

    job = manager.submit(jobs.Job([TINY], RunStore(tmp_path), clock=clock, runner=recording_runner))
    assert not job.wait(0.3) and steps == []  # held back while the warm-up runs
    assert "loading PyTorch" in job.progress().message
    warm_up_may_end.set()
    release.set()
    assert job.wait(TIMEOUT) and job.progress().status == "done"
    assert order == ["warm-up ended", "run started"]
    # once the warm-up has ended, a job does not wait for anything
    later = manager.submit(jobs.Job([TINY], RunStore(tmp_path), clock=clock, runner=runner))
    assert later.wait_until_ready is None and later.wait(TIMEOUT)


def test_a_job_stops_once_its_visitor_has_been_gone_for_the_grace_period(tmp_path):
    clock, steps, present = FakeClock(), [], {"here": True}
    job = jobs.Job([TINY], RunStore(tmp_path), clock=clock, owner="tab-1",
                   owner_present=lambda: present["here"],
                   limits=jobs.JobLimits(left_grace_s=5),
                   runner=stepping_runner(clock, steps, present=present, leave_at=20))
    assert job.start().wait(TIMEOUT)
    p = job.progress()
    assert p.status == "stopped" and "visitor who started it left" in p.message
    assert RunStore(tmp_path).get_run(p.run_id).error == p.message
    # gone after step 20; presence is read once per clock second: 5 s of absence, then stop
    assert 20 + 5 <= steps[-1] <= 20 + 5 + 2


def test_a_visitor_who_comes_back_within_the_grace_period_keeps_the_job(tmp_path):
    clock, steps = FakeClock(), []
    answers = iter([True] * 10 + [False] * 3 + [True] * 1000)  # a short disconnect
    release = threading.Event()
    job = jobs.Job([TINY], RunStore(tmp_path), clock=clock, owner="tab-1",
                   owner_present=lambda: next(answers), limits=jobs.JobLimits(left_grace_s=5),
                   runner=stepping_runner(clock, steps, release=release))
    job.start()
    while len(steps) < 40 and job.is_alive():
        threading.Event().wait(0.01)
    release.set()
    assert job.wait(TIMEOUT)
    assert job.progress().status == "done" and len(steps) >= 40


def test_server_and_visitor_limits(tmp_path):
    clock, release = FakeClock(), threading.Event()
    manager = jobs.JobManager(jobs.JobLimits(max_jobs=3, max_jobs_per_visitor=2))
    store = RunStore(tmp_path)

    def job(owner):
        return jobs.Job([TINY], store, owner=owner, clock=clock,
                        runner=stepping_runner(clock, [], release=release))

    first, second = manager.submit(job("a")), manager.submit(job("a"))
    with pytest.raises(ConfigError, match=r"you already have 2 runs .*"
                                          r"PRUNING_MAX_JOBS_PER_VISITOR=2"):
        manager.submit(job("a"))
    third = manager.submit(job("b"))  # another visitor still may
    with pytest.raises(ConfigError, match=r"3 runs are already training .*PRUNING_MAX_JOBS=3"):
        manager.submit(job("c"))
    assert [j.id for j in manager.running()] == [first.id, second.id, third.id]
    release.set()
    assert all(j.wait(TIMEOUT) for j in (first, second, third))
    assert manager.running() == []
    manager.submit(job("a")).wait(TIMEOUT)  # finished jobs no longer count


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_at_its_defaults_is_within_the_limits(method):
    jobs.JobLimits().check(TINY.replace(method=method))


@pytest.mark.parametrize("change, message", [
    ({"epochs": 201}, r"201 epochs is over this server's limit of 200 .*PRUNING_MAX_EPOCHS"),
    ({"method": "synflow", "method_params": {"iterations": 1000}, "epochs": 1},
     r"synflow iterations=1000 is over .* 500 .*PRUNING_MAX_METHOD_ITERATIONS"),
    ({"method": "ispasp", "method_params": {"iterations": 600}}, r"ispasp iterations=600"),
    ({"method": "ispasp", "method_params": {"pruning_batches": 600}}, r"pruning_batches=600"),
    ({"method": "unification", "method_params": {"admm_rounds": 600}}, r"admm_rounds=600"),
])
def test_work_over_a_limit_is_refused(change, message):
    # The server's limits sit inside each setting's own bounds (which validation enforces first).
    limits = jobs.JobLimits(max_method_iterations=500)
    with pytest.raises(ConfigError, match=message):
        limits.check(TINY.replace(**change))
    jobs.JobLimits(max_epochs=1000, max_method_iterations=10**9).check(TINY.replace(**change))


def test_limits_come_from_the_environment():
    limits = jobs.JobLimits.from_env({"PRUNING_MAX_EPOCHS": "50", "PRUNING_MAX_JOB_SECONDS": "90.5",
                                      "PRUNING_MAX_JOBS_PER_VISITOR": " 1 "})
    assert (limits.max_epochs, limits.max_seconds, limits.max_jobs_per_visitor) == (50, 90.5, 1)
    assert limits.max_jobs == jobs.JobLimits().max_jobs
    assert set(jobs.JobLimits.VARIABLES) == {f for f in jobs.JobLimits.__dataclass_fields__}


@pytest.mark.parametrize("variable, value", [
    ("PRUNING_MAX_EPOCHS", "many"), ("PRUNING_MAX_EPOCHS", "0"), ("PRUNING_MAX_EPOCHS", "2.5"),
    ("PRUNING_MAX_JOBS", "-1"), ("PRUNING_MAX_JOB_SECONDS", "nan"),
    ("PRUNING_MAX_JOB_SECONDS", "inf"), ("PRUNING_LEFT_GRACE_SECONDS", "soon"),
])
def test_a_bad_limit_in_the_environment_is_one_line(variable, value):
    with pytest.raises(ConfigError, match=rf"^{variable}='{value}' is not a positive"):
        jobs.JobLimits.from_env({variable: value})


def test_the_job_engine_imports_no_streamlit():
    import subprocess
    import sys

    code = ("import sys, ui.jobs; "
            "sys.exit(1 if any(m.split('.')[0] == 'streamlit' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ---- in the app ----------------------------------------------------------------------------------
def app(path: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def test_runs_page_lists_running_jobs_and_stops_one(tmp_home):
    clock, release = FakeClock(), threading.Event()
    job = live.manager().submit(jobs.Job([TINY], RunStore(tmp_home), clock=clock,
                                         runner=stepping_runner(clock, [], release=release)))
    try:
        at = app("pages/8_Runs.py")
        assert not at.exception, [e.value for e in at.exception]
        assert "Running now" in [h.value for h in at.subheader]
        at.button(key=f"runs-running-stop-{job.id}").click().run()
        assert job.stop_requested
        assert job.wait(TIMEOUT) and job.progress().status == "stopped"
        assert job.progress().message == "stopped by the user"
    finally:
        release.set()
        job.stop()


def test_run_page_refuses_work_over_the_limit(tmp_home, monkeypatch):
    at = app("pages/1_Run.py", {"epochs": "500"})
    before = len(live.manager().running())
    assert any("500 epochs is over this server's limit" in e.value
               and "PRUNING_MAX_EPOCHS" in e.value for e in at.error)
    assert at.button(key="run-start").disabled
    monkeypatch.setenv("PRUNING_MAX_METHOD_ITERATIONS", "50")
    at = app("pages/1_Run.py", {"method": "synflow", "p.iterations": "100", "epochs": "1"})
    assert any("PRUNING_MAX_METHOD_ITERATIONS" in e.value for e in at.error)
    assert at.button(key="run-start").disabled
    assert len(live.manager().running()) == before
    assert not (tmp_home / "runs.db").exists()


def test_a_bad_limit_stops_every_page_with_one_line(tmp_home, monkeypatch):
    monkeypatch.setenv("PRUNING_MAX_JOBS", "lots")
    for page in ("app.py", "pages/1_Run.py", "pages/8_Runs.py"):
        at = app(page)
        assert not at.exception, [e.value for e in at.exception]
        assert [e.value for e in at.error] == [
            "The server's settings are wrong: PRUNING_MAX_JOBS='lots' is not a positive whole "
            "number; unset it for the default (4) or give one"]


def test_a_diverged_run_is_shown_in_red_with_the_fix(tmp_home):
    at = app("pages/1_Run.py", {"optimizer": "sgd", "lr": "10", "momentum": "0.99",
                                "epochs": "2"})
    at.button(key="run-start").click().run()
    job = live.manager().get(at.session_state["job:run"])
    assert job.wait(TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.success
    errors = [e.value for e in at.error]
    assert any(e.startswith("Run failed: diverged at epoch") and "lower the learning rate" in e for e in errors)
    assert RunStore(tmp_home).get_run(job.progress().run_id).status == "failed"
