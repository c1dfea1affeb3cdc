"""Faults injected into the store and a run's files, and what must survive them.

Damaged store (garbage over runs.db's first 4 KB, a row with invalid JSON, config fields from a
newer version or of the wrong type), a full disk (``OSError(ENOSPC)`` from the file system and
SQLite's "database or disk is full", injected at each write point), a tampered model file, and
missing or corrupt snapshot and model files. Each fault is met with one clear line and nothing
else is lost.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

import pruning.store as store_module
from pruning.cli import main
from pruning.config import ConfigError, RunConfig
from pruning.masks import Mask
from pruning.modelfile import ModelFileError, load_model_file
from pruning.session import run_session
from pruning.store import (DamagedRunError, DiskFullError, RunFilesError, RunStore,
                           StoreUnreadableError)

QUICK = dict(epochs=2, max_train_samples=128, snapshots=4)


def quick_run(store: RunStore, **changes):
    return run_session(RunConfig(**{**QUICK, **changes}), store, measure_latency=False)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def done_run(tmp_home):
    store = RunStore()
    run = quick_run(store)
    assert run.status == "done"
    return store, run


# ---- damaged store ------------------------------------------------------------------------------
def test_garbage_over_the_first_4kb_is_one_line_and_moving_aside_keeps_the_old_file(
        done_run, capsys):
    store, run = done_run
    store.close()  # checkpoints the WAL into runs.db, as when the process ends
    with open(store.db_path, "r+b") as f:
        f.write(b"not a database. " * 256)  # 4096 bytes over the header and first page
    damaged = store.db_path.read_bytes()

    fresh = RunStore(store.home)
    with pytest.raises(StoreUnreadableError, match="cannot be read") as caught:
        fresh.list_runs()
    assert str(store.db_path) in str(caught.value) and "move it aside" in str(caught.value)
    with pytest.raises(StoreUnreadableError):
        fresh.check()
    for argv in (["list"], ["show", run.id], ["export", run.id, "--out", str(store.home / "x")]):
        assert main(argv) == 2
        assert str(store.db_path) in one_line_error(capsys)
    assert not (store.home / "x").exists()

    kept = fresh.move_aside()
    assert kept.read_bytes() == damaged and not store.db_path.exists()
    assert fresh.list_runs() == []
    new = quick_run(fresh)
    assert [r.id for r in fresh.list_runs()] == [new.id]
    assert kept.read_bytes() == damaged  # the old store is untouched for recovery


def _set_column(store: RunStore, run_id: str, column: str, value: str) -> None:
    db = sqlite3.connect(store.db_path)
    db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, run_id))
    db.commit()
    db.close()


@pytest.mark.parametrize("column, text, reason", [
    ("config", '{"model": "small_cnn", "sparsity": 0.9', "config is not valid JSON"),
    ("summary", "{nan}", "summary is not valid JSON"),
    ("environment", "[1, 2]", "environment is not a JSON object"),
    ("config", '{"sparsity": "very"}', "'sparsity' holds str"),
])
def test_a_damaged_row_is_listed_apart_while_the_others_show(tmp_home, capsys, column, text,
                                                              reason):
    store = RunStore()
    good, bad = (store.create_run(RunConfig(seed=s), {}) for s in (1, 2))
    for run_id in (good, bad):
        store.finish_run(run_id, "done", {"test_acc": 0.5})
    _set_column(store, bad, column, text)

    assert [r.id for r in store.list_runs()] == [good]
    [damaged] = store.damaged_runs()
    assert damaged.id == bad and reason in damaged.reason and damaged.status == "done"
    with pytest.raises(DamagedRunError, match=f"run {bad} is damaged"):
        store.get_run(bad)

    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    assert good in out and bad not in out
    assert f"damaged: run {bad} is damaged" in err and reason in err
    assert main(["show", bad]) == 2
    assert reason in one_line_error(capsys)
    # nothing was rewritten: the damaged text is still there to repair by hand
    raw = sqlite3.connect(store.db_path).execute(
        f"SELECT {column} FROM runs WHERE id = ?", (bad,)).fetchone()[0]
    assert raw == text


def test_a_damaged_history_row_is_skipped_and_reported(done_run, capsys):
    store, run = done_run
    db = sqlite3.connect(store.db_path)
    db.execute("UPDATE epochs SET data = 'garbage' WHERE run_id = ? AND epoch = 1", (run.id,))
    db.commit()
    db.close()
    assert [e["epoch"] for e in store.epochs(run.id)] == [2]
    assert store.file_problems(run.id) == ["1 epoch row damaged (left out)"]
    assert main(["show", run.id]) == 0
    assert "files: 1 epoch row damaged" in capsys.readouterr().out


def _keeps_unknown_fields(cls, data):
    """The other reading of an unknown field: keep it rather than refuse the config."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@pytest.mark.parametrize("from_dict", ["refuses", "keeps"])
