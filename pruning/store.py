"""RunStore: every run's config, status, per-epoch history, traces and files, in SQLite.

Layout under PRUNING_HOME (default ``~/.pruning``)::

    runs.db                    runs, epochs, traces, snapshots (SQLite, WAL mode)
    runs/<run id>/masks/<step>.npz   packed-bit mask snapshots (Mask.to_bytes)
    runs/<run id>/model.pt     final weights and a plain-data description of the architecture
                               (``modelfile``): it loads with ``torch.load(weights_only=True)``

Damage is contained. A runs.db that SQLite cannot read raises ``StoreUnreadableError`` naming the
file and the fix (``move_aside`` keeps it and lets a fresh store start). A row whose JSON does
not parse is left out of ``list_runs`` and reported by ``damaged_runs``; config fields this
version does not know (written by a newer one) are kept in the row and reported on the run
(``Run.unknown_fields``). Missing or corrupt mask and model files raise ``RunFilesError`` naming
the run and the files (``file_problems`` lists them all).

A full disk: files are written to a temporary name and renamed, so a write that fails leaves no
partial file; it raises ``DiskFullError`` ("disk full while saving …; free space in
PRUNING_HOME"). Recording a run's end, if the disk is full, first frees ``.space-reserve`` (256 KB
kept aside at each run's start) and tries again, so the run is marked failed rather than left
'running' (which would later read as killed). Reading needs no free space.

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

import dataclasses
import errno
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
CREATE TABLE IF NOT EXISTS generation (
    part TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: What each change counter counts: "runs" (the runs table: new, renamed, finished, deleted
#: runs) and "history" (epochs, traces, snapshots written during runs).
GENERATION_TABLES = {"runs": ("runs",), "history": ("epochs", "traces", "snapshots")}


def _generation_triggers() -> str:
    """SQL: triggers that bump a counter row in the same transaction as every write, so any
    process's change is seen by every reader for the price of reading one row."""
    sql = []
    for part, tables in GENERATION_TABLES.items():
        for table in tables:
            for event in ("INSERT", "UPDATE", "DELETE"):
                sql.append(f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()}_generation "
                           f"AFTER {event} ON {table} BEGIN UPDATE generation SET value = "
                           f"value + 1 WHERE part = '{part}'; END;")
    return "\n".join(sql)

#: disk space kept aside (``.space-reserve``) so that a run can be marked failed on a full disk
RESERVE_BYTES = 256 * 1024

#: columns added after the first release; ``_migrate`` adds them to stores created before
OWNER_COLUMNS = (("owner_pid", "INTEGER"), ("owner_host", "TEXT"), ("owner_token", "TEXT"))


class UnknownRunError(ConfigError):
    """No run with that id (or the prefix is ambiguous)."""


class StoreError(ConfigError):
    """The store or a run's files cannot be used as they are; the message names the file and
    what to do (shown as one line, like bad input)."""


class StoreUnreadableError(StoreError):
    """runs.db is not a database SQLite can read (damaged, truncated, or another file)."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class DamagedRunError(StoreError):
    """One run's row cannot be decoded; the other runs are fine."""


class RunFilesError(StoreError):
    """A run's mask snapshots or model file are missing or corrupt."""


