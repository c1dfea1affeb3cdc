"""RunStore: round trip of every record kind, WAL mode, and two processes writing at once."""
import multiprocessing as mp
import sqlite3

import pytest
import torch

from pruning.config import RunConfig
from pruning.masks import Mask
from pruning.store import RunStore, UnknownRunError


def test_round_trip(tmp_path):
    store = RunStore(tmp_path)
    config = RunConfig(sparsity=0.8, seed=3, method_params={"lam": 5.0})
    run_id = store.create_run(config, {"torch": torch.__version__}, name="mine")
    store.add_epoch(run_id, {"epoch": 1, "test_acc": 0.5, "layer_sparsity": {"a.weight": 0.25}})
    store.add_epoch(run_id, {"epoch": 2, "test_acc": 0.75, "lr": float("nan")})
    store.add_trace(run_id, "aswl", 10, {"attention": [0.5, 0.4]})
    mask = Mask({"a.weight": torch.tensor([[True, False, True]]), "b.weight": torch.zeros(5, dtype=torch.bool)})
    store.add_snapshot(run_id, 7, 1.5, mask)
    store.finish_run(run_id, "done", {"test_acc": 0.75, "params": 123})

    run = store.get_run(run_id[:12])  # a unique prefix resolves
    assert run.id == run_id and run.status == "done" and run.name == "mine"
    assert run.config == config
    assert run.summary == {"test_acc": 0.75, "params": 123}
    assert [e["test_acc"] for e in store.epochs(run_id)] == [0.5, 0.75]
    assert store.epochs(run_id)[1]["lr"] is None  # NaN stored as null, still valid JSON
    assert store.traces(run_id, "aswl") == [{"kind": "aswl", "step": 10, "attention": [0.5, 0.4]}]
    assert store.snapshots(run_id) == [{"step": 7, "epoch": 1.5, "sparsity": pytest.approx(mask.sparsity())}]
    assert store.load_snapshot(run_id, 7).equals(mask)
    assert [r.id for r in store.list_runs()] == [run_id]

    store.delete_run(run_id)
    assert store.list_runs() == []
    assert not store.run_dir(run_id).exists()
    with pytest.raises(UnknownRunError, match="no run"):
        store.get_run(run_id)


def test_wal_mode_and_nothing_created_before_first_write(tmp_path):
    store = RunStore(tmp_path / "home")
    assert store.list_runs() == []
    with pytest.raises(UnknownRunError):
        store.get_run("nope")
    assert not (tmp_path / "home").exists()
    store.create_run(RunConfig(), {})
    mode = sqlite3.connect(store.db_path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _writer(home, worker, count):
    store = RunStore(home)
    for i in range(count):
        run_id = store.create_run(RunConfig(seed=worker * 1000 + i), {})
        for epoch in range(3):
            store.add_epoch(run_id, {"epoch": epoch, "worker": worker})
        store.finish_run(run_id, "done", {"worker": worker})


def test_two_processes_write_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    runs = RunStore(tmp_path).list_runs()
    assert len(runs) == 30
    # a key that is no summary field is kept among the extras
    assert sorted(r.summary["extras"]["worker"] for r in runs) == [1] * 15 + [2] * 15
    assert all(len(RunStore(tmp_path).epochs(r.id)) == 3 for r in runs)


def test_store_deleted_or_recreated_under_an_open_connection_loses_nothing(tmp_path):
    import shutil

    home = tmp_path / "home"
    store = RunStore(home)
    store.create_run(RunConfig(), name="first")
    shutil.rmtree(home)  # the whole store deleted while this thread's connection is open
    store.create_run(RunConfig(), name="after-delete")
    assert [r.name for r in store.list_runs()] == ["after-delete"]
    for suffix in ("", "-wal", "-shm"):  # deleted again, then created anew by another store
        (home / f"runs.db{suffix}").unlink(missing_ok=True)
    RunStore(home).create_run(RunConfig(), name="other")
    store.create_run(RunConfig(), name="mine")  # must land in the new file, not the unlinked one
    assert sorted(r.name for r in RunStore(home).list_runs()) == ["mine", "other"]


def test_generation_changes_with_every_write_from_any_store_object(tmp_home):
    """The change counter the app's cached reads are keyed on: bumped by writes to runs (a new
    run, a rename, its end, a deletion) and to their history, whoever writes."""
    from pruning.config import RunConfig
    from pruning.masks import Mask

    store, other = RunStore(tmp_home), RunStore(tmp_home)
    assert store.generation() == 0  # no file yet, and reading creates none
    assert not store.db_path.exists()
    run_id = other.create_run(RunConfig())
    seen = {store.generation()}
    runs, history = store.generation("runs"), store.generation("history")
    other.add_epoch(run_id, {"epoch": 1, "train_loss": 1.0})
    assert store.generation("runs") == runs and store.generation("history") > history
    other.add_snapshot(run_id, 1, 0.5, Mask({"w": torch.ones(3, dtype=torch.bool)}))
    other.add_trace(run_id, "attention", 1, {"a": 1.0})
    for change in (lambda: other.rename_run(run_id, "renamed"),
                   lambda: other.finish_run(run_id, "done", {}),
                   lambda: other.delete_run(run_id)):
        before = store.generation("runs")
        change()
        assert store.generation("runs") > before
    seen.add(store.generation())
    assert len(seen) == 2
    with pytest.raises(ValueError, match="runs, history or all"):
        store.generation("everything")


def test_runs_page_by_page_and_counted(tmp_home):
    from pruning.config import RunConfig

    store = RunStore(tmp_home)
    ids = [store.create_run(RunConfig(seed=i)) for i in range(5)]
    newest_first = list(reversed(ids))
    assert store.count_runs() == 5 and store.count_runs("running") == 5
    assert store.count_runs("done") == 0
    assert [r.id for r in store.list_runs(limit=2)] == newest_first[:2]
    assert [r.id for r in store.list_runs(limit=2, offset=2)] == newest_first[2:4]
    assert [r.id for r in store.list_runs(offset=4)] == newest_first[4:]


def test_run_id_clash_draws_again_and_keeps_the_store(tmp_path, monkeypatch):
    """Two runs created in the same second whose random suffixes clash: the second draws a new
    id instead of reporting the store as damaged (1,000 runs a second clash ~3 % of the time)."""
    import uuid as uuid_module

    store = RunStore(tmp_path)
    same, other = uuid_module.UUID("a" * 32), uuid_module.UUID("b" * 32)
    drawn = [same, same]  # the first two draws clash, every later one is different
    monkeypatch.setattr("pruning.store.uuid.uuid4", lambda: drawn.pop(0) if drawn else other)
    monkeypatch.setattr("pruning.store.time.strftime", lambda fmt: "20260101-000000")
    first = store.create_run(RunConfig(), {})
    second = store.create_run(RunConfig(), {})
    assert first != second
    assert {r.id for r in store.list_runs()} == {first, second}
