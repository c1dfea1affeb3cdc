"""Sparsity schedules (METHODS.md §1): monotone, bounded, exact at the ends, windows respected,
and one_cycle / agp / iterative values against numbers computed from the formulas."""
from __future__ import annotations

import math

import pytest

from pruning.config import RunConfig
from pruning.schedules import SCHEDULES, make_schedule, schedule_from_config

GRID = [i / 400 for i in range(401)]
SETTINGS = [  # (initial, final, window or None for the schedule's default)
    (0.0, 0.9, None), (0.2, 0.95, None), (0.0, 0.5, (0.1, 0.7)), (0.3, 0.3, None),
    (0.0, 0.99, (0.0, 1.0)), (0.1, 0.8, (0.5, 0.5)),
]


def build(name, initial, final, window):
    start, end = window if window else (None, None)
    return make_schedule(name, final=final, initial=initial, start=start, end=end)


@pytest.mark.parametrize("initial,final,window", SETTINGS)
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_monotone_bounded_and_exact_at_the_end(name, initial, final, window):
    schedule = build(name, initial, final, window)
    values = [schedule(t) for t in GRID]
    assert all(b >= a for a, b in zip(values, values[1:])), "not monotone non-decreasing"
    assert all(initial <= v <= final for v in values), "left [s_i, s_f]"
    assert schedule(1.0) == final
    assert schedule(1.5) == final


@pytest.mark.parametrize("initial,final,window", SETTINGS)
@pytest.mark.parametrize("name", SCHEDULES.names())
def test_window_is_respected(name, initial, final, window):
    schedule = build(name, initial, final, window)
    start, end = schedule.start, schedule.end
    if window:
        assert (start, end) == window
    else:
        assert (start, end) == SCHEDULES.get(name).default_window
    for t in GRID:
        if t < start:
            assert schedule(t) == initial
        if t >= end and name != "one_shot" or name == "one_shot" and t >= start:
            assert schedule(t) == final


def test_default_windows_match_the_design():
    windows = {name: SCHEDULES.get(name).default_window for name in SCHEDULES.names()}
    assert windows["one_shot"] == (0.5, 0.5)
    assert windows["iterative"] == windows["agp"] == (0.2, 1.0)
    assert windows["one_cycle"] == windows["linear"] == windows["cosine"] == (0.0, 1.0)


def test_one_cycle_values_from_the_formula():
    # s(t) = s_i + (s_f − s_i)(1 + e^(−α+β)) / (1 + e^(−α·t+β)), α = 14, β = 5, s_i = 0, s_f = 0.9
    # (values computed once with python from this formula):
    # t = 0: 0.9·(1 + e^−9)/(1 + e^5) = 0.0060243091989355835
    # t = 0.25: 0.9·(1 + e^−9)/(1 + e^1.5) = 0.16420323321405875
    # t = 0.5: 0.9·(1 + e^−9)/(1 + e^−2) = 0.7928151992754442
    # t = 0.75: 0.9·(1 + e^−9)/(1 + e^−5.5) = 0.8964474928139633
    schedule = make_schedule("one_cycle", final=0.9)
    for t, want in [(0.0, 0.0060243091989355835), (0.25, 0.16420323321405875),
                    (0.5, 0.7928151992754442), (0.75, 0.8964474928139633), (1.0, 0.9)]:
        assert schedule(t) == pytest.approx(want, rel=1e-12)
    # β = 6 (the author's library default): t = 0.5 -> 0.9·(1 + e^−8)/(1 + e^−1) = 0.6581734393157485
    assert make_schedule("one_cycle", final=0.9, params={"beta": 6.0})(0.5) == pytest.approx(0.6581734393157485)
    # at t = 0 one_cycle is already ≈ 0.7 % of the way (β = 5)
    assert schedule(0.0) / 0.9 == pytest.approx(0.00669, abs=1e-5)


def test_one_cycle_needs_a_positive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        make_schedule("one_cycle", final=0.9, params={"alpha": -3.0})