def test_config_fields_from_a_newer_version_are_kept_and_reported(tmp_home, capsys, monkeypatch,
                                                                   from_dict):
    if from_dict == "keeps":
        monkeypatch.setattr(RunConfig, "from_dict", classmethod(_keeps_unknown_fields))
    store = RunStore()
    run_id = store.create_run(RunConfig(seed=4), {})
    store.finish_run(run_id, "done", {"test_acc": 0.5})
    newer = dict(RunConfig(seed=4).to_dict(), quantize_bits=4, teacher="resnet56")
    _set_column(store, run_id, "config", json.dumps(newer))

    [run] = store.list_runs()
    assert run.config == RunConfig(seed=4)
    assert run.unknown_fields == {"quantize_bits": 4, "teacher": "resnet56"}
    assert store.damaged_runs() == []
    store.rename_run(run_id, "renamed")  # writing the row keeps the newer fields
    raw = json.loads(sqlite3.connect(store.db_path).execute(
        "SELECT config FROM runs").fetchone()[0])
    assert raw["quantize_bits"] == 4 and raw["teacher"] == "resnet56"

    assert main(["show", run_id]) == 0
    assert "does not know (kept, not used): quantize_bits=4, teacher=resnet56" in \
        capsys.readouterr().out
    assert main(["list"]) == 0
    assert "quantize_bits, teacher" in capsys.readouterr().err


# ---- a full disk ---------------------------------------------------------------------------------
class _FullFile:
    """A file whose write stores half its bytes and then fails like a full disk."""

    def __init__(self, path, mode):
        self._f = open(path, mode)

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _disk_full_for(monkeypatch, predicate):
    """Make the store's file writes fail with ENOSPC for paths where ``predicate`` holds."""
    calls = {"n": 0}

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode and predicate(Path(path), calls):
            return _FullFile(path, mode)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_module, "open", fake_open, raising=False)


def _no_partial_files(home: Path) -> None:
    assert [p for p in home.rglob("*") if p.name.endswith(".partial")] == []


def _check_failed_for_disk_full(store: RunStore, run, what: str) -> None:
    assert run.status == "failed"
    assert run.error.startswith(f"disk full while saving {what}"), run.error
    assert "free space in PRUNING_HOME" in run.error and "Traceback" not in run.error
    _no_partial_files(store.home)
    # reading still works, and the run is never relabelled as interrupted later
    again = RunStore(store.home).get_run(run.id)
    assert again.status == "failed" and again.error == run.error
    assert [r.id for r in RunStore(store.home).list_runs()] == [run.id]


def test_disk_full_while_saving_the_model(tmp_home, monkeypatch):
    _disk_full_for(monkeypatch, lambda path, _: path.name == "model.pt.partial")
    store = RunStore()
    run = quick_run(store)
    _check_failed_for_disk_full(store, run, f"the model of run {run.id}")
    assert not store.model_path(run.id).exists()
    assert len(store.epochs(run.id)) == QUICK["epochs"]  # the history is kept


def test_disk_full_while_saving_a_mask_snapshot(tmp_home, monkeypatch):
    def third_snapshot(path, calls):
        if path.suffix == ".partial" and path.parent.name == "masks":
            calls["n"] += 1
            return calls["n"] == 3
        return False

    _disk_full_for(monkeypatch, third_snapshot)
    store = RunStore()
    run = quick_run(store)
    _check_failed_for_disk_full(store, run, "mask snapshot")
    kept = store.snapshots(run.id)
    assert len(kept) == 2 and all(store.load_snapshot(run.id, s["step"]) for s in kept)


