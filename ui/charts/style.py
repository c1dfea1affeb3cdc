"""The charts' one look, and the generic builders every chart family uses.

Conventions: fractions (accuracy, sparsity) are drawn on percent axes; axis titles carry units
("MFLOPs", "ms", "%"); one colour per run or schedule that stays the same across the panels of a
figure; legends horizontal above the plot; layers named without their ``.weight`` suffix.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ui.safe_text import escape_figure

#: colour-blind-safe qualitative palette used for runs, schedules and methods
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Vivid
# Kept weights dark, pruned ones pale: a sparse layer reads as a mostly empty picture.
MASK_COLORSCALE = [[0.0, "#f4f1ea"], [1.0, "#1f3b73"]]
TEMPLATE = "plotly_white"
HEIGHT = 380


def color_map(labels: Iterable[str]) -> dict[str, str]:
    """A stable colour per label, in first-seen order."""
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            out[label] = PALETTE[len(out) % len(PALETTE)]
    return out


def style(fig: go.Figure, *, x_title: str | None = None, y_title: str | None = None,
          x_percent: bool = False, y_percent: bool = False, title: str | None = None,
          height: int = HEIGHT, legend_title: str | None = None) -> go.Figure:
    """Apply the app's look: white template, titled axes, percent ticks, legend on top."""
    escape_figure(fig)  # run names and other user text in traces are shown as text
    fig.update_layout(
        template=TEMPLATE, height=height,
        margin=dict(l=10, r=10, t=80 if title else 40, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0,
                    title=dict(text=legend_title or "")),
        hoverlabel=dict(namelength=-1),
        font=dict(size=13),
    )
    if title:
        fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=0.98, yanchor="top"))
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    if x_percent:
        fig.update_xaxes(tickformat=".0%")
    if y_percent:  # one decimal: accuracy axes often span a point or two
        fig.update_yaxes(tickformat=".1%")
    return fig


def empty_figure(message: str, height: int = 200) -> go.Figure:
    """A blank figure with a centred note (used where a frame has no rows)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return style(fig, height=height)


def percent_axis(fig: go.Figure, axis: str = "y", **kwargs: Any) -> None:
    getattr(fig, f"update_{axis}axes")(tickformat=".0%", **kwargs)


def value_axis(fig: go.Figure, values: Iterable[float], title: str) -> None:
    """A y axis titled ``title``: log scale when the values span more than a decade (the title
    then says so), else linear from zero — a log axis over a narrow range only confuses."""
    positive = pd.Series(list(values), dtype=float)
    positive = positive[positive > 0]
    log = len(positive) > 1 and positive.max() / positive.min() > 10
    fig.update_yaxes(title_text=title + (" (log scale)" if log else ""),
                     type="log" if log else "linear", rangemode="normal" if log else "tozero")
    if log:
        # One labelled tick per decade: plotly's default 2/5 minor labels read as noise.
        fig.update_yaxes(dtick=1, tickformat="~g")


def short_name(layer: str) -> str:
    """``features.3.weight`` → ``features.3``: legends name layers, not their weight tensors."""
    return layer[: -len(".weight")] if layer.endswith(".weight") else layer


def line_chart(df: pd.DataFrame, x: str, y: str, color: str | None = None, *, x_title: str,
               y_title: str, y_percent: bool = False, x_percent: bool = False,
               title: str | None = None, markers: bool = True, dash: str | None = None,
               hover: Sequence[str] | None = None, height: int = HEIGHT,
               line_shape: str = "linear") -> go.Figure:
    """One line per ``color`` group (or a single line)."""
    if df.empty:
        return empty_figure("no data yet")
    colors = color_map(df[color]) if color else None
    fig = px.line(df, x=x, y=y, color=color, line_dash=dash, markers=markers,
                  hover_data=list(hover) if hover else None, color_discrete_map=colors,
                  line_shape=line_shape)
    return style(fig, x_title=x_title, y_title=y_title, y_percent=y_percent, x_percent=x_percent,
                 title=title, height=height, legend_title="")


def grouped_bars(df: pd.DataFrame, x: str, y: str, color: str, *, x_title: str, y_title: str,
                 y_percent: bool = True, title: str | None = None, text_format: str = ".1%",
                 height: int = HEIGHT) -> go.Figure:
    """Bars of ``y`` per ``x``, grouped by ``color``, values printed on the bars."""
    if df.empty:
        return empty_figure("nothing to compare yet")
    colors = color_map(df[color])
    fig = px.bar(df, x=x, y=y, color=color, barmode="group", color_discrete_map=colors,
                 text_auto=text_format)
    fig.update_traces(textposition="outside", cliponaxis=False)
    style(fig, x_title=x_title, y_title=y_title, y_percent=y_percent, title=title,
          height=height, legend_title="")
    if y_percent:
        top = float(df[y].max()) if df[y].notna().any() else 1.0
        fig.update_yaxes(range=[0, max(1.0, top) * 1.12])
    return fig
