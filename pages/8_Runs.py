"""Runs page: what is training now (with Stop), the history of every run, two or more compared
side by side, one run's full report with its export files (masked weights .pt, compact model,
ONNX, metrics CSV), rename and delete.

Everything is read back from the store; export files are produced only when their download button
is clicked (``st.download_button`` with a callable), so opening the page costs nothing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from pruning.export import export_run, metrics_csv
from pruning.results import METRICS
from pruning.store import Run
from ui import formatting, live, page, pickers, report, state
from pruning.methods import target_text
from ui.charts import sparsity
from ui.charts.style import schedule_of
from ui.safe_text import md

#: the history's columns: the run's identity and settings, then every ``list`` metric of
#: pruning.results.METRICS (labels, formats and help come from there), then when it started
CONFIG_COLUMNS = {
    "id": "run id", "name": "name", "status": "status", "model": "model", "dataset": "dataset",
    "method": "method", "schedule": "schedule",
    "target_text": st.column_config.TextColumn(
        "target", width="medium", help="What the method was asked to reach: a mask sparsity for the scheduled "
                       "methods, a keep ratio or density for those that read one instead."),
}


def history_columns() -> dict:
    return {**CONFIG_COLUMNS, **formatting.metric_columns("list"), "created": "started"}


#: the comparison's first rows, from the runs' settings; every ``detail`` metric follows
IDENTITY_ROWS = {
    "status": lambda run: run.status,
    "model · dataset": lambda run: f"{run.config.model} · {run.config.dataset}",
    "method · schedule": lambda run: (f"{run.config.method} · "
                                      f"{schedule_of(run.config.method, run.config.schedule)}"),
    "target": lambda run: target_text(run.config),
}


def summary_table(runs: list[Run]) -> pd.DataFrame:
    """Metrics as rows, runs as columns (the side-by-side comparison)."""
    metrics = METRICS.view("detail")
    table = {pickers.run_title(run): [row(run) for row in IDENTITY_ROWS.values()]
             + [m.text(m.value(formatting.shown_summary(run))) for m in metrics] for run in runs}
    return pd.DataFrame(table, index=list(IDENTITY_ROWS) + [m.label for m in metrics])


#: runs per page of the history table (a page is what the browser receives and draws)
HISTORY_PAGE = 50


def history(runs: list[Run]) -> None:
    statuses = sorted({r.status for r in runs})
    filter_col, page_col = st.columns([4, 1])
    chosen = state.linked(filter_col.multiselect, "status", statuses, default=statuses,
                          key="runs-status", param="status", codec=state.choices(statuses))
    shown = [r for r in runs if r.status in chosen]
    if not shown:
        st.caption("No run has the chosen status.")
        return
    pages = (len(shown) + HISTORY_PAGE - 1) // HISTORY_PAGE
    number = page_col.number_input("page", min_value=1, max_value=pages, value=1, step=1,
                                   key="runs-page", help=f"{HISTORY_PAGE} runs per page")
    shown = shown[(int(number) - 1) * HISTORY_PAGE:int(number) * HISTORY_PAGE]
    frame = pickers.runs_frame(shown)
    frame["created"] = frame["created"].map(formatting.fmt_time)
    frame["name"] = [r.name or "" for r in shown]
    config = history_columns()
    columns = [c for c in config if c in frame and (c != "name" or frame[c].any())]
    st.dataframe(frame[columns], hide_index=True, width="stretch",
                 column_config={k: v for k, v in config.items() if k in columns})
    total = sum(r.status in chosen for r in runs)
    where = f"page {int(number)} of {pages}, " if pages > 1 else ""
    st.caption(f"{total} run(s), {where}newest first. Target = what the method was asked to "
               "reach (a sparsity, or its keep ratio or density); sparsity "
               "= zeros among prunable weights under the mask, or the fraction of parameters "
               "removed for methods without a mask (i-SpaSP, SSC); effective = share of all "
               "parameters removable.")


def compare(runs: list[Run]) -> None:
    finished = [r for r in runs if r.status in ("done", "stopped")]
    if len(finished) < 2:
        live.empty_state("Comparing needs two finished runs. Train the default session "
                           "(again with another seed or schedule on the Run page).",
                           key="runs-compare")
        return
    chosen = pickers.runs_picker("runs to compare", finished, key="runs-compare-pick",
                                default=state.chosen_runs("compare"), param="compare")
    state.set_chosen_runs("compare", [r.id for r in chosen])
    if len(chosen) < 2:
        st.info("Choose at least two runs to compare.")
        return
    table = summary_table(chosen)
    st.dataframe(table, width="stretch", height=35 * (len(table) + 1) + 3)  # no inner scroll
    st.caption("The chosen runs side by side: accuracy, the three sparsities, parameters, FLOPs "
               "and measured latency.")
    report.seed_curves(chosen, key="runs-compare-curves",
                       what="Test accuracy and sparsity over epochs; runs that differ only in "
                            "their seed are averaged into one line with a band of ± one standard "
                            "deviation ({seeds}).")
    report.verdicts(chosen, "Differences in final test accuracy in words")
    labels = {r.id: pickers.run_title(r) for r in chosen}
    st.plotly_chart(sparsity.sparsity_bars({labels[r.id]: formatting.shown_summary(r)
                                            for r in chosen}),
                    key="runs-compare-sparsity")
    st.caption("Target vs mask vs effective sparsity, and the share of parameters zero and of "
               "FLOPs skipped or removed, per run.")


def _export_bytes(run_id: str, kind: str):
    """A callable for st.download_button: builds one export file when the button is clicked."""
    def build() -> bytes:
        store = page.store()
        if kind == "metrics":
            return metrics_csv(store, run_id).encode()
        with tempfile.TemporaryDirectory(prefix="pruning-export-") as tmp:
            paths = export_run(store, run_id, tmp, onnx=kind == "onnx", compact=kind != "weights")
            return Path(paths[kind]).read_bytes()
    return build


def details(runs: list[Run]) -> None:
    run = pickers.run_picker("run", runs, key="runs-detail-pick", param="details")
    if run is None:
        return
    report.run_report(run, key="runs-detail")
    st.markdown("**Export**")
    has_model = page.store().model_path(run.id).exists()
    has_model = has_model and not page.store().missing_files(run.id, run.status)
    cols = st.columns(4)
    cols[0].download_button("Metrics (CSV)", _export_bytes(run.id, "metrics"),
                            file_name=f"run-{run.id}-metrics.csv", mime="text/csv",
                            key="export-metrics", on_click="ignore")
    for col, kind, label, suffix in ((cols[1], "weights", "Pruned weights (.pt)", "-weights.pt"),
                                     (cols[2], "compact", "Compact model (.pt)", "-compact.pt"),
                                     (cols[3], "onnx", "ONNX (compact)", ".onnx")):
        col.download_button(label, _export_bytes(run.id, kind), file_name=f"run-{run.id}{suffix}",
                            mime="application/octet-stream", key=f"export-{kind}",
                            on_click="ignore", disabled=not has_model,
                            help=None if has_model else "this run's model or mask files are "
                                                         "missing (see above), or it did not "
                                                         "finish")
    st.caption("Weights: the masked state_dict (torch.load(..., weights_only=True)). Compact: "
               "the model with empty channels cut out. ONNX: the compact model, batch dimension "
               "dynamic. CSV: one row per epoch, per-layer sparsity in columns.")


def manage(runs: list[Run]) -> None:
    run = pickers.run_picker("run", runs, key="runs-manage-pick", param="manage")
    if run is None:
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    name = c1.text_input("name", value=run.name or "", key=f"runs-name-{run.id}",
                         help=f"Leave empty for the automatic label: {md(run.label())}")
    if c2.button("Rename", key="runs-rename"):
        with page.user_errors():
            page.store().rename_run(run.id, name.strip() or None)
            st.rerun()
    st.divider()
    confirm = st.checkbox(f"I want to delete run {run.id} and its files", key=f"runs-del-ok-{run.id}")
    if st.button("Delete run", key="runs-delete", disabled=not confirm or run.status == "running",
                 help="running runs cannot be deleted; stop them first"):
        with page.user_errors():
            page.store().delete_run(run.id)
            st.toast(f"Deleted run {run.id}")
            st.rerun()


def main() -> None:
    page.page_setup("Runs", "What is training now, and every run in the store: its history, "
                              "a side-by-side comparison, the full report of one run with its "
                              "export files, and clean-up.")
    if live.manager().running():
        st.subheader("Running now")
        live.running_jobs(key="runs-running")
    runs = page.runs()
    if not runs:
        live.empty_state("No runs yet. Train the default session (a few seconds on a CPU) "
                           "and it will appear here.", key="runs")
        return
    tabs = state.linked_tabs(["History", "Compare", "Details & export", "Rename / delete"],
                             key="runs-tab", param="tab")
    for tab, draw in zip(tabs, (history, compare, details, manage)):
        if state.is_open(tab):
            with tab:
                draw(runs)


main()
