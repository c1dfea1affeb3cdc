"""RunStore and interrupted runs: a run whose process was killed reads back ``failed`` with an
"interrupted" error and keeps its history; a run of a live process, of another host, or from a
row without an owner stays ``running``; a store written before the owner columns existed opens
and gains them."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruning import store as store_module
from pruning.config import RunConfig
from pruning.store import RunStore, owner_gone, owner_identity

ROOT = Path(__file__).resolve().parent.parent
HAS_PROC = Path("/proc/self/stat").exists()

#: a process that starts a run, records two epochs and one snapshot, prints the id and waits
CHILD = """
import sys, time, torch
from pruning.config import RunConfig
from pruning.masks import Mask
from pruning.store import RunStore
store = RunStore(sys.argv[1])
run_id = store.create_run(RunConfig(epochs=5), {})
for epoch in (1, 2):
    store.add_epoch(run_id, {"epoch": epoch, "test_acc": 0.5 + 0.25 * epoch,
                             "target_sparsity": 0.4 * epoch, "mask_sparsity": 0.4 * epoch})
store.add_snapshot(run_id, 8, 2.0, Mask({"a.weight": torch.tensor([True, False, False, True])}))
print(run_id, flush=True)
time.sleep(600)
"""


def _raw_row(store: RunStore, run_id: str) -> tuple:
    with sqlite3.connect(store.db_path) as db:
        return db.execute("SELECT status, error, finished, summary FROM runs WHERE id = ?",
                          (run_id,)).fetchone()


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_killed_run_reads_back_failed_with_its_history(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT)
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, "the child did not start its run"
        # its owner is alive (another process of this host): the run is left running
        assert store.get_run(run_id).status == "running"
        assert [r.id for r in store.list_runs(status="running")] == [run_id]
        os.kill(child.pid, signal.SIGKILL)
        if HAS_PROC:
            # killed but not reaped yet: a zombie already counts as ended
            _wait_until(lambda: (store_module._proc_state(child.pid) or ("Z",))[0] == "Z")
            assert store.get_run(run_id).status == "failed"
    finally:
        child.kill()
        child.wait()

    run = store.get_run(run_id)
    assert run.status == "failed"
    assert run.error.startswith("interrupted: the process running it")
    assert f"pid {child.pid}" in run.error
    assert "kept what it had: 2 epochs, 1 mask snapshot" in run.error
    # the history is kept, and the summary has the last epoch's metrics like a stopped run
    assert [e["epoch"] for e in store.epochs(run_id)] == [1, 2]
    assert [s["step"] for s in store.snapshots(run_id)] == [8]
    assert store.load_snapshot(run_id, 8).sparsity() == 0.5
    assert run.summary == {"test_acc": 1.0, "target_sparsity": 0.8, "mask_sparsity": 0.8,
                           "epochs_done": 2}
    # durable and written once: the raw row says failed, and reading again changes nothing
    status, error, finished, summary = _raw_row(store, run_id)
    assert (status, error) == ("failed", run.error) and json.loads(summary) == run.summary
    assert store.list_runs(status="running") == []
    again = store.list_runs(status="failed")
    assert [(r.id, r.error, r.finished) for r in again] == [(run_id, run.error, finished)]

    # without /proc only the pid is checked: the killed child's pid is gone, ours is not
    monkeypatch.setattr(store_module, "_boot_id", lambda: None)
    assert owner_identity()["owner_token"] is None
    host = socket.gethostname()
    assert owner_gone(child.pid, host, None)
    assert not owner_gone(os.getpid(), host, None)


def test_run_of_a_live_process_stays_running(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig(), {})
    store.add_epoch(run_id, {"epoch": 1})
    with sqlite3.connect(store.db_path) as db:
        pid, host, token = db.execute("SELECT owner_pid, owner_host, owner_token FROM runs "
                                      "WHERE id = ?", (run_id,)).fetchone()
    assert (pid, host) == (os.getpid(), socket.gethostname())
    assert (token is not None) == HAS_PROC
    for _ in range(2):
        assert store.get_run(run_id).status == "running"
        assert [r.status for r in store.list_runs()] == ["running"]
    assert _raw_row(store, run_id)[:2] == ("running", None)
    # it finishes normally afterwards, untouched
    store.finish_run(run_id, "done", {"test_acc": 0.9})
    assert store.get_run(run_id).status == "done"


def _set_owner(store: RunStore, run_id: str, **values) -> None:
    sets = ", ".join(f"{k} = ?" for k in values)
    with sqlite3.connect(store.db_path) as db:
        db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))


def test_other_host_and_unknown_owner_are_left_alone(tmp_path):
    store = RunStore(tmp_path)
    elsewhere = store.create_run(RunConfig(seed=1), {})
    unknown = store.create_run(RunConfig(seed=2), {})
    # a pid that surely does not exist here (above the kernel's pid_max limit of 2**22)
    _set_owner(store, elsewhere, owner_pid=2 ** 22 + 7, owner_host="another-machine",
               owner_token=None)
    _set_owner(store, unknown, owner_pid=None, owner_host=None, owner_token=None)
    assert {r.id: r.status for r in store.list_runs()} == {elsewhere: "running",
                                                           unknown: "running"}
    assert store.get_run(elsewhere).error is None


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc for the start-time token")
def test_reused_pid_or_reboot_is_not_mistaken_for_the_owner(tmp_path):
    store = RunStore(tmp_path)
    token = owner_identity()["owner_token"]
    boot, namespace, start = token.split(":")
    reused, rebooted, other_ns = (store.create_run(RunConfig(seed=s), {}) for s in (1, 2, 3))
    # our own pid, but the process that started the run began at another time (a restarted
    # server given the same pid, as pid 1 in a container is)
    _set_owner(store, reused, owner_token=f"{boot}:{namespace}:{int(start) - 100}")
    _set_owner(store, rebooted, owner_token=f"not-this-boot:{namespace}:{start}")
    # another container on this host: its pids cannot be checked from here
    _set_owner(store, other_ns, owner_pid=2 ** 22 + 7, owner_token=f"{boot}:1:{start}")
    status = {r.id: r.status for r in store.list_runs()}
    assert status == {reused: "failed", rebooted: "failed", other_ns: "running"}
    assert "0 epochs, 0 mask snapshots" in store.get_run(reused).error


#: the runs table as the first release created it (no owner columns)
OLD_RUNS_TABLE = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    name TEXT,
    config TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}',
    environment TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
"""


def test_old_store_opens_and_migrates(tmp_path):
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.executescript(OLD_RUNS_TABLE)
        db.execute("INSERT INTO runs (id, created, status, config) VALUES (?, ?, ?, ?)",
                   ("20240101-000000-aaaaaa", 1.0, "done", RunConfig(seed=1).to_json()))
        db.execute("INSERT INTO runs (id, created, status, config) VALUES (?, ?, ?, ?)",
                   ("20240101-000001-bbbbbb", 2.0, "running", RunConfig(seed=2).to_json()))
    store = RunStore(tmp_path)
    runs = store.list_runs()
    # an old running row has no owner recorded: nothing can be told, so it is left as it is
    assert [(r.id, r.status) for r in runs] == [("20240101-000001-bbbbbb", "running"),
                                                ("20240101-000000-aaaaaa", "done")]
    with sqlite3.connect(store.db_path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"owner_pid", "owner_host", "owner_token"} <= columns
    new = store.create_run(RunConfig(seed=3), {})
    assert store.get_run(new).status == "running"
    # a second store object on the migrated file does not try to add the columns again
    assert len(RunStore(tmp_path).list_runs()) == 3
