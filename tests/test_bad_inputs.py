"""Hostile and mistaken input, as a table: CLI flags, method and schedule parameters, sweep
lists, run names, run ids, export folders and the Run page's URL.

Every case must be refused in one line that names the problem (the needle) with exit code 2 —
for the app, a reported problem that the page shows in ``st.error`` — and nothing may be written
to the store.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.cli import main
from pruning.config import RunConfig
from pruning.session import run_session
from pruning.store import RunStore
from ui import forms

ROOT = Path(__file__).resolve().parent.parent
BIG = "18446744073709551616"  # 2**64
# (argv, needle): the needle is a piece of the one-line message naming the problem
CLI = [
    # numbers that are not finite, out of bounds or not numbers at all
    (["run", "--width", "nan"], "width must be a finite number"),
    (["run", "--width", "inf"], "width must be a finite number"),
    (["run", "--width=-inf"], "width must be a finite number"),
    (["run", "--width", "0"], "width must be in (0, 16]"),
    (["run", "--width", "-1"], "width must be in (0, 16]"),
    (["run", "--width", "17"], "width must be in (0, 16]"),
    (["run", "--width", "wide"], "cannot read 'wide' as a finite number"),
    (["run", "--seed", BIG], "seed must be in [0, 4294967295]"),
    (["run", "--seed", "4294967296"], "seed must be in [0, 4294967295]"),
    (["run", "--seed", "-1"], "seed must be in [0, 4294967295]"),
    (["run", "--seed", "1.5"], "cannot read '1.5' as a whole number"),
    (["run", "--seed", "x"], "cannot read 'x' as a whole number"),
    (["run", "--lr", "nan"], "lr must be a finite number"),
    (["run", "--lr", "inf"], "lr must be a finite number"),
    (["run", "--lr", "1e999"], "lr must be a finite number"),
    (["run", "--lr", "0"], "lr must be in (0, 10]"),
    (["run", "--lr", "-0.1"], "lr must be in (0, 10]"),
    (["run", "--lr", "1e6"], "lr must be in (0, 10]"),
    (["run", "--momentum", "-1"], "momentum must be in [0, 1)"),
    (["run", "--momentum", "1"], "momentum must be in [0, 1)"),
    (["run", "--momentum", "nan"], "momentum must be a finite number"),
    (["run", "--weight-decay", "-1"], "weight decay must be in [0, 1]"),
    (["run", "--weight-decay", "nan"], "weight decay must be a finite number"),
    (["run", "--weight-decay", "2"], "weight decay must be in [0, 1]"),
    (["run", "--epochs", "9223372036854775808"], "epochs must be in [1, 1000]"),
    (["run", "--epochs", "100000"], "epochs must be in [1, 1000]"),
    (["run", "--epochs", "0"], "epochs must be in [1, 1000]"),
    (["run", "--epochs", "-3"], "epochs must be in [1, 1000]"),
    (["run", "--epochs", "2.5"], "cannot read '2.5' as a whole number"),
    (["run", "--epochs", "ten"], "cannot read 'ten' as a whole number"),
    (["run", "--threads", "100000"], "threads must be in [0, 256]"),
    (["run", "--threads", "-1"], "threads must be in [0, 256]"),
    (["run", "--batch-size", "0"], "batch size must be in [1, 65536]"),
    (["run", "--batch-size", "1000000"], "batch size must be in [1, 65536]"),
    (["run", "--sparsity", "1"], "sparsity must be in [0, 1)"),
    (["run", "--sparsity", "1.2"], "sparsity must be in [0, 1)"),
    (["run", "--sparsity", "-0.1"], "sparsity must be in [0, 1)"),
    (["run", "--sparsity", "nan"], "sparsity must be a finite number"),
    (["run", "--sparsity", "inf"], "sparsity must be a finite number"),
    (["run", "--initial-sparsity", "0.95"], "initial sparsity must be at most the target"),
    (["run", "--initial-sparsity", "-0.1"], "initial sparsity must be in [0, 1]"),
    (["run", "--initial-sparsity", "nan"], "initial sparsity must be a finite number"),
    (["run", "--window-start", "0.8", "--window-end", "0.2"], "0 <= start <= end <= 1"),
    (["run", "--window-start", "2"], "window start must be in [-1, 1]"),
    (["run", "--window-start", "-0.5", "--window-end", "0.5"], "0 <= start <= end <= 1"),
    (["run", "--window-end", "nan"], "window end must be a finite number"),
    (["run", "--snapshots", "-1"], "snapshots must be in [0, 1000]"),
    (["run", "--snapshots", "100000"], "snapshots must be in [0, 1000]"),
    (["run", "--max-train-samples", "-5"], "max train samples must be in [0, 10000000]"),
    (["run", "--prune-every", "0"], "prune every must be in [1, 100000]"),
    (["run", "--granularity", "nm", "--nm-n", "4", "--nm-m", "4"], "N:M needs 0 < N < M"),
    (["run", "--nm-n", "0"], "nm n must be in [1, 64]"),
    (["run", "--nm-m", "100"], "nm m must be in [2, 64]"),
    (["run", "--granularity", "nm"], "reaches at most 50%"),
    # choices
    (["run", "--image-size", "12"], "image size must be one of 0, 8, 16, 28, 32"),
    (["run", "--channels", "2"], "channels must be one of 0, 1, 3"),
    (["run", "--device", "tpu"], "device must be one of auto, cpu, cuda, mps"),
    (["run", "--optimizer", "rmsprop"], "optimizer must be one of adam, sgd"),
    (["run", "--lr-schedule", "poly"], "lr schedule must be one of cosine, constant, step"),
    (["run", "--scope", "everywhere"], "scope must be one of global, layerwise"),
    (["run", "--granularity", "block"], "granularity must be one of unstructured, nm, channel"),
    (["run", "--model", "nope"], "unknown model 'nope'; choose one of"),
    (["run", "--dataset", "svhn"], "unknown dataset 'svhn'; choose one of"),
    (["run", "--method", "obd"], "unknown method 'obd'; choose one of"),
    (["run", "--schedule", "exp"], "unknown schedule 'exp'; choose one of"),
    (["run", "--model", ""], "unknown model ''"),
    (["run", "--bogus", "1"], "unrecognized arguments: --bogus"),
    (["run", "--prune-first-last=maybe"], "ignored explicit argument 'maybe'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    # settings the chosen method ignores, and setups it cannot run
    (["run", "--method", "aswl", "--granularity", "channel"], "ignores --granularity"),
    (["run", "--method", "ispasp", "--granularity", "channel"], "ignores --granularity"),
    (["run", "--method", "unification", "--scope", "layerwise"], "ignores --scope"),
    (["run", "--method", "ssc", "--prune-every", "5"], "ignores --prune-every"),
    (["run", "--method", "aswl", "--schedule", "linear"], "ignores --schedule"),
    (["run", "--method", "ispasp", "--window-start", "0", "--window-end", "0"],
     "ignores --window-start, --window-end"),
    (["run", "--method", "ssc", "--model", "mlp"], "SSC found no convolution"),
    (["run", "--dataset", "cifar10", "--channels", "3"], "--download"),
    (["run", "--dataset", "mnist"], "--download"),
    # a schedule's own settings
    (["run", "--alpha", "0"], "alpha must be in (0, 100]"),
    (["run", "--alpha", "nan"], "alpha must be a finite number"),
    (["run", "--alpha", "101"], "alpha must be in (0, 100]"),
    (["run", "--beta", "inf"], "beta must be a finite number"),
    (["run", "--beta", "51"], "beta must be in [-50, 50]"),
    (["run", "--schedule", "iterative", "--steps", "0"], "steps must be in [1, 1000]"),
    (["run", "--schedule", "iterative", "--steps", "1001"], "steps must be in [1, 1000]"),
    (["run", "--schedule", "iterative", "--steps", "2.5"], "cannot read '2.5' as a whole number"),
    (["run", "--schedule", "linear", "--alpha", "3"], "--alpha is a setting of schedule one_cycle"),
    (["run", "--steps", "4"], "--steps is a setting of schedule iterative / iterative_geometric"),
    # a method's own settings
    (["run", "-p", "nokey"], "--param expects KEY=VALUE"),
    (["run", "-p", "=5"], "--param expects KEY=VALUE"),
    (["run", "-p", "zzz=1"], "method 'magnitude' takes no parameters"),
    (["run", "--method", "aswl", "-p", "lam=nan"], "parameter lam must be a finite number"),
    (["run", "--method", "aswl", "-p", "gamma=inf"], "parameter gamma must be a finite number"),
    (["run", "--method", "aswl", "-p", "lam=-1"], "parameter lam must be at least 0, got -1"),
    (["run", "--method", "aswl", "-p", "attention_lr=0"], "attention_lr must be above 0, got 0"),
    (["run", "--method", "aswl", "-p", "target_mode=bogus"],
     "target_mode must be one of user, paper, got bogus"),
    (["run", "--method", "aswl", "-p", "zzz=1"], "has no parameter zzz; valid: lam"),
    (["run", "--method", "synflow", "-p", "iterations=100000000"],
     "parameter iterations must be in [1, 1000]"),
    (["run", "--method", "synflow", "-p", "iterations=0"], "parameter iterations must be in [1, 1000]"),
    (["run", "--method", "synflow", "-p", "iterations=nan"], "cannot read 'nan' as a whole number"),
    (["run", "--method", "grasp", "-p", "temperature=nan"], "temperature must be a finite number"),
    (["run", "--method", "grasp", "-p", "samples_per_class=0"],
     "samples_per_class must be in [1, 1000]"),
    (["run", "--method", "taylor", "-p", "batches=100000"], "batches must be in [1, 1000]"),
    (["run", "--method", "ispasp", "-p", "keep_ratio=1.5"], "keep_ratio must be in (0, 1]"),
    (["run", "--method", "ispasp", "-p", "keep_ratio=nan"], "keep_ratio must be a finite number"),
    (["run", "--method", "ispasp", "-p", "iterations=100000"], "iterations must be in [1, 1000]"),
    (["run", "--method", "unification", "-p", "rho=nan"], "rho must be a finite number"),
    (["run", "--method", "unification", "-p", "block=1xq"], "cannot read '1xq'"),
    (["run", "--method", "unification", "-p", "admm_rounds=1000000"],
     "admm_rounds must be in [0, 100000]"),
    (["run", "--method", "ssc", "-p", "density=2"], "density must be in [0, 1]"),
    (["run", "--method", "ssc", "-p", "layout=weird"], "layout must be"),
    (["run", "--method", "ssc", "-p", "include_stem=perhaps"], "cannot read 'perhaps' as true or"),
    # run names
    (["run", "--name", ""], "the run name is empty"),
    (["run", "--name", "   "], "the run name is empty"),
    (["run", "--name", "x" * 101], "keep it to 100"),
    (["run", "--name", "two\nlines"], "control characters"),
    (["run", "--name", "tab\there"], "control characters"),
    # sweeps
    (["sweep", "--sparsities", ",,"], "--sparsities lists no value"),
    (["sweep", "--sparsities", "0.5,nan"], "sparsities must be a finite number"),
    (["sweep", "--sparsities", "0.5,1.5"], "sparsities must be in [0, 1)"),
    (["sweep", "--seeds", "1,x"], "cannot read 'x' as a whole number"),
    (["sweep", "--seeds", ","], "--seeds lists no value"),
    (["sweep", "--seeds", "-1"], "seeds must be in [0, 4294967295]"),
    (["sweep", "--models", "small_cnn,nope"], "unknown model 'nope'"),
    (["sweep", "--methods", ""], "--methods lists no value"),
    (["sweep", "--schedules", " , ,"], "--schedules lists no value"),
    (["sweep", "--schedules", "agp,linear", "--alpha", "3"],
     "--alpha is a setting of schedule one_cycle, not of agp, linear"),
    (["sweep", "--methods", "magnitude,aswl", "--granularity", "channel"], "ignores --granularity"),
    (["sweep", "--preset", "everything"], "invalid choice: 'everything'"),
    # list and bench
    (["list", "--limit", "0"], "must be at least 1"),
    (["list", "--limit", "-1"], "must be at least 1"),
    (["list", "--limit", "x"], "cannot read 'x' as a whole number"),
    (["list", "--status", "weird"], "invalid choice: 'weird'"),
    (["bench", "--threads", "100000"], "threads must be in [0, 256]"),
    (["bench", "--threads", "nan"], "cannot read 'nan' as a whole number"),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return tmp_path / "home"


def refused(capsys, argv: list[str]) -> str:
    """Run the command; it must exit 2 with exactly one line on stderr; returns that line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize("argv, needle", CLI, ids=[" ".join(a)[:60] for a, _ in CLI])
