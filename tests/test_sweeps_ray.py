"""Sweeps on Ray: a local Ray gives the same runs as the in-process loop, Stop ends them cleanly,
and on a two-node cluster a worker killed mid-run leaves its run ``failed`` with its history, and
the whole cluster killed mid-sweep aborts the sweep with every started run ``failed``.

Every Ray process a test starts is stopped by it: the local Ray by ``ray.shutdown()``, the
two-node cluster by ending the process group it leads. Only
127.0.0.1 is used.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pruning import cli, sweeps
from pruning.config import RunConfig
from pruning.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)
# four runs that between them write every kind of record: epoch rows, traces (ASWL, SSC), mask
# snapshots, a state-dict model and a whole-module one (SSC changes the architecture)
FOUR = [TINY, TINY.replace(seed=1), TINY.replace(method="aswl"),
        TINY.replace(method="ssc")]
# written by the clock or the machine, not by training
TIMED = {"epoch_time_s", "duration_s", "time_breakdown_s", "latency_ms", "latency_p90_ms",
         "latency_dense_ms", "latency_threads"}


def test_task_resources_one_run_per_core_or_per_gpu():
    assert sweeps.task_resources(RunConfig(), 0) == {"num_cpus": 1, "num_gpus": 0}
    assert sweeps.task_resources(RunConfig(), 2) == {"num_cpus": 1, "num_gpus": 1}
    assert sweeps.task_resources(RunConfig(device="cpu"), 2) == {"num_cpus": 1, "num_gpus": 0}
    assert sweeps.task_resources(RunConfig(threads=4), 0) == {"num_cpus": 4, "num_gpus": 0}


def test_cli_local_engine_sweep(tmp_home, capsys):
    code = cli.main(["sweep", "--engine", "local", "--seeds", "0,1", "--epochs", "1",
                     "--max-train-samples", "128", "--snapshots", "2", "--json"])
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert code == 0 and [r["status"] for r in runs] == ["done", "done"]
    assert [r["config"]["seed"] for r in runs] == [0, 1] and all(len(r["history"]) == 1 for r in runs)


def test_help_and_import_do_not_load_ray():
    code = ("import sys, pruning, pruning.cli, pruning.sweeps, pruning.session\n"
            "try:\n    pruning.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sweep_engine_setting_is_checked(monkeypatch):
    monkeypatch.setenv(sweeps.ENGINE_VARIABLE, "threads")
    with pytest.raises(sweeps.ConfigError, match="PRUNING_SWEEP_ENGINE"):
        sweeps.default_engine()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module's tests, shut down (every process) at the end."""
    ray = sweeps.connect(num_cpus=2)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


def _record(store: RunStore, run) -> dict:
    """Everything a run wrote that training decides (not the clock)."""
    untimed = lambda row: {k: v for k, v in row.items() if k not in TIMED}  # noqa: E731
    masks = {s["step"]: store.load_snapshot(run.id, s["step"]) for s in store.snapshots(run.id)}
    return {"status": run.status, "summary": untimed(run.summary),
            "epochs": [untimed(e) for e in store.epochs(run.id)],
            "traces": store.traces(run.id), "snapshots": store.snapshots(run.id),
            "masks": {step: {k: v.tolist() for k, v in m.items()} for step, m in masks.items()},
            "model": store.load_model(run.id).state_dict()}


@pytest.mark.slow
def test_local_ray_sweep_lands_every_run_like_the_local_engine(tmp_path, local_ray):
    on_ray, local = RunStore(tmp_path / "ray"), RunStore(tmp_path / "local")
    created = []
    ray_out = sweeps.run_sweep(FOUR, on_ray, engine="ray", keep_ray=True,
                               on_event=lambda i, e: e.phase == "created" and created.append(i))
    local_out = sweeps.run_sweep(FOUR, local, engine="local")
    assert (ray_out.engine, ray_out.errors, local_out.engine) == ("ray", [], "local")
    assert sorted(created) == [0, 1, 2, 3]
    assert [r.config for r in ray_out.runs] == FOUR
    for ray_run, local_run in zip(ray_out.runs, local_out.runs):
        got, want = _record(on_ray, ray_run), _record(local, local_run)
        assert got["status"] == "done" and len(got["epochs"]) == 2
        # SSC changes the architecture instead of masking: it has no mask snapshots
        assert len(got["snapshots"]) >= (0 if ray_run.config.method == "ssc" else 2)
        assert ray_run.environment["ray_worker_pid"] != os.getpid()  # it trained on a worker
        model, want_model = got.pop("model"), want.pop("model")
        assert got == want
        assert model.keys() == want_model.keys()
        assert all((model[k] == want_model[k]).all() for k in model)
    assert {r.config.method for r in ray_out.runs if on_ray.traces(r.id)} == {"aswl", "ssc"}


