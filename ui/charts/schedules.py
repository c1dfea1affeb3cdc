"""Schedules: target sparsity over training progress, one line per schedule."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ui.charts.style import HEIGHT, line_chart


def schedule_curves(curves: pd.DataFrame, *, height: int = HEIGHT,
                    title: str | None = None) -> go.Figure:
    """Target sparsity over training progress, one line per schedule.

    ``curves`` has columns progress (0..1), target (0..1) and schedule.
    """
    fig = line_chart(curves, "progress", "target", "schedule", markers=False,
                     x_title="training progress (% of steps)", y_title="target sparsity (%)",
                     x_percent=True, y_percent=True, title=title, height=height)
    fig.update_xaxes(range=[0, 1.0], dtick=0.2)
    fig.update_yaxes(range=[0, 1.02], dtick=0.2)
    return fig
