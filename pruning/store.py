"""RunStore: every run's config, status, per-epoch history, traces and files, in SQLite.

Layout under PRUNING_HOME (default ``~/.pruning``)::

    runs.db                    runs, epochs, traces, snapshots (SQLite, WAL mode)
    runs/<run id>/masks/<step>.npz   packed-bit mask snapshots (Mask.to_bytes)
    runs/<run id>/model.pt     final weights: a state_dict, or the whole module when the method
                               changed the architecture (our own files only; uploaded weights are
                               never loaded this way)

WAL mode plus a busy timeout lets two processes (two browser tabs, a sweep and the app) write at
once. A store object keeps one connection per thread (sqlite3 connections may not cross
threads), open for the thread's life: it closes when the thread ends or the store is garbage
collected, or with ``close()``. So one store object can be shared by the threads of the
Streamlit server, and a run's many small writes do not each pay for opening a connection (and,
in WAL mode, for the checkpoint that closing the last connection triggers).

Interrupted runs: each run row records the process that owns it (pid, host name, and on Linux a
token from ``/proc`` -- boot id, pid namespace, process start time -- so a reused pid or a reboot
is not mistaken for the owner). When runs are read, a run still ``running`` whose owner process
is gone *on this host* is written back once as ``failed`` with an "interrupted" error, keeping its
epochs and snapshots. Runs of another host, of another container's pid namespace, or rows from
before these columns existed are left as they are: there is no way to tell from here.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pruning.config import ConfigError, RunConfig
from pruning.masks import Mask
from pruning.results import stored_summary

STATUSES = ("running", "done", "failed", "stopped")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    name TEXT,
    config TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}',
    environment TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    owner_pid INTEGER,
    owner_host TEXT,
    owner_token TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS epochs_run ON epochs(run_id, epoch);
CREATE TABLE IF NOT EXISTS traces (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_run ON traces(run_id, kind, step);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL NOT NULL,
    sparsity REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""

#: columns added after the first release; ``_migrate`` adds them to stores created before
OWNER_COLUMNS = (("owner_pid", "INTEGER"), ("owner_host", "TEXT"), ("owner_token", "TEXT"))


class UnknownRunError(ConfigError):
    """No run with that id (or the prefix is ambiguous)."""


def home_dir() -> Path:
    return Path(os.environ.get("PRUNING_HOME") or Path.home() / ".pruning").expanduser()


@dataclass
class Run:
    id: str
    config: RunConfig
    status: str
    created: float
    finished: float | None = None
    name: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def label(self) -> str:
        c = self.config
        return self.name or f"{c.model}·{c.method}·{c.schedule}·{c.sparsity:g}·s{c.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "label": self.label(), "status": self.status,
                "created": self.created, "finished": self.finished, "error": self.error,
                "config": self.config.to_dict(), "summary": self.summary,
                "environment": self.environment}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _dumps(value: Any) -> str:
    # NaN/inf are not JSON; store them as null so every reader can parse the row.
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), default=_json_default)


# ---- who owns a running run ----------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _boot_id() -> str | None:
    """This boot's id (Linux); None where there is no /proc."""
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _pid_namespace() -> str:
    """The inode of this process's pid namespace ("" if unreadable): pids only mean something
    inside one namespace, so a run started in another container on the same host is not ours to
    judge."""
    try:
        return "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit())
    except OSError:
        return ""


def _proc_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of ``pid`` from /proc, or None if no
    such process."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # Field 2 (the command name) may hold spaces and parentheses: split after the last ')'.
    # What follows is field 3 (state) onwards, so field 22 (starttime) is index 19.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], fields[19]


def owner_identity() -> dict[str, Any]:
    """The current process as a run owner: pid, host and a token that survives pid reuse
    (``boot id:pid namespace:start ticks``), or no token where /proc is missing."""
    pid, boot, proc = os.getpid(), _boot_id(), _proc_state(os.getpid())
    token = f"{boot}:{_pid_namespace()}:{proc[1]}" if boot and proc else None
    return {"owner_pid": pid, "owner_host": socket.gethostname(), "owner_token": token}


