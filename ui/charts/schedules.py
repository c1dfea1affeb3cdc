"""Schedules: target sparsity over training progress, one line per schedule, drawn with the
schedule's own dash and marker (``style.schedule_dash``), as on every other chart."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ui.charts.style import HEIGHT, empty_figure, schedule_dash, schedule_symbol, style


def schedule_curves(curves: pd.DataFrame, *, height: int = HEIGHT,
                    title: str | None = None) -> go.Figure:
    """Target sparsity over training progress, one line per schedule.

    ``curves`` has columns progress (0..1), target (0..1) and schedule.
    """
    if curves.empty:
        return empty_figure("no data yet")
    fig = go.Figure()
    for name, group in curves.groupby("schedule", sort=False):
        marks = group.iloc[:: max(1, len(group) // 10)]  # a few markers name the line in print
        fig.add_trace(go.Scatter(
            x=group["progress"], y=group["target"], mode="lines", name=str(name),
            legendgroup=str(name), line=dict(color="#333", dash=schedule_dash(name), width=2.5),
            hovertemplate="progress %{x:.0%}: target %{y:.1%}<extra>%{fullData.name}</extra>"))
        fig.add_trace(go.Scatter(
            x=marks["progress"], y=marks["target"], mode="markers", legendgroup=str(name),
            showlegend=False, hoverinfo="skip",
            marker=dict(symbol=schedule_symbol(name), size=8, color="#333")))
    style(fig, x_title="training progress (% of steps)", y_title="target sparsity (%)",
          x_percent=True, title=title, height=height, legend_title="")
    fig.update_xaxes(range=[0, 1.0], dtick=0.2)
    fig.update_yaxes(range=[0, 1.02], dtick=0.2, tickformat=".0%")
    return fig
