"""Curves over training: test accuracy and sparsity per epoch, one line per run or per group of
runs that differ only in their seed (mean over the seeds, with a band of ± one standard
deviation and n in the legend)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, unlabel_rgb
from plotly.subplots import make_subplots

from ui.charts.style import (HEIGHT, accuracy_axis, color_map, empty_figure, run_color,
                             schedule_dash, schedule_symbol, style)

#: the curves' values, averaged over a group's seeds per epoch
VALUES = ("test_acc", "target_sparsity", "mask_sparsity")


def rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` or ``rgb(r, g, b)`` → ``rgba(r, g, b, alpha)`` (bands behind lines)."""
    r, g, b = (hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color))
    return f"rgba({r}, {g}, {b}, {alpha})"


def group_styles(frame: pd.DataFrame, group: str) -> dict[str, tuple[str, str, str]]:
    """{group: (colour, dash, marker)}: the method's colour and the schedule's dash and marker
    when the frame says them (``method``, ``schedule`` columns) and they tell the groups apart;
    otherwise one colour per group, solid, circles."""
    groups = list(dict.fromkeys(frame[group]))
    if {"method", "schedule"} <= set(frame.columns):
        first = frame.drop_duplicates(group).set_index(group)
        pairs = {g: (first.at[g, "method"], first.at[g, "schedule"]) for g in groups}
        if len(set(pairs.values())) == len(groups):
            return {g: (run_color(m, s), schedule_dash(s), schedule_symbol(s))
                    for g, (m, s) in pairs.items()}
    colors = color_map(groups)
    return {g: (colors[g], "solid", "circle") for g in groups}


def seed_means(frame: pd.DataFrame, group: str) -> pd.DataFrame:
    """Per group and epoch: mean, std and n of each value over the group's runs."""
    present = [v for v in VALUES if v in frame]
    stats = frame.groupby([group, "epoch"], sort=False)[present].agg(["mean", "std", "count"])
    stats.columns = [f"{v}_{s}" for v, s in stats.columns]
    return stats.reset_index().sort_values([group, "epoch"], kind="stable")


def training_curves(epochs: pd.DataFrame, run: str | None = None, *, group: str | None = None,
                    height: int = HEIGHT, accuracy_title: str = "Test accuracy",
                    sparsity_title: str = "Sparsity") -> go.Figure:
    """Test accuracy (left) and sparsity (right) over epochs.

    ``epochs`` holds epoch rows (store.epochs) with columns epoch, test_acc, target_sparsity,
    mask_sparsity and, for several runs, a ``run`` column (or pass ``run`` to name the column
    that labels runs). With ``group`` (a column), the runs of a group (seeds of one setting) are
    averaged: a line for the mean, a band of ± one standard deviation, n in the legend. Colour,
    dash and marker follow the method and schedule (``method``/``schedule`` columns) where
    those tell the lines apart. The schedule's target is a thin line drawn over the mask's
    actual sparsity (a wide pale line), so both stay visible where they meet.
    """
    if epochs.empty:
        return empty_figure("no epochs recorded yet")
    frame = epochs.copy()
    run_col = run or ("run" if "run" in frame.columns else None)
    if run_col is None:
        run_col = "_run"
        frame[run_col] = "this run"
    group = group or run_col
    styles = group_styles(frame, group)
    stats = seed_means(frame, group)
    several = len(styles) > 1
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(accuracy_title, sparsity_title))
    for label, g in stats.groupby(group, sort=False):
        color, dash, symbol = styles[label]
        n = int(g["test_acc_count"].max()) if "test_acc_count" in g else 1
        name = (str(label) if several else "test accuracy") + (f" (mean of {n} seeds)" if n > 1 else "")
        tag = f"<extra>{label}</extra>"
        if n > 1:
            upper = g["test_acc_mean"] + g["test_acc_std"].fillna(0.0)
            lower = g["test_acc_mean"] - g["test_acc_std"].fillna(0.0)
            fig.add_trace(go.Scatter(
                x=list(g["epoch"]) + list(g["epoch"])[::-1],
                y=list(upper.clip(upper=1.0)) + list(lower.clip(lower=0.0))[::-1],
                fill="toself", fillcolor=rgba(color, 0.15), line=dict(color=color, width=0),
                hoverinfo="skip", showlegend=False, legendgroup=str(label),
                name=f"{label} ± 1 std"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=g["epoch"], y=g["test_acc_mean"], mode="lines+markers", name=name,
            legendgroup=str(label), line=dict(color=color, dash=dash, width=2.5),
            marker=dict(symbol=symbol, size=10, line=dict(width=1, color="white")),
            hovertemplate="epoch %{x}<br>accuracy %{y:.1%}" + (f" (mean of {n})" if n > 1 else "")
                          + tag), row=1, col=1)
        if "mask_sparsity_mean" in g and g["mask_sparsity_mean"].notna().any():
            fig.add_trace(go.Scatter(
                x=g["epoch"], y=g["mask_sparsity_mean"], mode="lines",
                name=f"{label} mask" if several else "mask sparsity (wide)",
                legendgroup=str(label), showlegend=not several,
                line=dict(color=color, width=7), opacity=0.35,
                hovertemplate="epoch %{x}<br>mask %{y:.1%}" + tag), row=1, col=2)
        if "target_sparsity_mean" in g and g["target_sparsity_mean"].notna().any():
            # drawn after the mask, thin and dark, so it shows where the mask meets its target
            fig.add_trace(go.Scatter(
                x=g["epoch"], y=g["target_sparsity_mean"], mode="lines+markers",
                name=f"{label} target" if several else "target sparsity (thin)",
                legendgroup=str(label), showlegend=not several,
                line=dict(color=color, width=1.5, dash=dash), marker=dict(size=5, symbol=symbol),
                hovertemplate="epoch %{x}<br>target %{y:.1%}" + tag), row=1, col=2)
    style(fig, height=height)
    fig.update_xaxes(title_text="epoch")
    bands = stats["test_acc_std"].fillna(0.0) if "test_acc_std" in stats else ()
    accuracy_axis(fig, stats["test_acc_mean"], bands, row=1, col=1)
    fig.update_yaxes(title_text="sparsity (% of weights zero)", tickformat=".0%",
                     range=[0, 1.02], row=1, col=2)
    # subplot titles sit at the top edge; leave room for the legend above them
    # traceorder "normal": one row of legend entries (grouped legends stack vertically)
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.12, traceorder="normal"))
    return fig


#: the caption's words for the sparsity panel's two lines
SPARSITY_LINES = ("thin line = the schedule's target, wide pale line = the mask's actual "
                  "sparsity")
