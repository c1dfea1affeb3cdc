"""Schedules page: when to prune. The registered schedules' curves on one chart, shaped with
sliders (final and initial sparsity, the pruning window, and each chosen schedule's own
parameters, generated from its registered parameter dataclass); then, for chosen runs, accuracy and sparsity over training overlaid, and a button that
trains the same model under each chosen schedule over three seeds.

The curves come from ``pruning.schedules.make_schedule`` (the same objects a run uses), so what is
drawn is exactly what training follows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pruning.compare import SCHEDULE_COMPARISON
from pruning.config import RunConfig, specs
from pruning.schedules import SCHEDULES, make_schedule
from pruning.store import Run
from ui import live, page, pickers, report, state
from ui.charts import schedules
from ui.safe_text import md

SLOT = "schedules"
COMPARED = ("one_shot", "iterative", "agp", "one_cycle")


def param_sliders(name: str, container) -> dict:
    """Sliders for schedule ``name``'s own parameters; returns the values that differ from the
    defaults (what a run stores)."""
    cls = SCHEDULES.config_class(name)
    out = {}
    for s in specs(cls) if cls is not None else ():
        low, high, step = s.slider or (s.bounds.low, s.bounds.high, s.step or 1)
        kind = int if s.kind is int else float
        value = state.linked(container.slider, f"{name} · {s.label}", kind(low), kind(high),
                             value=kind(s.default), step=kind(step), key=f"sch-p.{name}.{s.name}",
                             help=s.describe(), param=f"{name}.{s.name}",
                             codec=state.number(low, high, kind))
        if value != s.default:
            out[s.name] = value
    return out


def settings() -> dict:
    """The sliders; returns the chosen schedule names, sparsities, window and each schedule's
    own parameters."""
    names = state.linked(st.multiselect, "schedules", SCHEDULES.names(),
                         default=[n for n in COMPARED if n in SCHEDULES], key="sch-names",
                         param="schedules", codec=state.choices(SCHEDULES.names()))
    c1, c2, c3 = st.columns(3)
    # opens at the measured comparison's sparsity, where schedules differ beyond their seed spread
    final = state.linked(c1.slider, "final sparsity", 0.0, 0.99,
                         value=SCHEDULE_COMPARISON["sparsity"], step=0.01,
                         key="sch-final", param="final", codec=state.number(0.0, 0.99))
    initial = state.linked(c1.slider, "initial sparsity", 0.0, 0.99, value=0.0, step=0.01,
                           key="sch-initial", param="initial", codec=state.number(0.0, 0.99))
    params = {name: param_sliders(name, c2) for name in names}
    custom = state.linked(c3.checkbox, "one window for all", key="sch-custom",
                          help="off: each schedule uses its own default window (one-shot prunes "
                               "at half-time, iterative and AGP start at 20 %)",
                          param="one_window", codec=state.flag())
    window = state.linked(c3.slider, "pruning window (fraction of training)", 0.0, 1.0,
                          value=(0.2, 0.8), step=0.05, key="sch-window", disabled=not custom,
                          param="window", codec=state.span(0.0, 1.0))
    return {"names": names, "final": final, "initial": min(initial, final), "params": params,
            "start": window[0] if custom else None, "end": window[1] if custom else None}


def curves(s: dict) -> pd.DataFrame:
    progress = np.linspace(0.0, 1.0, 401)
    rows = []
    for name in s["names"]:
        try:
            schedule = make_schedule(name, final=s["final"], initial=s["initial"],
                                     start=s["start"], end=s["end"], params=s["params"][name])
        except ValueError as exc:
            st.error(md(f"{name}: {exc}"))
            continue
        rows += [{"progress": float(t), "target": schedule(float(t)), "schedule": name}
                 for t in progress]
    return pd.DataFrame(rows, columns=["progress", "target", "schedule"])


def schedule_configs(base: RunConfig, s: dict) -> list[RunConfig]:
    """The same model, data and method under each chosen schedule, with the sliders' shape
    parameters, once per seed of the schedule comparison (a difference is only a finding when
    it exceeds the spread over seeds)."""
    window = {} if s["start"] is None else {"window_start": s["start"], "window_end": s["end"]}
    return [base.replace(schedule=name, sparsity=s["final"], initial_sparsity=s["initial"],
                         schedule_params=s["params"][name], seed=seed, **window)
            for name in s["names"] for seed in SCHEDULE_COMPARISON["seed"]]


def default_group(runs: list[Run]) -> list[str]:
    """The newest set of runs that differ only in their schedule and seed (every seed of every
    schedule), else the newest run: what the page overlays until the user chooses."""
    groups: dict[tuple, dict[str, list[str]]] = {}
    for r in runs:  # newest first
        c = r.config
        key = (c.model, c.dataset, c.method, c.sparsity, c.epochs)
        groups.setdefault(key, {}).setdefault(c.schedule, []).append(r.id)
    for by_schedule in groups.values():  # dicts keep insertion order: newest group first
        if len(by_schedule) >= 2:
            return [i for ids in by_schedule.values() for i in ids]
    return [runs[0].id] if runs else []


def trained(s: dict) -> None:
    st.subheader("The same model trained under each schedule")
    runs = pickers.finished_runs(statuses=("done", "stopped"))
    by_id = {r.id: r for r in runs}
    group = default_group(runs)
    base_run = pickers.run_picker("model, data and method from run", runs, key="sch-base",
                                 default=group[0] if group else None, param="base") if runs else None
    base = base_run.config if base_run else RunConfig()
    configs = schedule_configs(base, s)
    st.caption(f"Trains **{md(base.model)}** on **{md(base.dataset)}** with **{md(base.method)}**, "
               f"{base.epochs} epochs, once per chosen schedule and seed "
               f"({', '.join(map(str, SCHEDULE_COMPARISON['seed']))}), with the sliders' shape: "
               f"{len(configs)} run(s) in the background, as many at once as the machine has cores "
               f"(a sweep on Ray; one after another where Ray is not available).")
    if st.button("Train under each schedule", type="primary", key="sch-train",
                 disabled=not s["names"] or live.slot_running(SLOT)):
        live.start_job(SLOT, configs)
    progress = live.show_job(SLOT, show_curves=True)
    if progress is not None and not progress.running and progress.run_ids:
        finished = list(progress.run_ids)
        if state.recall("schedules-overlaid") != finished:
            # The job's runs replace the overlay once, when it ends: the picker's own state
            # would otherwise keep showing the runs chosen before.
            state.remember("schedules-overlaid", finished)
            state.set_chosen_runs("schedules", finished)
            runs = pickers.finished_runs(statuses=("done", "stopped"))
            by_id = {r.id: r for r in runs}
            st.session_state["sch-overlay"] = [i for i in finished if i in by_id]
    if not runs:
        st.info("No finished runs yet: the button above trains the default session's model "
                "under each chosen schedule, then their curves appear here overlaid.")
        return
    default = [i for i in state.chosen_runs("schedules") if i in by_id] or group
    chosen = pickers.runs_picker("runs to overlay", runs, key="sch-overlay", default=default,
                                  param="runs")
    if not chosen:
        st.info("Choose runs to overlay.")
        return
    overlay(chosen)


def overlay(chosen: list[Run]) -> None:
    """The chosen runs' curves, averaged over the seeds of each setting, their spread and the
    verdicts on their differences."""
    report.seed_curves(chosen, key="sch-overlay-curves",
                       what="Test accuracy (left) and sparsity (right) per epoch, one line per "
                            "schedule ({seeds}): the line is the mean over seeds, the band ± one "
                            "standard deviation.")
    table = report.spread_table(chosen)
    if not table.empty:
        st.dataframe(table, hide_index=True, width="stretch")
        page.caption("Final test accuracy of each schedule over its seeds (finished runs).")
    report.verdicts(chosen, "Differences between schedules in words, by one rule")


def main() -> None:
    page.page_setup(
        "Schedules",
        "A schedule says *when* the weights go: all at once (one-shot), in a few steps "
        "(iterative), fast then slow (AGP's cubic), or slowly, then steeply, then slowly again "
        "(one-cycle). Shape them here, then train the same network under each.")
    s = settings()
    frame = curves(s)
    if frame.empty:
        st.info("Choose at least one schedule above to draw its curve.")
    else:
        st.plotly_chart(schedules.schedule_curves(frame), key="sch-curves")
        page.caption("Target sparsity each schedule asks for over training (0 % = first step, "
                       "100 % = last); the masks follow these curves step by step.")
    trained(s)


main()