@pytest.mark.slow
def test_stop_cancels_waiting_runs_and_stops_running_ones(tmp_path, local_ray):
    store = RunStore(tmp_path)
    longer = [TINY.replace(epochs=300, seed=seed) for seed in range(4)]  # minutes, if not stopped
    # Stop once two runs have an epoch row each: both are running, two wait for a core
    stop = lambda: sum(bool(store.epochs(r.id)) for r in store.list_runs()) >= 2  # noqa: E731
    out = sweeps.run_sweep(longer, store, engine="ray", keep_ray=True, should_stop=stop)
    assert out.stopped and out.errors == []
    # Two run at a time on 2 CPUs; on a heavily loaded machine Ray has been seen to start a third
    # just as the stop arrived. Either way every started run ends stopped with part of its
    # history, and the last waiting run never starts.
    assert 2 <= len(out.runs) <= 3
    assert all(r.status == "stopped" for r in out.runs)
    assert all(len(store.epochs(r.id)) < 300 for r in out.runs)
    assert sum(len(store.epochs(r.id)) >= 1 for r in out.runs) >= 2
    assert len(store.list_runs()) == len(out.runs) < 4  # waiting runs were cancelled


# Two Ray nodes on 127.0.0.1, started the way Ray's own multi-node tests start them. `ray start
# --head --node-ip-address 127.0.0.1` plus `ray start --address ...` cannot do it on Linux: Ray
# turns 127.0.0.1 into the routable address, and with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which
# keeps the loopback) it refuses a second node. The cluster prints its address and lives until
# its stdin closes.
TWO_NODES = """
import socket, sys
from ray.cluster_utils import Cluster

def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

node = dict(num_cpus=1, node_ip_address="127.0.0.1")
cluster = Cluster(initialize_head=True, head_node_args=dict(
    node, include_dashboard=False, dashboard_agent_listen_port=port()))
cluster.add_node(**node, dashboard_agent_listen_port=port())
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""


# The cluster and its client agree on authentication (a client that sends a token to a cluster
# without one loses its actors): none, as the cluster is reachable from this machine only.
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def two_nodes(tmp_path):
    """(process, address) of the two-node cluster. It leads its own process group, which is
    ended after the test whatever the test did (or failed to do)."""
    log = tmp_path / "cluster.log"
    cluster = subprocess.Popen(
        [sys.executable, "-c", TWO_NODES], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=log.open("w"), text=True, start_new_session=True,
        env=dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **NO_TOKEN))  # 127.0.0.1 only
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), log.read_text()[-2000:]
        yield cluster, address
    finally:
        _end_cluster(cluster)


def _end_cluster(cluster: subprocess.Popen) -> None:
    cluster.stdin.close()  # it shuts its nodes down
    try:
        cluster.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(cluster.pid, signal.SIGKILL)  # anything of its group still there
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_two_node_cluster_worker_killed_mid_run(tmp_path, two_nodes):
    _, address = two_nodes
    driver = None
    try:
        home = tmp_path / "home"
        env = dict(os.environ, PRUNING_HOME=str(home), PYTHONPATH=str(ROOT), **NO_TOKEN)
        driver = subprocess.Popen(
            [sys.executable, "-m", "pruning", "sweep", "--engine", "ray", "--address", address,
             "--seeds", "0,1,2", "--epochs", "20", "--max-train-samples", "1024", "--json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store = RunStore(home)
        victim = None
        deadline = time.time() + 300
        while victim is None:
            assert driver.poll() is None and time.time() < deadline, driver.stderr.read()
            for run in store.list_runs(status="running") if store.db_path.exists() else []:
                if store.epochs(run.id):  # mid-run: it has history, and more to come
                    victim = run
                    break
            time.sleep(0.2)
        os.kill(victim.environment["ray_worker_pid"], signal.SIGKILL)
        out, err = driver.communicate(timeout=300)
        runs = {r["id"]: r for r in json.loads(out)["runs"]}
        assert driver.returncode == 1, err
        lost = store.get_run(victim.id)
        assert lost.status == "failed" and lost.error.startswith("worker lost"), lost.error
        assert 1 <= len(store.epochs(lost.id)) < 20 and lost.summary["epochs_done"] >= 1
        others = [r for rid, r in runs.items() if rid != victim.id]
        assert len(runs) == 3 and [r["status"] for r in others] == ["done", "done"]
        assert all(len(r["history"]) == 20 for r in others)
        nodes_used = {store.get_run(rid).environment["ray_node_id"] for rid in runs}
        assert len(nodes_used) == 2  # both nodes trained
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()


# The driver of a sweep whose cluster the test kills. It runs in a process of its own: Ray keeps
# one runtime per process, with settings fixed when it first starts (a local Ray of an earlier
# test turns on token authentication for the whole process, and this cluster has none). It
# prints what run_sweep returned and what its store then holds, as one JSON line.
GONE_DRIVER = """
import json, sys
from pruning import sweeps
from pruning.config import RunConfig
from pruning.store import RunStore

