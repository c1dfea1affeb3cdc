"""Settings described once: RunConfig's field descriptions, stored configs of other versions,
schedules that plug in at one place, and a library without import cycles.

A throwaway schedule with a parameter of its own is registered in one place (the ``wobble``
fixture) and must then appear in ``run --help``, on the Run page (AppTest), on the Schedules page
and in the registry-parametrised schedule tests.
"""
from __future__ import annotations

import ast
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pruning.cli import main
from pruning.config import (SECTIONS, Bounds, ConfigError, RunConfig, parse_value, setting,
                            specs)
from pruning.schedules import SCHEDULES, Schedule, make_schedule, schedule_from_config
from pruning.validation import REGISTRIES, registry, validate
from ui import forms

ROOT = Path(__file__).resolve().parent.parent
FLOATS = [s for s in specs() if s.kind is float]


# ---- the descriptions ------------------------------------------------------------------------
def test_every_setting_is_described():
    for s in specs():
        assert s.help, f"{s.name} has no help"
        assert s.section in SECTIONS + ("",), s.name
        if s.kind in (int, float) and s.choices is None:
            assert s.bounds is not None, f"{s.name} has no bounds"
            assert s.default in s.bounds, s.name
        if s.registry is not None:
            assert s.registry in REGISTRIES and s.default in registry(s.registry), s.name
        if s.choices is not None:
            assert s.default in s.choices, s.name
    assert specs() and {s.name for s in specs()} == set(RunConfig().to_dict())


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "1e999"])
@pytest.mark.parametrize("s", FLOATS, ids=[s.name for s in FLOATS])
def test_nan_and_infinity_are_refused_everywhere(s, text):
    with pytest.raises(ConfigError, match="finite"):
        parse_value(s, text)
    with pytest.raises(ConfigError, match="finite"):
        RunConfig().replace(**{s.name: float(text)}).check()


def test_bounds_come_from_the_description():
    epochs = next(s for s in specs() if s.name == "epochs")
    assert (epochs.bounds.low, epochs.bounds.high) == (1, 1000)
    with pytest.raises(ConfigError, match=r"epochs must be in \[1, 1000\], got 1001"):
        RunConfig(epochs=1001).check()
    RunConfig(epochs=1000).check()
    assert Bounds(0.0, 1.0, high_open=True).text() == "in [0, 1)"
    assert 1.0 not in Bounds(0.0, 1.0, high_open=True) and 0.0 in Bounds(0.0, 1.0)


def test_validate_types_the_parameters_and_refuses_ignored_settings():
    config = validate(RunConfig(method="synflow", method_params={"iterations": "7"},
                                schedule="iterative", schedule_params={"steps": "4"}))
    assert (config.method_params, config.schedule_params) == ({"iterations": 7}, {"steps": 4})
    with pytest.raises(ConfigError, match="ignores --granularity; drop them"):
        validate(RunConfig(method="aswl", granularity="channel"))
    with pytest.raises(ConfigError, match="schedule 'linear' takes no parameters"):
        validate(RunConfig(schedule="linear", schedule_params={"alpha": 3.0}))


# ---- stored configs of other versions --------------------------------------------------------
def test_unknown_fields_are_kept_and_reported_not_fatal():
    stored = {**RunConfig(epochs=3).to_dict(), "quantise": True, "bits": 4}
    config = RunConfig.from_dict(stored)
    assert config == RunConfig(epochs=3)
    assert config.unknown == {"quantise": True, "bits": 4}
    assert "quantise" not in config.to_dict()


@pytest.mark.parametrize("schedule, old, params", [
    ("one_cycle", {"alpha": 10.0, "beta": 4.0, "steps": 3}, {"alpha": 10.0, "beta": 4.0}),
    ("one_cycle", {"alpha": 14.0, "beta": 5.0, "steps": 7}, {}),
    ("iterative", {"alpha": 14.0, "beta": 5.0, "steps": 5}, {"steps": 5}),
    ("iterative_geometric", {"alpha": 9.0, "beta": 5.0, "steps": 2}, {"steps": 2}),
    ("linear", {"alpha": 9.0, "beta": 1.0, "steps": 8}, {}),  # they had no effect there
])
def test_runs_stored_with_alpha_beta_steps_load_with_the_same_values(schedule, old, params):
    stored = RunConfig(schedule=schedule, sparsity=0.8).to_dict()
    del stored["schedule_params"]  # the stored form before schedules had their own parameters
    config = RunConfig.from_dict({**stored, **old})
    assert config.schedule_params == params and config.unknown == {}
    validate(config)
    curve = schedule_from_config(config)
    if schedule == "one_cycle":  # s_f (1 + e^(−α+β)) / (1 + e^(−α t+β)) at t = 0.5
        a, b = old["alpha"], old["beta"]
        want = 0.8 * (1 + math.exp(-a + b)) / (1 + math.exp(-a * 0.5 + b))
        assert curve(0.5) == pytest.approx(want, rel=1e-12)
    if schedule == "iterative":  # 5 steps over the window [0.2, 1]: u = 0.5 -> ceil(2.5) = 3
        assert curve(0.6) == pytest.approx(0.8 / 5 * 3)