def test_cli_refuses_in_one_line_and_writes_nothing(home, capsys, argv, needle):
    err = refused(capsys, argv)
    assert needle in err, err
    assert not home.exists()


# ---- ids and export folders: a store with one run --------------------------------------------
@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("one-run-home")
    run = run_session(RunConfig(epochs=1, max_train_samples=128, snapshots=2), RunStore(home),
                      measure_latency=False)
    assert run.status == "done", run.error
    return home, run.id


def _state(home):
    """What a refused command must leave as it was: the runs and the files (SQLite's own
    sidecar files aside)."""
    runs = [(r.id, r.status) for r in RunStore(home).list_runs()]
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*")
                   if not p.name.endswith(("-wal", "-shm")))
    return runs, files


def _id_cases(run_id: str) -> list[tuple[list[str], str]]:
    # "_" and "%" are SQL LIKE wildcards: each of these would have matched the run before
    wild = ["_", "%", "%%", "_" * len(run_id), run_id[:4] + "_", run_id[:4] + "%",
            run_id[:-1] + "_", "%" + run_id[-4:]]
    cases = [([cmd, w], f"no run {w!r}") for w in wild for cmd in ("show", "export")]
    cases += [(["show", ""], "no run id given"), (["show", "no-such-run"], "no run 'no-such-run'"),
              (["show", run_id + "x"], f"no run '{run_id}x'")]
    return cases


