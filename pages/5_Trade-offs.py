"""Trade-offs page: accuracy against the fraction of weights kept (log axis), FLOPs and measured
latency, one point per setting averaged over its seeds with error bars, the points of a sweep
joined per method and schedule, the dense baseline as a band and the Pareto front only through
steps larger than the noise (``pruning.compare``), filterable by model, dataset, method and
schedule; and a sweep over sparsities (and methods, schedules, seeds) started from the
page, trained one run after another in a background job.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pruning import compare
from pruning.compare import TRADEOFF_SWEEP
from pruning.config import ConfigError, RunConfig
from pruning.data import DATASETS
from pruning.methods import METHODS
from pruning.models import MODELS
from pruning.schedules import SCHEDULES
from pruning.validation import parse_sweep_list, sweep_grid
from ui import datasets, live, page, pickers, report, state
from ui.charts import tradeoffs
from ui.charts.style import schedule_of
from ui.safe_text import md

SLOT = "tradeoffs"
FILTERS = (("model", "model"), ("dataset", "dataset"), ("method", "method"),
           ("schedule", "schedule"))

#: (tab title, x column, axis title, higher x is better, log axis, x error bars, caption)
VIEWS = (
    ("Accuracy vs weights kept", "density", "fraction of weights kept", False, True, False,
     "Each point is one setting, averaged over its seeds (error bars: ± one standard deviation "
     "over the seeds, at least half a test example); the points of a sweep are joined per "
     "method and schedule (colour = method, dash and marker = schedule). The x axis is the "
     "fraction of weights kept on a log scale, as pruning papers draw it: 10 % kept = 90 % "
     "sparse, 1 % kept = 99 % sparse; for i-SpaSP and SSC, which remove units instead of "
     "masking them, the fraction of parameters left. The shaded band is the dense baseline "
     "(mean ± its spread); the dotted staircase is the Pareto front, drawn only through steps "
     "larger than the error bars."),
    ("Accuracy vs FLOPs", "mflops", "FLOPs under the mask (M per image, log scale)", False, True,
     False, "Accuracy against the multiply-accumulates that the mask leaves (zeros skipped, a "
            "count, not a timing); the front joins the settings that no cheaper one beats by "
            "more than the error bars."),
    ("Accuracy vs latency", "latency_ms", "measured latency (ms per batch, compact model; "
     "median, bars to the 90th percentile)", False, False, True,
     "Accuracy against the measured latency of the physically compacted model on this "
     "machine; the horizontal bars are the measured spread (90th percentile − median, or the "
     "spread over seeds if larger). Unstructured zeros do not make a model faster, removed "
     "channels do; points whose bars overlap are equally fast within the noise, and the front "
     "does not bend through them."),
)


def filtered(frame: pd.DataFrame) -> pd.DataFrame:
    """The filter row; returns the runs that pass."""
    top, bottom = st.columns(2), st.columns(2)
    cols = [top[0], top[1], bottom[0], bottom[1]]
    for col, (column, label) in zip(cols, FILTERS):
        options = sorted(frame[column].dropna().unique())
        chosen = state.linked(col.multiselect, label, options, default=options,
                              key=f"to-filter-{column}", param=column,
                              codec=state.choices(options))
        frame = frame[frame[column].isin(chosen)]
    return frame


def views(runs: list) -> None:
    groups = compare.group_runs(runs, tradeoffs.TRADEOFF_METRICS)
    frame = tradeoffs.tradeoff_frame(groups)
    if frame.empty:
        st.info("No finished run in this selection.")
        return
    tabs = state.linked_tabs([v[0] for v in VIEWS], key="to-view", param="view")
    for tab, (title, x, x_title, higher, log, x_errors, text) in zip(tabs, VIEWS):
        if not state.is_open(tab):
            continue
        with tab:
            if x not in frame or frame[x].isna().all():
                st.info(f"No run in this selection has {x_title.split('(')[0].strip()}; runs "
                        "started with latency measurement off have no latency.")
                continue
            st.plotly_chart(tradeoffs.tradeoff_figure(frame, x, x_title=x_title,
                                                      x_higher_better=higher, log_x=log,
                                                      x_errors=x_errors), key=f"to-{x}")
            sizes = sorted(set(frame["n"]))
            seeds = (f"n = {sizes[0]}" if len(sizes) == 1 else f"n = {sizes[0]}–{sizes[-1]}")
            page.caption(f"{text} Seeds per point: {seeds}"
                         + (" (one seed: no spread measured, so no difference here is known "
                            "to exceed the noise)." if sizes == [1] else "."))
            front = compare.noise_aware_front(frame, x, "test_acc",
                                              x_error=f"{x}_error" if x_errors else None,
                                              y_error="test_acc_error", x_higher_better=higher)
            with st.expander(f"Settings on the Pareto front ({len(front)})"):
                show = front[[c for c in ("curve", "target", "n", x, "test_acc",
                                          "test_acc_error") if c in front]]
                st.dataframe(show, hide_index=True, width="stretch")
    lines = report.verdict_lines(runs)
    if lines:
        with st.expander(f"Which differences exceed the seed spread ({len(lines)} pairs)"):
            st.markdown("\n".join(f"- {line}" for line in lines))
            page.caption(f"Pairs of settings that differ in one choice; neighbouring "
                         f"sparsities only. Rule: {compare.RULE}.")


def sweep_form() -> list[RunConfig] | None:
    """The sweep's grid; returns its configs, or None (with st.error) when it cannot be read."""
    base = RunConfig()
    c1, c2, c3 = st.columns(3)
    model = state.linked(c1.selectbox, "model", MODELS.names(), key="to-sw-model",
                         param="sweep.model", codec=state.choice(MODELS.names()))
    dataset = state.linked(c2.selectbox, "dataset", DATASETS.names(), key="to-sw-dataset",
                           param="sweep.dataset", codec=state.choice(DATASETS.names()))
    epochs = int(state.linked(c3.number_input, "epochs", min_value=1, value=base.epochs, step=1,
                              key="to-sw-epochs", param="sweep.epochs",
                              codec=state.number(1, 10_000, int)))
    c1, c2 = st.columns(2)
    methods = state.linked(c1.multiselect, "methods", METHODS.names(), default=[base.method],
                           key="to-sw-methods", param="sweep.methods",
                           codec=state.choices(METHODS.names()))
    schedules = state.linked(c2.multiselect, "schedules", SCHEDULES.names(),
                             default=[base.schedule], key="to-sw-schedules",
                             param="sweep.schedules", codec=state.choices(SCHEDULES.names()))
    c1, c2 = st.columns(2)
    sparsities_text = state.linked(
        c1.text_input, "target sparsities",
        value=", ".join(f"{v:g}" for v in TRADEOFF_SWEEP["sparsity"]), key="to-sw-sparsities",
        help="fractions in [0, 1), comma-separated", param="sweep.sparsities", codec=state.text())
    seeds_text = state.linked(c2.text_input, "seeds",
                              value=", ".join(str(v) for v in TRADEOFF_SWEEP["seed"]),
                              key="to-sw-seeds", help="comma-separated integers",
                              param="sweep.seeds", codec=state.text())
    measure = state.linked(st.checkbox, "measure latency after each run", value=True,
                           key="to-sw-latency",
                           help="adds a second or two per run; needed for the latency view",
                           param="sweep.latency", codec=state.flag())
    try:
        sparsities = parse_sweep_list("sparsity", sparsities_text, "target sparsities")
        seeds = parse_sweep_list("seed", seeds_text, "seeds")
        if not (methods and schedules):
            raise ConfigError("choose at least one method and schedule")
        missing = datasets.unavailable(dataset)
        if missing:
            raise ConfigError(missing)
        configs = sweep_grid(base.replace(model=model, dataset=dataset, epochs=epochs),
                             {"method": methods, "schedule": schedules, "sparsity": sparsities,
                              "seed": seeds})
    except ConfigError as exc:
        st.error(md(f"Cannot start this sweep: {exc}"))
        return None
    st.session_state["to-sw-measure"] = measure
    return configs