class DiskFullError(StoreError):
    """No space left while saving; what was being written is removed."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.DatabaseError):
        return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(exc))
    return False


@dataclass(frozen=True)
class DamagedRun:
    """A runs row that cannot be decoded: its id, what is wrong, and what is still known."""
    id: str
    reason: str
    created: float | None = None
    status: str | None = None
    name: str | None = None

    def describe(self) -> str:
        return f"run {self.id} is damaged ({self.reason}); it is kept as it is, left out of lists"


class _Undecodable(Exception):
    """Internal: why a row cannot become a Run."""


def _check_field_types(config: dict[str, Any]) -> None:
    """A known config field holding a value of another type (another version's meaning)."""
    for f in dataclasses.fields(RunConfig):
        if f.name not in config:
            continue
        value = config[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        expected = (int, float) if isinstance(default, float) and not isinstance(default, bool) \
            else type(default)
        if isinstance(value, bool) and not isinstance(default, bool) \
                or not isinstance(value, expected):
            raise _Undecodable(f"config field {f.name!r} holds {type(value).__name__} "
                               f"{str(value)[:40]!r} where {type(default).__name__} is expected")


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
    #: config fields this version does not know (written by a newer one): kept, not used
    unknown_fields: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The run's name, else model·method·schedule·target·seed, leaving out a schedule or a
        target sparsity that the run's method ignores (i-SpaSP, SSC, ASWL, unification)."""
        if self.name:
            return self.name
        from pruning.methods.base import reads_target_sparsity
        from pruning.validation import follows_schedule

        c = self.config
        try:
            follows = follows_schedule(c.method)
        except (KeyError, ValueError):  # a method this version no longer has
            follows = True
        parts = [c.model, c.method] + ([c.schedule] if follows else [])
        parts += [f"{c.sparsity:g}"] if reads_target_sparsity(c) else []
        return "·".join(parts + [f"s{c.seed}"])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "label": self.label(), "status": self.status,
                "created": self.created, "finished": self.finished, "error": self.error,
                "config": self.config.to_dict(), "summary": self.summary,
                "environment": self.environment, "unknown_fields": self.unknown_fields}


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
        try:
            if db is None:
                db = self._open()
            yield db
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from None

    def _open(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            self._schema_ready = False  # a new file: it needs the schema
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            if not self._schema_ready:
                db.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
                db.executescript(SCHEMA)
                self._migrate(db)
                # Counters start at a random value: a fresh store file (e.g. after move_aside)
                # does not repeat the generations of the one it replaced.
                start = int.from_bytes(os.urandom(6), "big")
                db.executemany("INSERT OR IGNORE INTO generation (part, value) VALUES (?, ?)",
                               [(part, start) for part in GENERATION_TABLES])
                db.executescript(_generation_triggers())
                self._schema_ready = True
            db.execute("PRAGMA busy_timeout=30000")
            # WAL + NORMAL: durable at checkpoints, no fsync per small history row.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        self._local.db, self._local.file = db, _file_identity(self.db_path)
        return db

    def _translate(self, exc: sqlite3.DatabaseError) -> Exception:
        """SQLite's error as the store's: disk full and an unreadable file get one clear line;
        'locked' stays as it is (``_write`` retries it)."""
        text = str(exc)
        if is_disk_full(exc):
            return DiskFullError(f"disk full while writing to {self.db_path}; free space in "
                                 f"PRUNING_HOME ({self.home}) and try again")
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return exc
        if isinstance(exc, sqlite3.IntegrityError):  # a constraint, not damage (create_run retries)
            return exc
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in text:
            return StoreError(f"cannot write to the run store {self.db_path} (read-only); make "
                              f"it writable or point PRUNING_HOME at a folder you can write")
        # "file is not a database", "database disk image is malformed", "unable to open":
        # nothing here can be trusted; drop this thread's connection so a fresh file reopens
        self.close()
        self._schema_ready = False
        return StoreUnreadableError(
            f"the run store {self.db_path} cannot be read ({text}); move it aside to start a "
            f"fresh store (`mv {self.db_path} {self.db_path}.damaged`; the app offers a button), "
            f"keeping the old file for recovery, or restore a backup", self.db_path)

    def check(self) -> None:
        """Raise StoreUnreadableError if runs.db exists but cannot be read (a cheap probe)."""
        if self.db_path.exists():
            with self._connect() as db:
                db.execute("SELECT COUNT(*) FROM runs").fetchone()

    def move_aside(self) -> Path:
        """Rename runs.db (and its WAL files) to ``runs.db.damaged-<time>`` and return that path:
        the old file is kept, and the next write starts a fresh store."""
        self.close()
        self._schema_ready = False
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.db_path.with_name(f"{self.db_path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.db_path.with_name(f"{self.db_path.name}.damaged-{stamp}-{n}")
        for suffix in ("-wal", "-shm"):  # first the WAL: it may hold committed rows
            side = self.db_path.with_name(self.db_path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
        if self.db_path.exists():
            self.db_path.rename(target)
        return target

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

    def _write(self, sql: str, params: tuple = (), what: str = "the run store") -> None:
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
            except DiskFullError:
                raise DiskFullError(f"disk full while saving {what} to {self.db_path}; free space "
                                    f"in PRUNING_HOME ({self.home})") from None

    def _write_file(self, path: Path, data: bytes, what: str) -> None:
        """Write ``data`` to ``path`` whole or not at all: a temporary name, then a rename, so a
        full disk or a crash leaves no truncated file behind."""
        partial = path.with_name(path.name + ".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFullError(f"disk full while saving {what} ({path}); free space in "
                                    f"PRUNING_HOME ({self.home})") from None
            raise

    # ---- runs -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def create_run(self, config: RunConfig, environment: dict[str, Any] | None = None,
                   name: str | None = None) -> str:
        owner = owner_identity()  # the process that runs it: see reap_interrupted
        for attempt in range(8):
            # The time says when at a glance; six random hex digits tell apart runs created in
            # the same second (a sweep, a benchmark's generated history), and a clash, rare but
            # possible, just draws again.
            run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
            try:
                self._write("INSERT INTO runs (id, created, status, name, config, environment, "
                            "owner_pid, owner_host, owner_token) "
                            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                            (run_id, time.time(), name, config.to_json(),
                             _dumps(environment or {}), owner["owner_pid"], owner["owner_host"],
                             owner["owner_token"]),
                            what="a new run")
                break
            except sqlite3.IntegrityError:
                if attempt == 7:
                    raise
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        self._keep_reserve()
        return run_id

    @property
    def reserve_path(self) -> Path:
        return self.home / ".space-reserve"

    def _keep_reserve(self) -> None:
        """Keep RESERVE_BYTES of disk that finish_run frees when the disk is full, so a run that
        ran out of space can still be recorded as failed rather than stay 'running'."""
        if self.reserve_path.exists():
            return
        try:
            self._write_file(self.reserve_path, bytes(RESERVE_BYTES), "the space reserve")
        except OSError:  # DiskFullError included: no room to keep it now, the next run retries
            pass

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        sql = "UPDATE runs SET status = ?, finished = ?, summary = ?, error = ? WHERE id = ?"
        params = (status, time.time(), _dumps(summary or {}), error, run_id)
        what = f"the end of run {run_id}"
        try:
            self._write(sql, params, what)
        except DiskFullError:
            # The run must not stay 'running' (it would later read as killed): free the space
            # kept for this moment and try again.
            self.reserve_path.unlink(missing_ok=True)
            self._write(sql, params, what)

    def update_summary(self, run_id: str, **values: Any) -> None:
        run = self.get_run(run_id)
        summary = dict(run.summary, **values)
        self._write("UPDATE runs SET summary = ? WHERE id = ?", (_dumps(summary), run_id),
                    what=f"the summary of run {run_id}")

    def rename_run(self, run_id: str, name: str | None) -> None:
        self._write("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))

    def _row_to_run(self, row: tuple) -> Run:
        """A Run from a runs row; _Undecodable says why a damaged row cannot be one."""
        run_id, created, finished, status, name, config, summary, environment, error = row
        values = {}
        for column, text in (("config", config), ("summary", summary),
                             ("environment", environment)):
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as exc:
                raise _Undecodable(f"its {column} is not valid JSON: {exc}") from None
            if not isinstance(value, dict):
                raise _Undecodable(f"its {column} is not a JSON object")
            values[column] = value
        if status not in STATUSES:
            raise _Undecodable(f"unknown status {str(status)[:40]!r}")
        known = {f.name for f in dataclasses.fields(RunConfig)}
        fields = values["config"]
        unknown = {k: v for k, v in fields.items() if k not in known}
        _check_field_types(fields)
        try:
            run_config = RunConfig.from_dict(fields)
        except ConfigError:  # a from_dict that refuses unknown fields: read the known ones
            run_config = None
        except (TypeError, ValueError) as exc:
            raise _Undecodable(f"its config cannot be read: {exc}") from None
        if run_config is None:
            try:
                run_config = RunConfig.from_dict({k: v for k, v in fields.items() if k in known})
            except (TypeError, ValueError) as exc:
                raise _Undecodable(f"its config cannot be read: {exc}") from None
        return Run(id=run_id, config=run_config, status=status, created=created,
                   finished=finished, name=name, summary=stored_summary(values["summary"]),
                   environment=values["environment"], error=error, unknown_fields=unknown)

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
            epochs = _parsed(db.execute(
                "SELECT data FROM epochs WHERE run_id = ? ORDER BY epoch, rowid", (rid,)))
            snapshots = db.execute("SELECT COUNT(*) FROM snapshots WHERE run_id = ?",
                                   (rid,)).fetchone()[0]
            summary = _loads_object(summary_json)
            if summary is None:
                continue  # a damaged row is left exactly as it is (damaged_runs reports it)
            # the same partial summary a stopped run gets: the last epoch's metrics
            last = epochs[-1] if epochs else {}
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
                if "locked" not in str(exc) and not is_disk_full(exc):
                    raise
                continue  # a busy or full store: reading must not fail; a later read retries
            if changed:  # 0: another reader or the run itself got there first
                reaped.append(rid)
        return reaped

    def get_run(self, run_id: str) -> Run:
        run_id = self.resolve(run_id)
        with self._connect() as db:
            self.reap_interrupted(db, run_id)
            row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        try:
            return self._row_to_run(row)
        except _Undecodable as exc:
            raise DamagedRunError(
                f"run {run_id} is damaged in {self.db_path} ({exc}); the other runs are fine: "
                f"see `python -m pruning list`, and delete this one if it is not needed") from None

    def generation(self, part: str = "all") -> int:
        """A number that changes whenever the store changes, by any process: ``part`` "runs"
        (the runs table), "history" (epochs, traces, snapshots) or "all". Reading it is one
        small query, so a cache of store reads can check it on every page load. 0 while no
        store file exists (reading creates none)."""
        if part not in (*GENERATION_TABLES, "all"):
            raise ValueError(f"unknown generation part {part!r}; use runs, history or all")
        if not self.db_path.exists():
            return 0
        with self._connect() as db:
            rows = dict(db.execute("SELECT part, value FROM generation").fetchall())
        return sum(rows.values()) if part == "all" else int(rows.get(part, 0))

    def _select_runs(self, status: str | None, limit: int | None, offset: int = 0) -> list[tuple]:
        if not self.db_path.exists():
            return []
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        params: tuple = ()
        if status:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY created DESC"
        if limit or offset:
            sql += f" LIMIT {int(limit) if limit else -1} OFFSET {max(int(offset), 0)}"
        with self._connect() as db:
            self.reap_interrupted(db)  # before the status filter, so it sees their real status
            return db.execute(sql, params).fetchall()

    def count_runs(self, status: str | None = None) -> int:
        """How many run rows there are (with ``status`` only, if given), damaged ones included."""
        if not self.db_path.exists():
            return 0
        with self._connect() as db:
            if status:
                return int(db.execute("SELECT COUNT(*) FROM runs WHERE status = ?",
                                      (status,)).fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def list_runs(self, status: str | None = None, limit: int | None = None,
                  offset: int = 0) -> list[Run]:
        """Every readable run, newest first (``offset`` rows skipped, at most ``limit``); damaged
        rows are left out (see damaged_runs)."""
        runs = []
        for row in self._select_runs(status, limit, offset):
            try:
                runs.append(self._row_to_run(row))
            except _Undecodable:
                continue
        return runs

    def damaged_runs(self) -> list[DamagedRun]:
        """Rows that list_runs leaves out because they cannot be decoded, newest first."""
        damaged = []
        for row in self._select_runs(None, None):
            try:
                self._row_to_run(row)
            except _Undecodable as exc:
                created = row[1] if isinstance(row[1], (int, float)) else None
                damaged.append(DamagedRun(id=str(row[0]), reason=str(exc), created=created,
                                          status=row[3] if isinstance(row[3], str) else None,
                                          name=row[4] if isinstance(row[4], str) else None))
        return damaged

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
                    (run_id, int(row.get("epoch", 0)), _dumps(row)),
                    what=f"epoch {row.get('epoch', 0)} of run {run_id}")

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT data FROM epochs WHERE run_id = ? ORDER BY epoch, rowid",
                              (run_id,)).fetchall()
        return _parsed(rows)  # a damaged row is skipped (file_problems counts it)

    def add_trace(self, run_id: str, kind: str, step: int, payload: dict[str, Any]) -> None:
        self._write("INSERT INTO traces (run_id, kind, step, data) VALUES (?, ?, ?, ?)",
                    (run_id, kind, int(step), _dumps(payload)),
                    what=f"a {kind} trace of run {run_id}")

    def traces(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``{"kind", "step", **payload}`` in insertion order."""
        sql = "SELECT kind, step, data FROM traces WHERE run_id = ?"
        params: tuple = (run_id,)
        if kind:
            sql += " AND kind = ?"
            params += (kind,)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY rowid", params).fetchall()
        out = []
        for k, s, d in rows:
            payload = _loads_object(d)
            if payload is not None:  # a damaged row is skipped (file_problems counts it)
                out.append({"kind": k, "step": s, **payload})
        return out

    def trace_kinds(self, run_id: str) -> list[str]:
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT kind FROM traces WHERE run_id = ?", (run_id,)).fetchall()
        return [r[0] for r in rows]

    # ---- files ------------------------------------------------------------------------------
    def snapshot_path(self, run_id: str, step: int) -> Path:
        return self.run_dir(run_id) / "masks" / f"{int(step):08d}.npz"

    def add_snapshot(self, run_id: str, step: int, epoch: float, mask: Mask) -> None:
        self.add_snapshot_bytes(run_id, step, epoch, mask.to_bytes(), mask.sparsity())

    def add_snapshot_bytes(self, run_id: str, step: int, epoch: float, data: bytes,
                           sparsity: float) -> None:
        """``add_snapshot`` of a mask already serialised by ``Mask.to_bytes`` (a sweep's
        worker sends it so; parsing and packing it again here cost the driver ~5 ms each)."""
        self._write_file(self.snapshot_path(run_id, step), data,
                         f"mask snapshot {int(step)} of run {run_id}")
        self._write("INSERT OR REPLACE INTO snapshots (run_id, step, epoch, sparsity) "
                    "VALUES (?, ?, ?, ?)", (run_id, int(step), float(epoch), float(sparsity)),
                    what=f"mask snapshot {int(step)} of run {run_id}")

    def snapshots(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT step, epoch, sparsity FROM snapshots WHERE run_id = ? "
                              "ORDER BY step", (run_id,)).fetchall()
        return [{"step": s, "epoch": e, "sparsity": sp} for s, e, sp in rows]

    def load_snapshot(self, run_id: str, step: int) -> Mask:
        """One mask snapshot; RunFilesError naming the run and the file if it is missing or
        corrupt."""
        path = self.snapshot_path(run_id, step)
        try:
            return Mask.from_bytes(path.read_bytes())
        except FileNotFoundError:
            problem = "is missing"
        except Exception as exc:  # numpy/zip errors of a truncated or foreign file
            problem = "is corrupt (not a readable mask)"
        raise RunFilesError(self._files_message(run_id, [f"mask snapshot {path} {problem}"]))

    def _files_message(self, run_id: str, problems: list[str]) -> str:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3
                                           else "")
        return (f"run {run_id}'s files are incomplete: {shown}; its history and summary are "
                f"fine, but what needs these files cannot be shown for it: choose another run, or "
                f"run this session again")

    def missing_files(self, run_id: str, status: str | None = None) -> list[str]:
        """A run's files that are not on disk (its listed snapshots; model.pt once done); a stat
        per file, cheap enough for every page. ``file_problems`` also reads them."""
        missing = [path.name for path in (self.snapshot_path(run_id, s["step"])
                                          for s in self.snapshots(run_id))
                   if not path.is_file()]
        if status == "done" and not self.model_path(run_id).is_file():
            missing.append("model.pt")
        return missing

    def file_problems(self, run_id: str) -> list[str]:
        """What is missing or corrupt among a run's files (and damaged history rows); [] if
        nothing. Snapshots are read whole, so this costs about as much as loading them."""
        run = self.get_run(run_id)
        problems = []
        for snap in self.snapshots(run.id):
            path = self.snapshot_path(run.id, snap["step"])
            try:
                Mask.from_bytes(path.read_bytes())
            except FileNotFoundError:
                problems.append(f"mask snapshot {path.name} is missing")
            except Exception as exc:
                problems.append(f"mask snapshot {path.name} is corrupt (not a readable mask)")
        path = self.model_path(run.id)
        if run.status == "done" and not path.exists():
            problems.append("model.pt is missing")
        elif path.exists():
            try:
                self.load_model(run.id)
            except ConfigError as exc:  # damaged, unsafe or not fitting: its first clause
                problems.append(str(exc).split("; ")[0])
        with self._connect() as db:
            for table in ("epochs", "traces"):
                rows = db.execute(f"SELECT data FROM {table} WHERE run_id = ?", (run.id,))
                bad = sum(1 for (text,) in rows if _loads_object(text) is None)
                if bad:
                    problems.append(f"{_plural(bad, table[:-1] + ' row')} damaged (left out)")
        return problems

    def model_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "model.pt"

    def save_model(self, run_id: str, model, whole_module: bool = False) -> Path:
        """Save the final weights with a plain-data description of the architecture (see
        ``modelfile``), loadable with ``weights_only=True``. ``whole_module`` is kept for callers
        of the older format: the description covers changed architectures too."""
        from pruning import data, modelfile

        run = self.get_run(run_id)
        path = self.model_path(run.id)
        blob = modelfile.to_bytes(model.to("cpu"), run.config, data.dataset_shape(run.config))
        self._write_file(path, blob, f"the model of run {run.id}")
        return path

    def load_model(self, run_id: str):
        """Rebuild the run's final model on CPU from its file (``weights_only=True``)."""
        from pruning import data, modelfile, models

        run = self.get_run(run_id)
        path = self.model_path(run.id)
        if not path.exists():
            if run.status == "done":
                raise RunFilesError(self._files_message(run.id, [f"model file {path} is missing"]))
            raise UnknownRunError(f"run {run.id} has no saved model (status {run.status}); only "
                                  f"finished runs have one")
        what = f"the model file of run {run.id}"
        try:
            blob = modelfile.read_blob(path, what)
        except FileNotFoundError:  # deleted between the check and the read
            raise RunFilesError(self._files_message(run.id, [f"model file {path} is missing"]))
        shape = data.dataset_shape(run.config)
        if blob.get("format") == modelfile.FORMAT:
            return modelfile.rebuild(blob, what, run.config, shape)
        # an older run's plain state_dict for the registry architecture
        channels, size, classes = shape
        model = models.build_model(run.config, channels, classes, size)
        try:
            model.load_state_dict(blob["state_dict"])
        except (RuntimeError, KeyError, TypeError) as exc:
            raise modelfile.ModelFileError(
                f"{what} ({path}) does not fit the run's model "
                f"({str(exc).strip().splitlines()[0][:160]}); run the session again") from None
        return model.eval()


def _loads_object(text: Any) -> dict[str, Any] | None:
    """A JSON object from a stored column, or None when the text is damaged."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _parsed(rows) -> list[dict[str, Any]]:
    """The JSON objects of ``(data,)`` rows, skipping damaged ones."""
    return [v for v in (_loads_object(r[0]) for r in rows) if v is not None]
