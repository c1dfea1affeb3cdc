"""The command line: JSON output, list/show, and one-line errors with exit code 2 for bad input."""
import json
import subprocess
import sys

import pytest

from pruning.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRUNING_DATA", str(tmp_path / "data"))
    return tmp_path / "home"


def test_run_json_list_show(home, capsys):
    assert main(["run", "--epochs", "2", "--max-train-samples", "256", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "done"
    assert out["config"]["model"] == "small_cnn" and out["config"]["schedule"] == "one_cycle"
    for key in ("test_acc", "mask_sparsity", "params", "flops", "latency_ms", "latency_p90_ms"):
        assert key in out["summary"]
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert all("mask_sparsity" in h and "test_acc" in h for h in out["history"])

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert out["id"] in listing and "small_cnn" in listing

    assert main(["show", out["id"][:15], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == out["id"] and shown["summary"] == out["summary"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--model", "nope"], "unknown model 'nope'"),
    (["run", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--schedule", "nope"], "unknown schedule 'nope'"),
    (["run", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["run", "--sparsity", "1.2"], "sparsity must be in [0, 1)"),
    (["run", "--sparsity", "-0.1"], "sparsity must be in [0, 1)"),
    (["run", "--epochs", "0"], "epochs must be in [1, 1000]"),
    (["run", "--dataset", "mnist"], "--download"),
    (["run", "--image-size", "12"], "image size must be"),
    (["show", "no-such-run"], "no run 'no-such-run'"),
    (["export", "no-such-run"], "no run 'no-such-run'"),
    (["run", "-p", "nokey"], "KEY=VALUE"),
])
def test_bad_input_one_line_exit_2_nothing_written(home, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not home.exists()


def test_no_traceback_from_the_real_command(home):
    proc = subprocess.run([sys.executable, "-m", "pruning", "run", "--sparsity", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "sparsity must be in [0, 1)" in proc.stderr
