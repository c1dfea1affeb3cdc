"""The speed lab: latency and speed-up of the four forms of a pruned model (dense, masked dense,
sparse kernels, physically pruned) across batch sizes, and where CSR starts to beat dense.

The measurements come from ``pruning.speedlab``; here they become frames and figures.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go

from ui.charts.style import empty_figure, style, value_axis

# The four forms of the speed lab (pruning.speedlab.FORMS) and how the page names them.
FORM_LABELS = {"dense": "dense", "masked": "masked dense", "sparse": "sparse kernels",
               "physical": "physically pruned"}
FORM_COLORS = {"dense": "#999999", "masked": "#1f3b73", "sparse": "#e69f00", "physical": "#009e73"}


FORMS_COLUMNS = ("form", "label", "batch_size", "median_ms", "p90_ms", "ms_per_image", "params",
                 "flops", "theoretical_speedup", "measured_speedup", "repeats", "explanation")


def forms_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``speedlab.four_forms`` rows → frame with a readable ``label`` and ms per image."""
    records = []
    for r in rows:
        records.append({**{k: r.get(k) for k in FORMS_COLUMNS if k in r},
                        "label": FORM_LABELS.get(r["form"], r["form"]),
                        "ms_per_image": float(r["median_ms"]) / int(r["batch_size"])})
    return pd.DataFrame(records, columns=list(FORMS_COLUMNS))


def forms_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table the page shows: one row per form and batch size, units in the headers."""
    return pd.DataFrame({
        "form": frame["label"], "batch": frame["batch_size"],
        "median (ms / batch)": frame["median_ms"].round(3), "p90 (ms / batch)": frame["p90_ms"].round(3),
        "parameters": frame["params"], "MFLOPs / image": (frame["flops"] / 1e6).round(3),
        "theoretical ×": frame["theoretical_speedup"].round(2),
        "measured ×": frame["measured_speedup"].round(2)})


def noisy_share(frame: pd.DataFrame, spread: float = 2.0) -> float:
    """Share of measurements whose 90th percentile exceeds ``spread`` × the median: a sign that
    something else was using the machine and the speed-ups are not to be trusted."""
    if frame.empty:
        return 0.0
    return float((frame["p90_ms"] > spread * frame["median_ms"]).mean())


def _form_lines(fig: go.Figure, frame: pd.DataFrame, y: str, *, dash: str | None = None,
                suffix: str = "", showlegend: bool = True, hover: str) -> None:
    for form, group in frame.groupby("form", sort=False):
        group = group.sort_values("batch_size")
        fig.add_trace(go.Scatter(
            x=group["batch_size"], y=group[y], mode="lines+markers", name=FORM_LABELS.get(form, form) + suffix,
            legendgroup=form, showlegend=showlegend,
            line=dict(color=FORM_COLORS.get(form), dash=dash),
            hovertemplate="batch %{x}: " + hover + "<extra>%{fullData.name}</extra>"))


def latency_figure(frame: pd.DataFrame) -> go.Figure:
    """Median latency per image of each form across batch sizes (log-log)."""
    if frame.empty:
        return empty_figure("nothing measured yet", height=220)
    fig = go.Figure()
    _form_lines(fig, frame, "ms_per_image", hover="%{y:.3g} ms per image")
    fig.update_xaxes(title_text="batch size (images, log scale)", type="log",
                     tickvals=sorted(frame["batch_size"].unique()))
    value_axis(fig, frame["ms_per_image"], "latency per image (ms)")
    return style(fig, legend_title="form")


def speedup_figure(frame: pd.DataFrame) -> go.Figure:
    """Measured speed-up over dense (solid) against the FLOPs-based theoretical one (dashed)."""
    if frame.empty:
        return empty_figure("nothing measured yet", height=220)
    shown = frame[frame["form"] != "dense"]
    fig = go.Figure()
    _form_lines(fig, shown, "measured_speedup", suffix=" — measured", hover="%{y:.2f}×")
    _form_lines(fig, shown, "theoretical_speedup", dash="dash", suffix=" — FLOPs ratio",
                hover="%{y:.2f}× in theory")
    fig.add_hline(y=1.0, line=dict(color="#666", width=1), annotation_text="as fast as dense",
                  annotation_position="bottom right")
    fig.update_xaxes(title_text="batch size (images, log scale)", type="log",
                     tickvals=sorted(frame["batch_size"].unique()))
    value_axis(fig, pd.concat([shown["measured_speedup"], shown["theoretical_speedup"], pd.Series([1.0])]),
                "speed-up over dense (×)")
    return style(fig, height=420, legend_title="")


def speedlab_inputs(store, run) -> tuple[Any, Any, tuple[int, int, int]]:
    """(final model on CPU, final mask or None, input shape (C, H, W)) of a finished run.

    The mask is the run's last snapshot; methods that changed the architecture (i-SpaSP, SSC)
    store none, and their model already is the pruned network.
    """
    from pruning import data

    model = store.load_model(run.id)
    snapshots = store.snapshots(run.id)
    mask = store.load_snapshot(run.id, snapshots[-1]["step"]) if snapshots else None
    channels, size, _ = data.dataset_shape(run.config)
    return model, mask, (channels, size, size)


def crossover_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """``speedlab.csr_crossover`` result → sparsity, dense_ms, csr_ms, speedup."""
    return pd.DataFrame({"sparsity": result["sparsities"], "dense_ms": result["dense_ms"],
                         "csr_ms": result["csr_ms"], "speedup": result["speedup"]})


def crossover_figure(result: Mapping[str, Any]) -> go.Figure:
    """Dense vs CSR time of one Linear layer as sparsity grows, and where CSR starts to win."""
    frame = crossover_frame(result)
    if frame.empty:
        return empty_figure("nothing measured yet", height=220)
    fig = go.Figure()
    for column, name, color in (("dense_ms", "dense matmul", FORM_COLORS["dense"]),
                                ("csr_ms", "CSR sparse matmul", FORM_COLORS["sparse"])):
        fig.add_trace(go.Scatter(x=frame["sparsity"], y=frame[column], mode="lines+markers",
                                 name=name, line=dict(color=color),
                                 hovertemplate="%{x:.0%} sparse: %{y:.3g} ms<extra>%{fullData.name}</extra>"))
    crossover = result.get("crossover")
    if crossover is not None:
        fig.add_vline(x=crossover, line=dict(color="#333", dash="dash"),
                      annotation_text=f"CSR wins from ~{crossover:.0%}", annotation_position="top left")
    fig.update_xaxes(title_text="sparsity of the weight (% zeros)", tickformat=".0%")
    value_axis(fig, pd.concat([frame["dense_ms"], frame["csr_ms"]]), "time per call (ms)")
    return style(fig, legend_title="")