home, address, configs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
# A call to the gone cluster that hangs gives up after 5 s instead of 30: a short test.
sweeps.CLUSTER_TIMEOUT_S = 5.0
store, created, ended = RunStore(home), [], []
outcome = sweeps.run_sweep(
    [RunConfig.from_dict(json.loads(c)) for c in configs], store, engine="ray", address=address,
    on_event=lambda i, e: e.phase == "created" and created.append(e.metrics["run_id"]),
    on_run_end=lambda i, run, error: ended.append(i))
import ray
print(json.dumps({"aborted": outcome.aborted, "errors": outcome.errors,
                  "stopped": outcome.stopped, "runs": [r.id for r in outcome.runs],
                  "created": created, "ended": ended, "connected": ray.is_initialized(),
                  "store": {r.id: [r.status, r.error] for r in store.list_runs()}}), flush=True)
"""


@pytest.mark.slow
def test_cluster_gone_mid_sweep_aborts_it_and_fails_its_runs(tmp_path, two_nodes):
    cluster, address = two_nodes
    home = tmp_path / "home"
    configs = [TINY.replace(epochs=300, seed=seed) for seed in range(3)]  # minutes each
    driver = subprocess.Popen(
        [sys.executable, "-c", GONE_DRIVER, str(home), address,
         json.dumps([c.to_json() for c in configs])],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **NO_TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = RunStore(home)
        deadline = time.monotonic() + 60
        had: dict[str, int] = {}
        while not any(had.values()):  # at least one run is mid-way: it has an epoch row
            if driver.poll() is not None:
                pytest.fail(f"the sweep ended before the cluster went: {driver.stderr.read()}")
            assert time.monotonic() < deadline, "no run wrote an epoch row within 60 s"
            time.sleep(0.1)
            had = {r.id: len(store.epochs(r.id)) for r in store.list_runs()} \
                if store.db_path.exists() else {}
        os.killpg(cluster.pid, signal.SIGKILL)  # every node at once, as a machine that is lost
        try:  # a sweep that hangs fails here instead of holding up the suite
            out, err = driver.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail("run_sweep did not return within 40 s of the cluster going away")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err[-3000:]
    got = json.loads(out)
    aborted, in_store = got["aborted"], got["store"]
    assert aborted and "\n" not in aborted and aborted.startswith("the Ray cluster went away (")
    assert aborted.endswith(f"{len(in_store)} running run(s) recorded as failed with their "
                            f"history, {len(configs) - len(in_store)} not started"), json.dumps(got)
    assert got["errors"] == [] and not got["stopped"]
    assert not got["connected"]  # it left the gone cluster (else Ray ends the process later)
    # every started run is in the store once, ended once, and in the outcome
    assert 1 <= len(in_store) <= 2 and set(had) <= set(in_store)
    assert sorted(got["created"]) == sorted(in_store) == sorted(got["runs"])
    assert sorted(got["ended"]) == sorted(set(got["ended"])) and len(got["ended"]) == len(in_store)
    assert len({store.get_run(run_id).config.seed for run_id in in_store}) == len(in_store)
    for run_id, (status, error) in in_store.items():
        assert status == "failed", (run_id, status, error)
        assert error.startswith("the Ray cluster went away during the run: "), error
        run, epochs = store.get_run(run_id), [row["epoch"] for row in store.epochs(run_id)]
        # what had reached the store is kept, with no row twice and none missing
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= had.get(run_id, 0)
        assert len(epochs) < 300 and run.summary["epochs_done"] == len(epochs)