class _SqliteFull(sqlite3.Connection):
    """A connection whose matching statements fail as SQLite does on a full disk."""
    fail_on: tuple[str, ...] = ()
    times = 1 << 30

    def execute(self, sql, *args):
        if sql.lstrip().startswith(self.fail_on) and type(self).times > 0:
            type(self).times -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def _sqlite_full(monkeypatch, fail_on: tuple[str, ...], times: int = 1 << 30) -> None:
    full = type("Full", (_SqliteFull,), {"fail_on": fail_on, "times": times})
    connect = sqlite3.connect
    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda *a, **k: connect(*a, **k, factory=full))


def test_disk_full_while_recording_an_epoch(tmp_home, monkeypatch):
    _sqlite_full(monkeypatch, ("INSERT INTO epochs",))
    store = RunStore()
    run = quick_run(store)
    _check_failed_for_disk_full(store, run, f"epoch 1 of run {run.id}")
    assert store.epochs(run.id) == []


def test_disk_full_when_recording_the_end_frees_the_reserve_and_retries(tmp_home, monkeypatch):
    _sqlite_full(monkeypatch, ("UPDATE runs SET status",), times=1)
    store = RunStore()
    run = quick_run(store)
    assert run.status == "done"  # the first try failed; the second, with the reserve freed, held
    assert not store.reserve_path.exists()
    store.create_run(RunConfig(), {})  # the next run keeps the reserve again
    assert store.reserve_path.stat().st_size == store_module.RESERVE_BYTES


def test_reading_works_while_every_write_fails(done_run, monkeypatch, capsys):
    store, run = done_run
    orphan = store.create_run(RunConfig(seed=9), {})
    _set_column(store, orphan, "owner_pid", "999999999")  # an owner process that is gone
    store.close()
    _sqlite_full(monkeypatch, ("INSERT", "UPDATE", "DELETE"))
    reader = RunStore(store.home)
    assert {r.id for r in reader.list_runs()} == {run.id, orphan}
    assert main(["list"]) == 0 and run.id in capsys.readouterr().out
    with pytest.raises(DiskFullError, match="disk full while saving a new run"):
        reader.create_run(RunConfig(), {})
    assert main(["run", "--epochs", "1"]) == 2
    assert "disk full while saving a new run" in one_line_error(capsys)