def test_agp_values_from_the_formula():
    # s = s_f + (s_i − s_f)(1 − u)³, u = (t − 0.2)/0.8 in the default window [0.2, 1]
    schedule = make_schedule("agp", final=0.8)
    assert schedule(0.1) == 0.0                          # before the window
    assert schedule(0.2) == pytest.approx(0.0)           # u = 0
    assert schedule(0.4) == pytest.approx(0.4625)        # u = 0.25: 0.8 − 0.8·0.421875
    assert schedule(0.6) == pytest.approx(0.7)           # u = 0.5: 0.8 − 0.8·0.125
    assert schedule(0.9) == pytest.approx(0.7984375)     # u = 0.875: 0.8 − 0.8·0.001953125
    # s_i = 0.1: u = 0.5 -> 0.8 + (0.1 − 0.8)·0.125 = 0.7125
    assert make_schedule("agp", final=0.8, initial=0.1)(0.6) == pytest.approx(0.7125)


def test_iterative_steps():
    # s_i + (s_f − s_i)/n · ceil(u·n), n = 3, window [0.2, 1]
    schedule = make_schedule("iterative", final=0.9)
    assert schedule(0.2) == pytest.approx(0.0)
    assert schedule(0.3) == pytest.approx(0.3)    # u = 0.125 -> 1 step
    assert schedule(0.5) == pytest.approx(0.6)    # u = 0.375 -> 2 steps
    assert schedule(0.8) == pytest.approx(0.9)    # u = 0.75 -> 3 steps
    assert len({round(schedule(t), 12) for t in GRID}) == 4  # 0, 0.3, 0.6, 0.9


def test_iterative_geometric_prunes_the_same_fraction_of_what_remains():
    # density halves at each of 3 levels: 1 -> 0.5 -> 0.25 -> 0.125 (s_f = 0.875)
    schedule = make_schedule("iterative_geometric", final=0.875)
    assert [round(schedule(t), 12) for t in (0.3, 0.5, 0.9)] == [0.5, 0.75, 0.875]
    # everything already pruned: stays at 1 instead of dividing by zero
    assert make_schedule("iterative_geometric", final=1.0, initial=1.0)(0.5) == 1.0


def test_one_shot_jumps_at_its_start_and_can_prune_at_initialisation():
    schedule = make_schedule("one_shot", final=0.7)
    assert schedule(0.49) == 0.0 and schedule(0.5) == 0.7
    at_init = make_schedule("one_shot", final=0.7, start=0.0)
    assert (at_init.start, at_init.end) == (0.0, 0.0) and at_init(0.0) == 0.7


def test_linear_and_cosine_midpoints():
    assert make_schedule("linear", final=0.8)(0.25) == pytest.approx(0.2)
    assert make_schedule("cosine", final=0.8)(0.5) == pytest.approx(0.4)
    quarter = 0.4 * (1 - math.cos(math.pi / 4))
    assert make_schedule("cosine", final=0.8)(0.25) == pytest.approx(quarter)


def test_schedule_from_config_uses_defaults_and_custom_windows():
    default = schedule_from_config(RunConfig(schedule="agp", sparsity=0.7))
    assert (default.start, default.end, default.final) == (0.2, 1.0, 0.7)
    custom = schedule_from_config(RunConfig(schedule="one_cycle", sparsity=0.6, window_start=0.1,
                                            window_end=0.6,
                                            schedule_params={"alpha": 10.0, "beta": 4.0}))
    assert (custom.start, custom.end, custom.params.alpha, custom.params.beta) == (0.1, 0.6, 10.0, 4.0)
    assert custom(0.05) == 0.0 and custom(0.6) == 0.6


@pytest.mark.parametrize("kwargs", [dict(start=0.6, end=0.4), dict(start=-0.1, end=0.5),
                                    dict(initial=0.5), dict(end=1.2)])
def test_invalid_schedules_are_refused(kwargs):
    params = dict(final=0.4)
    params.update(kwargs)
    with pytest.raises(ValueError):
        make_schedule("linear", **params)
    with pytest.raises(ValueError, match="step"):
        make_schedule("iterative", final=0.5, params={"steps": 0})