def owner_gone(pid: int | None, host: str | None, token: str | None) -> bool:
    """True only when we can tell that the process that owned a run has ended; False when it is
    alive or when we cannot know (no owner recorded, another host, another pid namespace)."""
    if pid is None or host != socket.gethostname():
        return False
    boot = _boot_id()
    if token and boot:
        run_boot, run_ns, run_start = token.split(":", 2)
        if run_boot != boot:
            return True  # this machine rebooted since: every process of that boot is gone
        if run_ns != _pid_namespace():
            return False  # another container's processes are invisible from here
        proc = _proc_state(pid)
        # gone, a zombie (killed, not yet reaped) or the pid now belongs to a newer process
        return proc is None or proc[0] in "ZXx" or proc[1] != run_start
    if pid == os.getpid():
        return False
    if os.name == "nt":
        return False  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)  # signal 0: only checks that the pid exists
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists but belongs to another user, or cannot be probed
    return False


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, None if it does not exist: tells a recreated file apart."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


class RunStore:
    """SQLite-backed run history plus files beside it."""

    def __init__(self, home: Path | str | None = None):
        # Nothing is created until the first write, so refused input leaves no trace on disk.
        self.home = Path(home) if home is not None else home_dir()
        self.db_path = self.home / "runs.db"
        self._schema_ready = False  # per instance: the schema script runs once, not per write
        # One connection per thread, kept open: sqlite3 connections may not cross threads, and
        # in WAL mode closing the last connection checkpoints and deletes the WAL file, which
        # made every history row and snapshot of a run cost milliseconds.
        self._local = threading.local()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db, opened_on = getattr(self._local, "db", None), getattr(self._local, "file", None)
        if db is not None and _file_identity(self.db_path) != opened_on:
            # runs.db was deleted (and maybe created again by someone else) since this thread
            # connected: writing on would go to the unlinked file and be lost.
            db.close()
            db = None
        if db is None:
            self.home.mkdir(parents=True, exist_ok=True)
            if not self.db_path.exists():
                self._schema_ready = False  # a new file: it needs the schema
            db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            try:
                if not self._schema_ready:
                    db.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
                    db.executescript(SCHEMA)
                    self._migrate(db)
                    self._schema_ready = True
                db.execute("PRAGMA busy_timeout=30000")
                # WAL + NORMAL: durable at checkpoints, no fsync per small history row.
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                db.close()
                raise
            self._local.db, self._local.file = db, _file_identity(self.db_path)
        yield db

    def close(self) -> None:
        """Close this thread's connection now (it reopens on the next use)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Add the columns newer code expects to a store written by older code."""
        have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for name, kind in OWNER_COLUMNS:
            if name in have:
                continue
            try:
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it meanwhile
                    raise

    def _write(self, sql: str, params: tuple = ()) -> None:
        # Retry on the rare 'database is locked' that busy_timeout does not cover (WAL upgrade).
        for attempt in range(20):
            try:
                with self._connect() as db:
                    db.execute(sql, params)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    # ---- runs -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def create_run(self, config: RunConfig, environment: dict[str, Any] | None = None,
                   name: str | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        owner = owner_identity()  # the process that runs it: see reap_interrupted
        self._write("INSERT INTO runs (id, created, status, name, config, environment, "
                    "owner_pid, owner_host, owner_token) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                    (run_id, time.time(), name, config.to_json(), _dumps(environment or {}),
                     owner["owner_pid"], owner["owner_host"], owner["owner_token"]))
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._write("UPDATE runs SET status = ?, finished = ?, summary = ?, error = ? WHERE id = ?",
                    (status, time.time(), _dumps(summary or {}), error, run_id))

    def update_summary(self, run_id: str, **values: Any) -> None:
        run = self.get_run(run_id)
        summary = dict(run.summary, **values)
        self._write("UPDATE runs SET summary = ? WHERE id = ?", (_dumps(summary), run_id))

    def rename_run(self, run_id: str, name: str | None) -> None:
        self._write("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))

    def _row_to_run(self, row: tuple) -> Run:
        run_id, created, finished, status, name, config, summary, environment, error = row
        return Run(id=run_id, config=RunConfig.from_dict(json.loads(config)), status=status,
                   created=created, finished=finished, name=name,
                   summary=stored_summary(json.loads(summary)),
                   environment=json.loads(environment), error=error)

    _RUN_COLUMNS = "id, created, finished, status, name, config, summary, environment, error"

    def resolve(self, run_id: str) -> str:
        """A full id from an id or a unique prefix; UnknownRunError otherwise."""
        if not self.db_path.exists():
            raise UnknownRunError(
                f"no run {run_id!r}: the store {self.home} is empty; start one with "
                f"`python -m pruning run`")
        if not run_id.strip():
            raise UnknownRunError("no run id given; see `python -m pruning list` for the ids")
        with self._connect() as db:
            # A plain prefix comparison: LIKE would read "_" and "%" in the id as wildcards.
            rows = db.execute("SELECT id FROM runs WHERE substr(id, 1, length(?)) = ? "
                              "ORDER BY created", (run_id, run_id)).fetchall()
        ids = [r[0] for r in rows]
        if run_id in ids:
            return run_id
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise UnknownRunError(
                f"no run {run_id!r} in {self.home}; see `python -m pruning list` for the ids")
        raise UnknownRunError(f"run id {run_id!r} is ambiguous ({len(ids)} runs); give more characters")

    def reap_interrupted(self, db: sqlite3.Connection, run_id: str | None = None) -> list[str]:
        """Mark ``running`` runs whose owner process has ended on this host as ``failed``, keeping
        what they recorded; returns their ids. Written once: the update only applies while the
        row is still ``running``, so a run that finishes meanwhile keeps its real status."""
        sql = "SELECT id, owner_pid, owner_host, owner_token, summary FROM runs WHERE status = 'running'"
        rows = db.execute(sql + (" AND id = ?" if run_id else ""),
                          (run_id,) if run_id else ()).fetchall()
        reaped = []
        for rid, pid, host, token, summary_json in rows:
            if not owner_gone(pid, host, token):
                continue
            epochs = [json.loads(r[0]) for r in db.execute(
                "SELECT data FROM epochs WHERE run_id = ? ORDER BY epoch, rowid", (rid,))]
            snapshots = db.execute("SELECT COUNT(*) FROM snapshots WHERE run_id = ?",
                                   (rid,)).fetchone()[0]
            # the same partial summary a stopped run gets: the last epoch's metrics
            summary, last = json.loads(summary_json), (epochs[-1] if epochs else {})
            for key in ("test_acc", "test_loss", "train_acc", "target_sparsity", "mask_sparsity"):
                if key not in summary and last.get(key) is not None:
                    summary[key] = last[key]
            summary["epochs_done"] = last.get("epoch", 0)
            error = (f"interrupted: the process running it (pid {pid} on {host}) ended before it "
                     f"finished (killed, or the server or machine restarted); kept what it had: "
                     f"{_plural(len(epochs), 'epoch')}, {_plural(snapshots, 'mask snapshot')}")
            try:
                changed = db.execute(
                    "UPDATE runs SET status = 'failed', finished = ?, summary = ?, error = ? "
                    "WHERE id = ? AND status = 'running'",
                    (time.time(), _dumps(summary), error, rid)).rowcount
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                continue  # a busy store: reading must not fail; the next read tries again
            if changed:  # 0: another reader or the run itself got there first
                reaped.append(rid)
        return reaped

    def get_run(self, run_id: str) -> Run:
        run_id = self.resolve(run_id)
        with self._connect() as db:
            self.reap_interrupted(db, run_id)
            row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._row_to_run(row)

    def list_runs(self, status: str | None = None, limit: int | None = None) -> list[Run]:
        if not self.db_path.exists():
            return []
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        params: tuple = ()
        if status:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY created DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as db:
            self.reap_interrupted(db)  # before the status filter, so it sees their real status
            rows = db.execute(sql, params).fetchall()
        return [self._row_to_run(r) for r in rows]

    def delete_run(self, run_id: str) -> None:
        run_id = self.resolve(run_id)
        with self._connect() as db:
            for table in ("epochs", "traces", "snapshots"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ---- history ----------------------------------------------------------------------------
    def add_epoch(self, run_id: str, row: dict[str, Any]) -> None:
        self._write("INSERT INTO epochs (run_id, epoch, data) VALUES (?, ?, ?)",
                    (run_id, int(row.get("epoch", 0)), _dumps(row)))

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT data FROM epochs WHERE run_id = ? ORDER BY epoch, rowid",
                              (run_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_trace(self, run_id: str, kind: str, step: int, payload: dict[str, Any]) -> None:
        self._write("INSERT INTO traces (run_id, kind, step, data) VALUES (?, ?, ?, ?)",
                    (run_id, kind, int(step), _dumps(payload)))

    def traces(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``{"kind", "step", **payload}`` in insertion order."""
        sql = "SELECT kind, step, data FROM traces WHERE run_id = ?"
        params: tuple = (run_id,)
        if kind:
            sql += " AND kind = ?"
            params += (kind,)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY rowid", params).fetchall()
        return [{"kind": k, "step": s, **json.loads(d)} for k, s, d in rows]

    def trace_kinds(self, run_id: str) -> list[str]:
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT kind FROM traces WHERE run_id = ?", (run_id,)).fetchall()
        return [r[0] for r in rows]

    # ---- files ------------------------------------------------------------------------------
    def add_snapshot(self, run_id: str, step: int, epoch: float, mask: Mask) -> None:
        folder = self.run_dir(run_id) / "masks"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{int(step):08d}.npz").write_bytes(mask.to_bytes())
        self._write("INSERT OR REPLACE INTO snapshots (run_id, step, epoch, sparsity) "
                    "VALUES (?, ?, ?, ?)", (run_id, int(step), float(epoch), mask.sparsity()))

    def snapshots(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT step, epoch, sparsity FROM snapshots WHERE run_id = ? "
                              "ORDER BY step", (run_id,)).fetchall()
        return [{"step": s, "epoch": e, "sparsity": sp} for s, e, sp in rows]

    def load_snapshot(self, run_id: str, step: int) -> Mask:
        return Mask.from_bytes((self.run_dir(run_id) / "masks" / f"{int(step):08d}.npz").read_bytes())

    def model_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "model.pt"

    def save_model(self, run_id: str, model, whole_module: bool) -> Path:
        """Save final weights; ``whole_module`` for methods that changed the architecture."""
        import torch

        path = self.model_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = model.to("cpu")
        if whole_module:
            torch.save({"format": "module", "module": model}, path)
        else:
            torch.save({"format": "state_dict",
                        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
                       path)
        return path

    def load_model(self, run_id: str):
        """Rebuild the run's final model on CPU (our own file: the store wrote it)."""
        import torch

        from pruning import data, models

        run = self.get_run(run_id)
        path = self.model_path(run.id)
        if not path.exists():
            raise UnknownRunError(f"run {run.id} has no saved model (status {run.status})")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if blob["format"] == "module":
            return blob["module"].eval()
        channels, size, classes = data.dataset_shape(run.config)
        model = models.build_model(run.config, channels, classes, size)
        model.load_state_dict(blob["state_dict"])
        return model.eval()