N_ID_CASES = 19


@pytest.mark.parametrize("case", range(N_ID_CASES))
def test_ids_are_not_wildcards(one_run, monkeypatch, capsys, case):
    home, run_id = one_run
    cases = _id_cases(run_id)
    assert len(cases) == N_ID_CASES
    argv, needle = cases[case]
    monkeypatch.chdir(home.parent)
    before = _state(home)
    err = refused(capsys, ["--home", str(home), *argv])
    assert needle in err, err
    assert _state(home) == before
    assert main(["--home", str(home), "show", run_id[:6]]) == 0  # a real prefix still works


@pytest.mark.parametrize("where, needle", [("file", "is a file; give a folder"),
                                           ("under-file", "is a file, so no folder can be made")])
def test_export_refuses_an_unusable_folder(one_run, tmp_path, capsys, where, needle):
    home, run_id = one_run
    existing = tmp_path / "exists.txt"
    existing.write_text("keep me")
    out = existing if where == "file" else existing / "exports"
    before = _state(home)
    err = refused(capsys, ["--home", str(home), "export", run_id, "--out", str(out)])
    assert needle in err, err
    assert existing.read_text() == "keep me" and _state(home) == before


# ---- the Run page's URL ------------------------------------------------------------------------
URLS = [
    ({"epochs": "100000"}, "epochs must be in [1, 1000]"),
    ({"epochs": "0"}, "epochs must be in [1, 1000]"),
    ({"epochs": "many"}, "epochs: cannot read 'many'"),
    ({"epochs": "9223372036854775808"}, "epochs must be in [1, 1000]"),
    ({"sparsity": "nan"}, "sparsity must be a finite number"),
    ({"sparsity": "2"}, "sparsity must be in [0, 1)"),
    ({"lr": "inf"}, "lr must be a finite number"),
    ({"lr": "-1"}, "lr must be in (0, 10]"),
    ({"momentum": "nan"}, "momentum must be a finite number"),
    ({"width": "nan"}, "width must be a finite number"),
    ({"seed": BIG}, "seed must be in [0, 4294967295]"),
    ({"threads": "100000"}, "threads must be in [0, 256]"),
    ({"batch_size": "0"}, "batch_size must be in [1, 65536]"),
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"model": "![t](http://host/x.png)"}, "unknown model '![t](http://host/x.png)'"),
    ({"dataset": "svhn"}, "unknown dataset 'svhn'"),
    ({"method": "obd"}, "unknown method 'obd'"),
    ({"schedule": "exp"}, "unknown schedule 'exp'"),
    ({"device": "tpu"}, "device must be one of"),
    ({"image_size": "12"}, "image_size must be one of"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"granularity": "block"}, "granularity must be one of"),
    ({"prune_first_last": "maybe"}, "cannot read 'maybe' as true or false"),
    ({"initial_sparsity": "0.95"}, "initial sparsity must be at most the target"),
    ({"window_start": "0.8", "window_end": "0.2"}, "0 <= start <= end <= 1"),
    ({"granularity": "nm", "sparsity": "0.5", "nm_n": "4", "nm_m": "4"}, "N:M needs 0 < N < M"),
    ({"method": "aswl", "granularity": "channel"}, "ignores --granularity"),
    ({"method": "aswl", "p.lam": "nan"}, "lam must be a finite number"),
    ({"method": "aswl", "p.gamma": "inf"}, "gamma must be a finite number"),
    ({"method": "synflow", "p.iterations": "100000000"}, "iterations must be in [1, 1000]"),
    ({"method": "ispasp", "p.keep_ratio": "0"}, "keep_ratio must be in (0, 1]"),
    ({"p.zzz": "1"}, "method 'magnitude' takes no parameters"),
    ({"s.alpha": "nan"}, "alpha must be a finite number"),
    ({"schedule": "iterative", "s.steps": "0"}, "steps must be in [1, 1000]"),
    ({"schedule": "linear", "s.alpha": "3"}, "schedule 'linear' takes no parameters"),
    ({"alpha": "nan"}, "alpha must be a finite number"),  # a link from before schedule_params
]


@pytest.mark.parametrize("query, needle", URLS, ids=[str(q)[:60] for q, _ in URLS])
def test_run_page_link_problems_are_named_one_line_each(query, needle):
    config, problems = forms.config_from_query(query)
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert needle in problems[0], problems
    (key, _), = list(query.items())[-1:]  # the bad value (last) is not used: the default stands
    if key in RunConfig.__dataclass_fields__:
        assert getattr(config, key) == getattr(RunConfig(), key)
    assert config.method_params == {} and config.schedule_params == {}


@pytest.mark.parametrize("query, needle", [URLS[0], URLS[13], URLS[29]])
def test_run_page_shows_the_problem_in_st_error(home, query, needle):
    at = AppTest.from_file(str(ROOT / "pages/1_Run.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    # Messages are Markdown-escaped (user text is echoed as text): compare the text shown.
    assert [e.value for e in at.error if needle in e.value.replace("\\", "")]
    assert not home.exists()  # opening the page writes nothing


def test_the_table_is_large_enough():
    assert len(CLI) + N_ID_CASES + 2 + len(URLS) >= 120
