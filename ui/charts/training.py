"""Curves over training: test accuracy and sparsity per epoch, one colour per run."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.charts.style import HEIGHT, PALETTE, color_map, empty_figure, line_chart, style


def training_curves(epochs: pd.DataFrame, run: str | None = None, *, height: int = HEIGHT,
                    accuracy_title: str = "Test accuracy",
                    sparsity_title: str = "Sparsity") -> go.Figure:
    """Test accuracy (left) and sparsity (right) over epochs, one colour per run.

    ``epochs`` holds epoch rows (store.epochs) with columns epoch, test_acc, target_sparsity,
    mask_sparsity and, for several runs overlaid, a ``run`` column (or pass ``run`` to name the
    column that labels runs). Target sparsity is dashed, mask sparsity solid.
    """
    if epochs.empty:
        return empty_figure("no epochs recorded yet")
    run_col = run or ("run" if "run" in epochs.columns else None)
    frame = epochs.copy()
    if run_col is None:
        run_col = "_run"
        frame[run_col] = "this run"
    colors = color_map(frame[run_col])
    several = len(colors) > 1
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(accuracy_title, sparsity_title))
    for label, group in frame.groupby(run_col, sort=False):
        group = group.sort_values("epoch")
        color = colors[label]
        name = str(label) if several else "test accuracy"
        fig.add_trace(go.Scatter(x=group["epoch"], y=group["test_acc"], mode="lines+markers",
                                 name=name, legendgroup=str(label), line=dict(color=color),
                                 hovertemplate="epoch %{x}<br>accuracy %{y:.1%}<extra>"
                                               + str(label) + "</extra>"),
                      row=1, col=1)
        if "target_sparsity" in group and group["target_sparsity"].notna().any():
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["target_sparsity"], mode="lines",
                                     name=f"{label} target" if several else "target sparsity",
                                     legendgroup=str(label), showlegend=not several,
                                     # wide and light, so it shows behind the mask's
                                     # line where the mask meets its target
                                     line=dict(color=color if several else "#aaa", dash="dash",
                                               width=2 if several else 4),
                                     hovertemplate="epoch %{x}<br>target %{y:.1%}<extra>"
                                                   + str(label) + "</extra>"),
                          row=1, col=2)
        if "mask_sparsity" in group and group["mask_sparsity"].notna().any():
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["mask_sparsity"],
                                     mode="lines+markers",
                                     name=f"{label} mask" if several else "mask sparsity",
                                     legendgroup=str(label), showlegend=not several,
                                     line=dict(color=color if several else PALETTE[1]),
                                     hovertemplate="epoch %{x}<br>mask %{y:.1%}<extra>"
                                                   + str(label) + "</extra>"),
                          row=1, col=2)
    style(fig, height=height)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="test accuracy (%)", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="sparsity (% of weights zero)", tickformat=".0%",
                     range=[0, 1.02], row=1, col=2)
    # subplot titles sit at the top edge; leave room for the legend above them
    # traceorder "normal": one row of legend entries (grouped legends stack vertically)
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.12, traceorder="normal"))
    return fig


def metric_overlay(epochs: pd.DataFrame, metric: str, *, run: str = "run", y_title: str,
                   y_percent: bool = True, title: str | None = None,
                   height: int = HEIGHT) -> go.Figure:
    """One epoch metric (e.g. test_acc) for several runs overlaid, one colour per run."""
    frame = epochs.dropna(subset=[metric]) if metric in epochs else epochs.iloc[0:0]
    return line_chart(frame, "epoch", metric, run, x_title="epoch", y_title=y_title,
                      y_percent=y_percent, title=title, height=height)


#: columns of a live-curve frame (``JobProgress.curve`` points)
LIVE_COLUMNS = ("step", "loss", "train_acc", "mask_sparsity", "target_sparsity")


def live_curves(points: pd.DataFrame, *, height: int = HEIGHT) -> go.Figure:
    """The run in progress, per optimizer step: running training loss, running training accuracy
    (smoothed batch accuracy) and sparsity (mask solid, schedule's target dashed).

    ``points`` has the ``LIVE_COLUMNS``; its few hundred rows are what the browser redraws at
    each refresh, so the figure stays small however long the run.
    """
    if points.empty:
        return empty_figure("no training steps yet")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("Training loss (running)", "Training accuracy (running)",
                                        "Sparsity"))
    series = (("loss", 1, PALETTE[0], "solid", "loss %{y:.3f}"),
              ("train_acc", 2, PALETTE[0], "solid", "accuracy %{y:.1%}"),
              ("target_sparsity", 3, "#aaa", "dash", "target %{y:.1%}"),
              ("mask_sparsity", 3, PALETTE[1], "solid", "mask %{y:.1%}"))
    for column, col, color, dash, hover in series:
        if column not in points or points[column].isna().all():
            continue
        fig.add_trace(go.Scatter(x=points["step"], y=points[column], mode="lines",
                                 name=column.replace("_", " "),
                                 line=dict(color=color, dash=dash),
                                 hovertemplate="step %{x}<br>" + hover + "<extra></extra>"),
                      row=1, col=col)
    style(fig, height=height)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=3)
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.12, traceorder="normal"))
    return fig