# ---- no import cycle inside pruning/ ---------------------------------------------------------
def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in (ROOT / "pruning").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):  # late imports inside functions too
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names}
                deps |= subs & set(modules)
                if subs - set(modules):  # a name from the module itself, not a submodule
                    deps.add(node.module)
        deps.discard(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_no_import_cycle_inside_pruning():
    graph = _module_graph()
    assert "pruning.config" in graph and graph["pruning.config"] == set()  # a leaf
    assert {"pruning.methods.base", "pruning.validation"} <= set(graph)
    assert _cycles(graph) == []
    # the checker does find one when there is one
    assert _cycles({**graph, "pruning.config": {"pruning.validation"}})


def test_the_cli_parser_imports_no_torch():
    code = ("import sys; from pruning.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    help_text = subprocess.run([sys.executable, "-m", "pruning", "--help"], capture_output=True,
                               text=True, cwd=ROOT)
    assert help_text.returncode == 0 and "sweep" in help_text.stdout


# ---- a schedule plugs in at one place --------------------------------------------------------
@dataclass(frozen=True)
class WobbleParams:
    wobble: float = setting(0.5, help="how far the curve bends", label="wobble",
                            bounds=Bounds(0.0, 1.0), step=0.1, slider=(0.0, 1.0, 0.1))


@dataclass(frozen=True)
class Wobble(Schedule):
    """s_i + (s_f − s_i) · u^(1 + wobble)."""
    params: WobbleParams = WobbleParams()

    def curve(self, u: float) -> float:
        return self.initial + self.span() * u ** (1.0 + self.params.wobble)


@pytest.fixture
def wobble():
    """The one place the throwaway schedule is registered."""
    with SCHEDULES.registered("wobble", Wobble, config=WobbleParams,
                              description="A bent curve (a test schedule).") as cls:
        yield cls
    assert "wobble" not in SCHEDULES


def test_a_new_schedule_appears_in_the_cli(wobble, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "--wobble WOBBLE" in help_text and "how far the curve bends" in help_text
    schedule_help = " ".join(help_text.rsplit("--schedule SCHEDULE", 1)[1].split("\n  --")[0]
                             .split())
    assert "one of: one_shot, iterative" in schedule_help and "cosine, wobble" in schedule_help
    assert main(["run", "--schedule", "wobble", "--wobble", "2"]) == 2
    assert "wobble must be in [0, 1], got 2" in capsys.readouterr().err
    assert main(["run", "--schedule", "linear", "--wobble", "0.2"]) == 2
    assert "--wobble is a setting of schedule wobble, not of linear" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_a_new_schedule_appears_on_the_run_page(wobble, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    config = RunConfig(schedule="wobble", schedule_params={"wobble": 0.25})
    assert forms.config_to_query(config) == {"schedule": "wobble", "s.wobble": "0.25"}
    at = AppTest.from_file(str(ROOT / "pages/1_Run.py"), default_timeout=60)
    for key, value in forms.config_to_query(config).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception and not at.error
    assert "wobble" in at.selectbox(key="run.schedule").options
    assert at.number_input(key="run.s.wobble.wobble").value == 0.25
    at.number_input(key="run.s.wobble.wobble").set_value(0.75).run()
    assert forms.config_from_query(dict(at.query_params)) == (
        config.replace(schedule_params={"wobble": 0.75}), [])


def test_a_new_schedule_appears_on_the_schedules_page(wobble, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNING_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(ROOT / "pages/2_Schedules.py"), default_timeout=60).run()
    at.multiselect(key="sch-names").set_value(["wobble"]).run()
    at.slider(key="sch-p.wobble.wobble").set_value(0.3).run()
    assert not at.exception and not at.error
    assert "wobble" in at.get("plotly_chart")[0].proto.spec


def test_a_new_schedule_passes_the_registry_parametrised_tests(wobble):
    import test_schedules

    for initial, final, window in test_schedules.SETTINGS:
        test_schedules.test_monotone_bounded_and_exact_at_the_end("wobble", initial, final, window)
        test_schedules.test_window_is_respected("wobble", initial, final, window)
    assert make_schedule("wobble", final=0.8, params={"wobble": 1.0})(0.5) == pytest.approx(0.2)


# ---- sweeps ------------------------------------------------------------------------------------
def test_sweep_grid_in_field_order_with_each_schedules_own_settings():
    from pruning.validation import sweep_grid

    base = RunConfig(epochs=2)
    configs = sweep_grid(base, {"seed": [0, 1], "schedule": ["iterative", "one_cycle"],
                                "method": ["magnitude", "aswl"]},
                         schedule_params={"steps": 5, "alpha": 9.0})
    assert [(c.method, c.schedule, c.seed, c.schedule_params) for c in configs] == [
        ("magnitude", "iterative", 0, {"steps": 5}), ("magnitude", "iterative", 1, {"steps": 5}),
        ("magnitude", "one_cycle", 0, {"alpha": 9.0}), ("magnitude", "one_cycle", 1, {"alpha": 9.0}),
        # aswl follows no schedule: once per seed, under the base's (default) schedule
        ("aswl", "one_cycle", 0, {}), ("aswl", "one_cycle", 1, {})]
