"""Trade-offs: runs scattered by accuracy against a cost, with the Pareto front through the best."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ui.charts.style import color_map, empty_figure, style


def pareto_front(df: pd.DataFrame, x: str, y: str, *, x_higher_better: bool) -> pd.DataFrame:
    """Rows not dominated by any other row (higher ``y`` is better; ``x`` as told), sorted by x.

    A row is dominated when another row is at least as good on both axes and strictly better on
    one. Rows with a missing x or y are ignored.
    """
    frame = df.dropna(subset=[x, y])
    if frame.empty:
        return frame
    # Sort best-x first; walking down, a row is on the front when its y beats every y seen.
    ordered = frame.sort_values([x, y], ascending=[not x_higher_better, False])
    keep, best_y = [], float("-inf")
    for idx, value in ordered[y].items():
        if value > best_y:
            keep.append(idx)
            best_y = value
    return frame.loc[keep].sort_values(x)


def tradeoff_scatter(df: pd.DataFrame, x: str, y: str = "test_acc", *, x_title: str,
                     y_title: str = "test accuracy (%)", color: str | None = None,
                     symbol: str | None = None, hover: Sequence[str] = (),
                     x_higher_better: bool, x_percent: bool = False, y_percent: bool = True,
                     log_x: bool = False, title: str | None = None,
                     height: int = 420) -> go.Figure:
    """Scatter of runs with the Pareto front drawn as a step line through the best runs."""
    frame = df.dropna(subset=[x, y])
    if frame.empty:
        return empty_figure(f"no finished run has {x_title}")
    colors = color_map(frame[color]) if color else None
    fig = px.scatter(frame, x=x, y=y, color=color, symbol=symbol, hover_data=list(hover),
                     color_discrete_map=colors, log_x=log_x)
    fig.update_traces(marker=dict(size=11, line=dict(width=1, color="white")))
    front = pareto_front(frame, x, y, x_higher_better=x_higher_better)
    if len(front) >= 1:
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", name="Pareto front",
                                 line=dict(color="#333", dash="dot", width=1.5,
                                           shape="hv" if x_higher_better else "vh"),
                                 hoverinfo="skip"))
    return style(fig, x_title=x_title, y_title=y_title, x_percent=x_percent,
                 y_percent=y_percent, title=title, height=height, legend_title="")