def sweep() -> None:
    st.subheader("Sweep")
    st.markdown("Train one run per combination below to draw a trade-off curve, as many at "
                "once as the machine has cores (a sweep on Ray; one after another where Ray is "
                "not available). The page stays usable while it trains; Stop ends the runs "
                "after their current step (finished runs are kept).")
    sweep_controls()
    live.show_job(SLOT, show_curves=True)


@st.fragment
def sweep_controls() -> None:
    """The sweep's grid and its Start button. A fragment: choosing in the grid reruns only
    this part, not the charts above (grouping 1,000 runs for them takes most of a rerun);
    Start reruns the whole page to show the sweep's live panel."""
    configs = sweep_form()
    running = live.slot_running(SLOT)
    if configs:
        st.caption(f"{len(configs)} run(s) of {configs[0].epochs} epoch(s) each.")
    if st.button("Start sweep", type="primary", key="to-sweep", disabled=not configs or running):
        live.start_job(SLOT, configs, measure_latency=st.session_state.get("to-sw-measure", True))


def main() -> None:
    page.page_setup("Trade-offs", "What does sparsity cost in accuracy, and what does it buy in "
                                    "FLOPs and measured latency? Every finished run is a dot; the "
                                    "Pareto front joins the best ones, where they differ by more than the noise.")
    runs = pickers.finished_runs()
    if runs:
        frame = pickers.runs_frame(runs)
        frame["schedule"] = [schedule_of(m, s) for m, s in zip(frame["method"], frame["schedule"])]
        frame = filtered(frame)
        if frame.empty:
            st.info("No run matches these filters; widen them above.")
        else:
            kept = set(frame["id"])
            views([r for r in runs if r.id in kept])
    else:
        st.info("No finished runs yet. Start the sweep below (the default grid trains the "
                "default session dense and at seven sparsities up to 0.995, three seeds each) "
                "or run the default session from the home page; each finished run becomes a "
                "dot here.")
    sweep()


main()
