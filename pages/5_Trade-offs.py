"""Trade-offs page: accuracy against sparsity, FLOPs and measured latency for every finished run,
with the Pareto front (the runs no other run beats on both axes), filterable by model, dataset,
method and schedule; and a sweep over sparsities (and methods, schedules, seeds) started from the
page, trained one run after another in a background job.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pruning.compare import TRADEOFF_SWEEP
from pruning.config import ConfigError, RunConfig
from pruning.data import DATASETS
from pruning.methods import METHODS
from pruning.models import MODELS
from pruning.schedules import SCHEDULES
from pruning.validation import parse_sweep_list, sweep_grid
from ui import datasets, live, page, pickers, state
from ui.charts import tradeoffs
from ui.safe_text import md

SLOT = "tradeoffs"
FILTERS = (("model", "model"), ("dataset", "dataset"), ("method", "method"),
           ("schedule", "schedule"))
HOVER = ["label", "method", "schedule", "target", "seed", "epochs"]

#: (tab title, x column, axis title, higher x is better, percent axis, log axis, caption)
VIEWS = (
    ("Accuracy vs sparsity", "sparsity", "sparsity (% of weights zero, or removed)", True,
     True, False, "Each dot is a finished run: how accurate it is at the sparsity its mask "
                  "reached (for i-SpaSP and SSC, which remove weights instead of masking them: "
                  "the fraction of parameters removed). The dotted line links the Pareto front (no run is both sparser and "
                  "more accurate)."),
    ("Accuracy vs FLOPs", "mflops", "FLOPs under the mask (M per image, log scale)", False, False,
     True, "Accuracy against the multiply-accumulates that the mask leaves (zeros skipped); "
           "the front joins the runs that no cheaper run beats."),
    ("Accuracy vs latency", "latency_ms", "measured latency (ms per batch, compact model)", False,
     False, False, "Accuracy against the measured latency of the physically compacted model on "
                   "this machine; unstructured zeros do not make it faster, removed channels do."),
)


def filtered(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The filter row; returns the runs that pass and the column to colour by."""
    top, bottom = st.columns(3), st.columns(2)
    cols = [top[0], top[1], bottom[0], bottom[1], top[2]]  # the long lists get wide boxes
    for col, (column, label) in zip(cols, FILTERS):
        options = sorted(frame[column].dropna().unique())
        chosen = state.linked(col.multiselect, label, options, default=options,
                              key=f"to-filter-{column}", param=column,
                              codec=state.choices(options))
        frame = frame[frame[column].isin(chosen)]
    colours = ["method", "schedule", "model", "dataset", "granularity"]
    color = state.linked(cols[-1].selectbox, "colour by", colours, key="to-color",
                         param="colour", codec=state.choice(colours))
    return frame, color


def views(frame: pd.DataFrame, color: str) -> None:
    frame = frame.assign(mflops=frame.get("flops", pd.Series(dtype=float)) / 1e6)
    tabs = state.linked_tabs([v[0] for v in VIEWS], key="to-view", param="view")
    for tab, (title, x, x_title, higher, pct, log, text) in zip(tabs, VIEWS):
        with tab:
            if x not in frame or frame[x].isna().all():
                st.info(f"No run in this selection has {x_title.split('(')[0].strip()}; runs "
                        "started with latency measurement off have no latency.")
                continue
            symbol = "schedule" if color != "schedule" else "method"
            st.plotly_chart(
                tradeoffs.tradeoff_scatter(frame, x, "test_acc", x_title=x_title, color=color,
                                        symbol=symbol, hover=[h for h in HOVER if h in frame],
                                        x_higher_better=higher, x_percent=pct, log_x=log),
                key=f"to-{x}")
            page.caption(text)
            front = tradeoffs.pareto_front(frame, x, "test_acc", x_higher_better=higher)
            with st.expander(f"Runs on the Pareto front ({len(front)})"):
                show = front[[c for c in ("label", x, "test_acc", "method", "schedule") if c in front]]
                st.dataframe(show, hide_index=True, width="stretch")


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
    st.markdown("Train one run per combination below, one after another, to draw a trade-off "
                "curve. The page stays usable while it trains; Stop ends it after the current "
                "step (finished runs are kept).")
    configs = sweep_form()
    running = live.slot_running(SLOT)
    if configs:
        st.caption(f"{len(configs)} run(s) of {configs[0].epochs} epoch(s) each.")
    if st.button("Start sweep", type="primary", key="to-sweep", disabled=not configs or running):
        live.start_job(SLOT, configs, measure_latency=st.session_state.get("to-sw-measure", True))
    live.show_job(SLOT, show_curves=True)


def main() -> None:
    page.page_setup("Trade-offs", "What does sparsity cost in accuracy, and what does it buy in "
                                    "FLOPs and measured latency? Every finished run is a dot; the "
                                    "Pareto front joins the best ones.")
    runs = pickers.finished_runs()
    if runs:
        frame = pickers.runs_frame(runs)
        frame, color = filtered(frame)
        if frame.empty:
            st.info("No run matches these filters; widen them above.")
        else:
            views(frame, color)
    else:
        st.info("No finished runs yet. Start the sweep below (the default grid trains the "
                "default session dense and at seven sparsities up to 0.995, three seeds each) "
                "or run the default session from the home page; each finished run becomes a "
                "dot here.")
    sweep()


main()
