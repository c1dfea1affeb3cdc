"""What the app says about one run and one method: a run's report (status, metric tiles,
curves, sparsities, per-layer bars, configuration) and a registered method's description."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pruning.results import time_breakdown_text
from pruning.store import Run, RunStore
from ui import forms
from ui.charts.layers import layer_bars
from ui.charts.sparsity import sparsity_bars
from ui.charts.training import training_curves
from ui.formatting import metric_tiles
from ui.page import caption, store
from ui.safe_text import md


def run_report(run: Run, *, key: str, store_: RunStore | None = None,
               curves: bool = True) -> None:
    """A run's result: status, the sparsities and ratios side by side, curves, per-layer bars."""
    store_ = store_ or store()
    s = run.summary
    if run.status == "failed":
        st.error(md(f"This run failed: {(run.error or 'no reason recorded').splitlines()[0]}"))
    elif run.status == "stopped":
        st.warning(f"This run was stopped after {s.get('epochs_done', 0)} epoch(s); "
                   "its history up to then is kept.")
    elif run.status == "running":
        st.info("This run is still training; its history so far is shown.")
    missing = store_.missing_files(run.id, run.status)
    if missing:
        st.warning(md(f"Run {run.id}'s files are incomplete: {', '.join(missing[:5])}"
                      f"{' …' if len(missing) > 5 else ''} missing in {store_.run_dir(run.id)}. "
                      f"Its history and summary below are intact; what needs those files "
                      f"(mask pictures, export) cannot be made for it."))
    metric_tiles(s, "detail")
    if s.get("latency_device"):
        caption(f"Latency: median over batches of {s.get('latency_batch_size', '–')} on "
                f"{s['latency_device']}, the final model after physical removal.")
    where_time_went = time_breakdown_text(s)
    if where_time_went:
        caption(f"Where the time went: {where_time_went}.")
    rows = store_.epochs(run.id)
    if curves and rows:
        st.plotly_chart(training_curves(pd.DataFrame(rows)), key=f"{key}-curves")
        caption("Test accuracy (left) and sparsity (right) after each epoch: dashed = the "
                "schedule's target, solid = the mask's actual sparsity.")
    if s:
        left, right = st.columns(2)
        with left:
            st.plotly_chart(sparsity_bars({run.label(): s}, height=340),
                            key=f"{key}-sparsity")
            caption("Three sparsities side by side (target, mask, effective), then the share of "
                    "all parameters that are zero and of FLOPs skipped or removed.")
        layers = next((r["layer_sparsity"] for r in reversed(rows) if r.get("layer_sparsity")),
                      None)
        with right:
            if layers:
                st.plotly_chart(layer_bars(layers, title=None), key=f"{key}-layers")
                caption("Final sparsity of each prunable layer, input side on top: a global "
                        "criterion lets layers differ, a layerwise one prunes each equally.")
    with st.expander("Configuration and command line"):
        st.code(forms.cli_command(run.config), language="bash")
        st.json(run.config.to_dict(), expanded=False)


def method_description(name: str) -> str:
    """The registered method's description (paper, rule and interpretation notes), or ''."""
    from pruning.methods import METHODS

    return METHODS.entry(name).description if name in METHODS else ""
