"""A new criterion plugs in at one place (``register_criterion``) and appears everywhere.

The throwaway criterion ``squared`` (scores w², which ranks like magnitude but is its own entry)
is registered once, in the fixture below; the tests then find it in ``pruning run --help``, the
Run form, the registry-parametrised criterion tests, a run's summary contract and the CLI's run
table, without any other code naming it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from pruning.cli import main
from pruning.config import RunConfig
from pruning.methods.base import METHODS
from pruning.methods.criteria import CRITERIA
from pruning.methods.scheduled import registered_criterion
from pruning.results import RunSummary
from pruning.session import run_session
from pruning.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SHORT = RunConfig(epochs=1, max_train_samples=256, snapshots=2)


def squared(request) -> dict[str, torch.Tensor]:
    return {name: w.detach().pow(2) for name, w in request.params.items()}


@pytest.fixture
def squared_criterion():
    """The one place the throwaway criterion is registered."""
    with registered_criterion("squared", squared, description="w² (a test criterion)."):
        yield "squared"
    assert "squared" not in CRITERIA and "squared" not in METHODS


def test_it_is_a_criterion_and_a_method(squared_criterion):
    assert squared_criterion in CRITERIA.names() and squared_criterion in METHODS.names()
    assert METHODS.entry(squared_criterion).description == "w² (a test criterion)."


def test_it_appears_in_the_cli_help(squared_criterion, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    method_help = help_text.rsplit("--method METHOD", 1)[1].split(" --", 1)[0]  # its help entry
    assert "squared" in method_help and "magnitude" in method_help


def test_it_appears_on_the_run_page(squared_criterion, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(ROOT / "pages/1_Run.py"), default_timeout=60)
    at.query_params["method"] = "squared"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "squared" in at.selectbox(key="run.method").options
    assert at.selectbox(key="run.method").value == "squared"


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("granularity", ["unstructured", "nm", "channel"])
def test_it_passes_the_registry_parametrised_criterion_tests(squared_criterion, scope,
                                                             granularity):
    import test_criteria

    test_criteria.test_every_combination_exact_monotone_and_model_untouched(
        squared_criterion, scope, granularity)
    if granularity == "unstructured":  # w² ranks single weights exactly like |w|
        from pruning.methods.criteria import Pruner

        model, batch = test_criteria.make_net(), test_criteria.make_batch()
        masks = [pruner(model, pruner.initial_mask(model), 0.6, batch)
                 for pruner in (Pruner(squared_criterion, scope=scope),
                                Pruner("magnitude", scope=scope))]
        assert set(masks[0]) == set(masks[1])
        assert all(torch.equal(masks[0][name], masks[1][name]) for name in masks[0])


def test_a_run_with_it_meets_the_summary_contract_and_shows_in_the_table(
        squared_criterion, tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path)
    run = run_session(SHORT.replace(method=squared_criterion), store, measure_latency=False)
    assert run.status == "done", run.error
    summary = RunSummary.from_dict(run.summary)
    summary.check()
    assert summary.mask_sparsity == pytest.approx(0.9, abs=1e-3)
    # w² ranks exactly like |w|: the same seed gives magnitude's mask
    twin = run_session(SHORT.replace(method="magnitude"), store, measure_latency=False)
    assert store.snapshots(run.id)[-1]["step"] == store.snapshots(twin.id)[-1]["step"]
    assert run.summary["mask_sparsity"] == twin.summary["mask_sparsity"]
    assert run.summary["test_acc"] == twin.summary["test_acc"]
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path))
    assert main(["list"]) in (0, 1)
    assert "squared" in capsys.readouterr().out
