"""Comparing runs over seeds (pruning.compare): spreads, verdicts, the one-example rule, latency
noise, the noise-aware Pareto front, and the ``sweep --preset schedules`` report."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pruning import cli
from pruning.compare import (EXCEEDS_SPREAD, NO_SPREAD, SMALLER_THAN_ONE_EXAMPLE, VERDICTS,
                             WITHIN_SPREAD, Spread, compare, group_runs, groups_frame,
                             latency_differs, noise_aware_front, pairwise, report, report_text,
                             varying_fields, verdict)
from pruning.config import RunConfig
from pruning.data.digits import Digits
from pruning.store import Run

ONE_DIGIT = 1 / 360


def run(acc, *, seed=0, status="done", test_examples=360, **config) -> Run:
    summary = {"test_acc": acc, "test_examples": test_examples, "latency_ms": 2.0,
               "latency_p90_ms": 2.5}
    return Run(id=f"r{seed}-{acc}-{sorted(config.items())}", config=RunConfig(seed=seed, **config),
               status=status, created=0.0, summary=summary)


def test_spread_hand_computed():
    s = Spread((0.90, 0.92, 0.94))
    # mean 0.92; deviations ±0.02, 0 -> sample variance (0.0004 + 0.0004) / 2 = 0.0004
    assert (s.n, s.mean, s.low, s.high) == (3, pytest.approx(0.92), 0.90, 0.94)
    assert s.std == pytest.approx(0.02)
    assert Spread((0.5,)).std == 0.0


@pytest.mark.parametrize("b, expected", [
    ((0.80, 0.82, 0.84), EXCEEDS_SPREAD),            # Δ 0.10 > 0.02 + 0.02
    ((0.88, 0.90, 0.92), WITHIN_SPREAD),             # Δ 0.02 < 0.04, but 7 test images
    ((0.919, 0.92, 0.921), SMALLER_THAN_ONE_EXAMPLE),  # Δ 0.000 < 1/360
    ((0.80,), NO_SPREAD),                            # one seed: its noise is unknown
])
def test_the_verdicts(b, expected):
    assert verdict(Spread((0.90, 0.92, 0.94)), Spread(b), ONE_DIGIT) == expected


def test_one_example_rule_only_with_a_known_test_set():
    a, b = Spread((0.900, 0.901)), Spread((0.902, 0.903))  # Δ 0.002: under one digit (0.0028)
    assert verdict(a, b, ONE_DIGIT) == SMALLER_THAN_ONE_EXAMPLE
    assert verdict(a, b, None) == EXCEEDS_SPREAD  # spreads 0.0007 each: apart, if it counted
    # runs scored on different test sets get no one-example verdict
    ga, gb = group_runs([run(0.900, seed=0), run(0.901, seed=1),
                         run(0.902, seed=0, test_examples=10_000, dataset="mnist"),
                         run(0.903, seed=1, test_examples=10_000, dataset="mnist")])
    assert compare(ga, gb).verdict == EXCEEDS_SPREAD


def test_grouping_by_everything_but_the_seed():
    runs = [run(0.90, seed=0, schedule="agp"), run(0.92, seed=1, schedule="agp", threads=2),
            run(0.10, seed=2, schedule="agp", status="failed"),
            run(0.80, seed=0, schedule="one_shot"), run(0.84, seed=1, schedule="one_shot")]
    groups = group_runs(runs)
    assert [(g.config["schedule"], g.n, g.seeds) for g in groups] == [("agp", 2, (0, 1)),
                                                                       ("one_shot", 2, (0, 1))]
    assert groups[0].metrics["test_acc"].mean == pytest.approx(0.91)
    assert varying_fields(groups) == ["schedule"]
    assert groups[1].label(varying_fields(groups)) == "schedule=one_shot"
    assert groups[0].test_examples == 360
    assert groups[0].error("test_acc") == pytest.approx(0.01414, abs=1e-4)  # the std


def test_pairs_differ_in_one_setting_only_better_first():
    runs = [run(a, seed=s, schedule=sch, sparsity=sp)
            for sch, sp, accs in [("agp", 0.9, (0.90, 0.92)), ("one_shot", 0.9, (0.70, 0.72)),
                                  ("agp", 0.98, (0.95, 0.97))]
            for s, a in enumerate(accs)]
    groups = group_runs(runs)
    fields = varying_fields(groups)
    pairs = {(d.a.label(fields), d.b.label(fields)): d for d in pairwise(groups)}
    # one_shot@0.9 and agp@0.98 differ in two settings: no verdict on that pair
    assert set(pairs) == {("schedule=agp, sparsity=0.9", "schedule=one_shot, sparsity=0.9"),
                          ("schedule=agp, sparsity=0.98", "schedule=agp, sparsity=0.9")}
    assert all(d.delta > 0 and d.exceeds_spread for d in pairs.values())


def test_report_names_groups_spreads_and_verdicts():
    runs = [run(a, seed=s, schedule=sch) for sch, accs in
            [("agp", (0.90, 0.92, 0.94)), ("one_shot", (0.88, 0.90, 0.92))]
            for s, a in enumerate(accs)]
    out = report(runs)
    assert [(g["label"], g["n"]) for g in out["groups"]] == [("schedule=agp", 3),
                                                             ("schedule=one_shot", 3)]
    assert out["groups"][0]["metrics"]["test_acc"]["std"] == pytest.approx(0.02)
    [diff] = out["differences"]
    assert (diff["better"], diff["verdict"], diff["exceeds_spread"]) == \
        ("schedule=agp", WITHIN_SPREAD, False)
    text = report_text(runs)
    assert "92.00% ± 2.00%" in text and "+2.00 points — within the seed spread" in text
    assert "one test example = 0.28%" in text


def test_latency_differs_beyond_the_measured_spread():
    assert latency_differs(2.0, 2.2, 3.0, 3.3)      # Δ 1.0 > 0.2 + 0.3
    assert not latency_differs(2.6, 3.9, 3.4, 4.4)  # Δ 0.8 < 1.3 + 1.0: noise
    assert not latency_differs(3.0, 3.1, 3.0, 3.1)


def test_noise_aware_front_ignores_gains_inside_the_noise():
    # x = latency (lower better), y = accuracy; each with its half-width
    frame = pd.DataFrame({"x": [1.00, 1.05, 2.0, 3.0], "y": [0.80, 0.95, 0.955, 0.99],
                          "ex": 0.1, "ey": 0.01}, index=["p1", "p2", "p3", "p4"])
    plain = noise_aware_front(frame, "x", "y", x_error=None, y_error=None, x_higher_better=False)
    assert list(plain.index) == ["p1", "p2", "p3", "p4"]  # the ordinary front: a zigzag
    front = noise_aware_front(frame, "x", "y", x_error="ex", y_error="ey", x_higher_better=False)
    # p2 is as fast as p1 within the noise and clearly more accurate: it replaces p1; p3 buys
    # 0.5 points (inside ±1) for twice the latency: not a step; p4 is clearly more accurate
    assert list(front.index) == ["p2", "p4"]
    # higher x better (e.g. fraction of weights removed): the same rule mirrored
    mirrored = frame.assign(x=-frame["x"])
    assert list(noise_aware_front(mirrored, "x", "y", x_error="ex", y_error="ey",
                                  x_higher_better=True).index) == ["p4", "p2"]


def test_digits_declares_its_test_set_size(digits):
    assert Digits.test_examples == len(digits.test_y) == 360


def test_schedules_preset_defaults_to_the_measured_setting():
    args = cli.build_parser().parse_args(["sweep", "--preset", "schedules"])
    configs = cli.sweep_configs(args)
    assert sorted((c.schedule, c.seed) for c in configs) == sorted(
        (s, seed) for s in ("one_shot", "iterative", "agp", "one_cycle") for seed in (0, 1, 2))
    assert {c.sparsity for c in configs} == {0.98}
    args = cli.build_parser().parse_args(["sweep", "--preset", "schedules", "--sparsity", "0.8",
                                          "--seeds", "4"])
    assert {(c.sparsity, c.seed) for c in cli.sweep_configs(args)} == {(0.8, 4)}


def test_sweep_preset_schedules_json_reports_spread_and_verdicts(tmp_home, capsys):
    # a tiny version of the preset: 1 epoch on 128 images, 2 seeds
    code = cli.main(["sweep", "--preset", "schedules", "--seeds", "0,1", "--epochs", "1",
                     "--max-train-samples", "128", "--json", "-q"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["runs"]) == 8
    comparison = out["comparison"]
    groups = {g["label"]: g for g in comparison["groups"]}
    assert set(groups) == {f"schedule={s}" for s in ("one_shot", "iterative", "agp", "one_cycle")}
    for g in groups.values():
        acc = g["metrics"]["test_acc"]
        assert g["n"] == acc["n"] == 2 and g["seeds"] == [0, 1] and g["test_examples"] == 360
        assert acc["min"] <= acc["mean"] <= acc["max"] and acc["std"] >= 0
    assert len(comparison["differences"]) == 6  # every pair of schedules
    assert all(d["verdict"] in VERDICTS and d["delta"] >= 0 for d in comparison["differences"])
    assert "std_a + std_b" in comparison["rule"]


def test_along_a_numeric_setting_only_neighbours_are_paired():
    runs = [run(a, seed=s, sparsity=sp) for sp, accs in
            [(0.5, (0.98, 0.97)), (0.9, (0.97, 0.96)), (0.99, (0.40, 0.60))]
            for s, a in enumerate(accs)]
    groups = group_runs(runs)
    pairs = {(d.a.config["sparsity"], d.b.config["sparsity"]): d.verdict
             for d in pairwise(groups)}
    # 0.5 vs 0.99 skips 0.9; 0.5 -> 0.9 loses 1 point with stds of 0.7 each (within);
    # 0.9 -> 0.99 loses 46.5 points with stds of 0.7 and 14.1 (the cliff)
    assert pairs == {(0.5, 0.9): WITHIN_SPREAD, (0.9, 0.99): EXCEEDS_SPREAD}


def test_tradeoffs_preset_reaches_the_cliff_with_a_dense_baseline():
    args = cli.build_parser().parse_args(["sweep", "--preset", "tradeoffs"])
    configs = cli.sweep_configs(args)
    assert sorted({c.sparsity for c in configs}) == [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995]
    assert {c.seed for c in configs} == {0, 1, 2} and len(configs) == 24


def test_latency_between_groups_uses_the_measured_timing_spread():
    def timed(median, p90, seed=0, **config):
        r = run(0.9, seed=seed, **config)
        r.summary.update(latency_ms=median, latency_p90_ms=p90)
        return r

    # single runs: the timing spread (p90 - median) decides, not the missing seed spread
    fast, slow = group_runs([timed(1.0, 1.1, sparsity=0.99), timed(2.0, 2.2, sparsity=0.9)])
    assert compare(fast, slow, "latency_ms").verdict == EXCEEDS_SPREAD
    noisy_fast, noisy_slow = group_runs([timed(2.6, 3.9, sparsity=0.99),
                                         timed(3.4, 4.4, sparsity=0.9)])
    assert compare(noisy_fast, noisy_slow, "latency_ms").verdict == WITHIN_SPREAD
    assert noisy_fast.error("latency_ms") == pytest.approx(1.3)


def test_groups_frame_gives_each_group_its_band():
    runs = [run(a, seed=s, schedule=sch) for sch, accs in
            [("agp", (0.90, 0.92, 0.94)), ("one_shot", (0.50,))] for s, a in enumerate(accs)]
    frame = groups_frame(group_runs(runs), ["test_acc"]).set_index("label")
    agp, one_shot = frame.loc["schedule=agp"], frame.loc["schedule=one_shot"]
    assert (agp["n"], agp["schedule"], agp["seeds"]) == (3, "agp", [0, 1, 2])
    assert agp["test_acc_mean"] == pytest.approx(0.92)
    assert agp["test_acc_error"] == pytest.approx(0.02)  # the std: above half an image
    assert (agp["test_acc_min"], agp["test_acc_max"]) == (0.90, 0.94)
    # one seed: no spread, so the bar is half a test image wide
    assert one_shot["test_acc_error"] == pytest.approx(0.5 / 360)