# ---- model files ---------------------------------------------------------------------------------
class _Hostile:
    """Unpickling this creates a file: stands for any code a tampered file could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_tampered_model_file_runs_no_code(done_run, tmp_path, capsys):
    store, run = done_run
    marker = tmp_path / "code-ran"
    torch.save({"format": "state_dict", "state_dict": {"w": _Hostile(marker)}},
               store.model_path(run.id))
    with pytest.raises(ModelFileError, match="asks to run code when loaded"):
        store.load_model(run.id)
    out = tmp_path / "out"
    assert main(["export", run.id, "--out", str(out)]) == 2
    assert "asks to run code" in one_line_error(capsys)
    assert not marker.exists() and not out.exists()
    torch.load(store.model_path(run.id), weights_only=False)  # what the old loader did
    assert marker.exists()


def test_an_older_pickled_module_file_gets_a_clear_message(done_run):
    store, run = done_run
    model = store.load_model(run.id)
    torch.save({"format": "module", "module": model}, store.model_path(run.id))
    with pytest.raises(ModelFileError, match="older versions used"):
        store.load_model(run.id)


def test_an_older_state_dict_file_still_loads(done_run):
    store, run = done_run
    model = store.load_model(run.id)
    torch.save({"format": "state_dict", "state_dict": model.state_dict()},
               store.model_path(run.id))
    again = store.load_model(run.id)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again(x), model(x))


@pytest.mark.parametrize("changes", [
    {}, {"method": "ssc"}, {"method": "ispasp", "epochs": 3}, {"model": "resnet20",
                                                               "image_size": 16},
])
def test_model_and_compact_files_load_with_weights_only(tmp_home, tmp_path, changes):
    """Masked, architecture-changing (SSC, i-SpaSP) and compact models rebuilt from plain data
    give the same outputs as the model the run ended with."""
    store = RunStore()
    run = quick_run(store, **changes)
    assert run.status == "done", run.error
    blob = torch.load(store.model_path(run.id), weights_only=True)
    assert blob["format"] == "pruning-model/2"
    model = store.load_model(run.id)
    from pruning.data import dataset_shape
    channels, size, _ = dataset_shape(run.config)
    x = torch.randn(4, channels, size, size)
    from pruning.export import compact_of_run, export_run
    compact, _ = compact_of_run(store, run.id)
    paths = export_run(store, run.id, tmp_path / "out")
    loaded = load_model_file(paths["compact"])
    with torch.no_grad():
        assert torch.allclose(loaded(x), compact(x), atol=1e-6)
        assert torch.allclose(loaded(x), model(x), atol=1e-4)
    assert sum(p.numel() for p in loaded.parameters()) == run.summary["params_compact"]
    weights = torch.load(paths["weights"], weights_only=True)
    assert set(weights) == set(model.state_dict())


# ---- missing or corrupt run files ----------------------------------------------------------------
def test_missing_snapshot_named_by_show_and_export_writes_nothing(done_run, tmp_path, capsys):
    store, run = done_run
    snaps = store.snapshots(run.id)
    store.snapshot_path(run.id, snaps[-1]["step"]).unlink()
    store.snapshot_path(run.id, snaps[0]["step"]).write_bytes(b"truncated")

    with pytest.raises(RunFilesError, match=f"run {run.id}'s files are incomplete"):
        store.load_snapshot(run.id, snaps[-1]["step"])
    problems = store.file_problems(run.id)
    assert problems == [f"mask snapshot {snaps[0]['step']:08d}.npz is corrupt (not a readable mask)",
                        f"mask snapshot {snaps[-1]['step']:08d}.npz is missing"]
    assert main(["show", run.id]) == 0
    out = capsys.readouterr().out
    assert f"files: mask snapshot {snaps[-1]['step']:08d}.npz is missing" in out

    target = tmp_path / "out"
    assert main(["export", run.id, "--out", str(target)]) == 2
    err = one_line_error(capsys)
    assert run.id in err and "is missing" in err
    assert not target.exists()


def test_missing_model_file_refused_before_anything_is_written(done_run, tmp_path, capsys):
    store, run = done_run
    store.model_path(run.id).unlink()
    target = tmp_path / "out"
    target.mkdir()
    assert main(["export", run.id, "--out", str(target)]) == 2
    assert "model file" in one_line_error(capsys)
    assert list(target.iterdir()) == []
    assert "model.pt is missing" in store.file_problems(run.id)


def test_export_out_is_a_file_or_unwritable(done_run, tmp_path, capsys, monkeypatch):
    store, run = done_run
    existing = tmp_path / "exists.txt"
    existing.write_text("mine")
    assert main(["export", run.id, "--out", str(existing)]) == 2
    assert f"--out {existing} is a file" in one_line_error(capsys)
    assert existing.read_text() == "mine"
    assert main(["export", run.id, "--out", str(existing / "sub")]) == 2
    assert "is a file" in one_line_error(capsys)  # a parent of the folder is a file

    import pruning.export as export_module
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(export_module, "open", read_only, raising=False)
    target = tmp_path / "ro"
    assert main(["export", run.id, "--out", str(target)]) == 2
    assert "Permission denied" in one_line_error(capsys)
    assert list(target.iterdir()) == []


def test_export_disk_full_midway_leaves_nothing(done_run, tmp_path, capsys, monkeypatch):
    store, run = done_run
    import pruning.export as export_module
    count = {"n": 0}

    def fills_up(path, mode="r", *args, **kwargs):
        if "w" in mode:
            count["n"] += 1
            if count["n"] == 3:  # the third file of four
                return _FullFile(path, mode)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(export_module, "open", fills_up, raising=False)
    target = tmp_path / "out"
    assert main(["export", run.id, "--out", str(target), "--onnx"]) == 2
    assert "disk full while writing the export" in one_line_error(capsys)
    assert list(target.iterdir()) == []


def test_a_model_file_whose_description_does_not_fit_its_tensors_is_refused(done_run):
    """A tampered description must not make loading build (allocate) what it likes."""
    store, run = done_run
    blob = torch.load(store.model_path(run.id), weights_only=True)
    name = next(k for k in blob["state_dict"] if k.endswith(".weight")).rsplit(".", 1)[0]
    layers = json.loads(blob["layers"])
    layers[name] = {"type": "Linear", "args": {"in_features": 10 ** 6, "out_features": 10 ** 6,
                                               "bias": True}}
    blob["layers"] = json.dumps(layers)
    torch.save(blob, store.model_path(run.id))
    with pytest.raises(ModelFileError, match=f"describes layer {name} with weight of shape "
                                             r"\(1000000, 1000000\)"):
        store.load_model(run.id)
