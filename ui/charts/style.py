"""The charts' one look, and the generic builders every chart family uses.

Conventions: fractions (accuracy, sparsity) are drawn on percent axes, and accuracy axes never
pass 100 %; axis titles carry units ("MFLOPs", "ms", "%"); legends horizontal above the plot;
layers named without their ``.weight`` suffix.

One visual language on every page: a method always has the same hue (``method_color``, shaded
per schedule by ``run_color``) and a schedule the same marker, dash and shade
(``schedule_symbol``, ``schedule_dash``), fixed by the name's
place in its registry (the order the code registers them, which no run can change), with a
checksum of the name for names the registry does not know (runs of removed methods). A method
that follows no schedule is drawn without one (``schedule_of``). Markers are outlined and
half-opaque so runs on the same spot stay visible.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ui.safe_text import escape_figure

#: colour-blind-safe qualitative palette used for runs, schedules and methods
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Vivid
# Kept weights dark, pruned ones pale: a sparse layer reads as a mostly empty picture.
MASK_PRUNED, MASK_KEPT, MASK_REGROWN = "#f4f1ea", "#1f3b73", "#e66100"
MASK_COLORSCALE = [[0.0, MASK_PRUNED], [1.0, MASK_KEPT]]
TEMPLATE = "plotly_white"
HEIGHT = 380

#: the methods' colours: Okabe–Ito's colour-blind-safe eight, then darker companions
METHOD_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#7F3C8D",
                 "#555555", "#B8860B", "#1B7837", "#A6761D", "#E7298A")
#: the schedules' markers and dashes, in the same order
SCHEDULE_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star",
                    "triangle-down", "hexagon", "pentagon", "x")
SCHEDULE_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: how the markers of a run look: outlined and half-opaque, so overlapping runs stay visible
MARKER = dict(size=10, opacity=0.75, line=dict(width=1.2, color="white"))
#: the label of "no schedule" (methods that follow none)
NO_SCHEDULE = "no schedule"
NO_SCHEDULE_DASH = "solid"
NO_SCHEDULE_SYMBOL = "circle-open"


def _index(name: str, registry: str) -> int:
    """The name's place in the registry; unknown names get a checksum (stable across sessions,
    unlike ``hash``), past the registered names."""
    from pruning.validation import registry as lookup

    names = lookup(registry).names()
    if name in names:
        return names.index(name)
    return len(names) + zlib.crc32(str(name).encode())


def method_color(method: str) -> str:
    """The colour of ``method`` on every chart of every page."""
    return METHOD_COLORS[_index(method, "methods") % len(METHOD_COLORS)]


def schedule_symbol(schedule: str | None) -> str:
    """The marker of ``schedule`` on every chart (an open circle for no schedule)."""
    if schedule in (None, NO_SCHEDULE):
        return NO_SCHEDULE_SYMBOL
    return SCHEDULE_SYMBOLS[_index(schedule, "schedules") % len(SCHEDULE_SYMBOLS)]


def schedule_dash(schedule: str | None) -> str:
    """The dash of ``schedule``'s lines on every chart (solid for no schedule)."""
    if schedule in (None, NO_SCHEDULE):
        return NO_SCHEDULE_DASH
    return SCHEDULE_DASHES[_index(schedule, "schedules") % len(SCHEDULE_DASHES)]


#: how each schedule shades its method's colour: < 0 darker (toward black), > 0 lighter
SCHEDULE_SHADES = (0.0, -0.45, 0.5, -0.25, 0.3, -0.6, 0.65)


def run_color(method: str, schedule: str | None) -> str:
    """The colour of a run's line: its method's hue, shaded by its schedule (deterministic, so
    magnitude under AGP looks the same on every page), so runs of one method under several
    schedules stay apart even in print without their dashes."""
    base = method_color(method)
    if schedule in (None, NO_SCHEDULE):
        return base
    shade = SCHEDULE_SHADES[_index(schedule, "schedules") % len(SCHEDULE_SHADES)]
    if shade == 0:
        return base
    r, g, b = (int(base[i:i + 2], 16) for i in (1, 3, 5))
    target = 255 if shade > 0 else 0
    mix = [round(c + (target - c) * abs(shade)) for c in (r, g, b)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """{method: colour} for ``color_discrete_map``."""
    return {m: method_color(m) for m in methods}


def schedule_of(method: str, schedule: str) -> str:
    """The schedule a run of ``method`` followed: ``schedule``, or "no schedule" for methods
    that ignore it (i-SpaSP, SSC, ASWL, unification: labelling them with one would mislead)."""
    from pruning.validation import follows_schedule

    try:
        return schedule if follows_schedule(method) else NO_SCHEDULE
    except KeyError:  # a method this version no longer has
        return schedule


def accuracy_axis(fig: go.Figure, values: Iterable[float] = (), errors: Iterable[float] = (),
                  axis: str = "y", title: str = "test accuracy (%)", **where: Any) -> None:
    """A percent accuracy axis that never passes 100 % nor goes below 0 %. It spans at least
    ten points, so a difference of one or two test images does not fill the chart."""
    vals = pd.Series(list(values), dtype=float).reset_index(drop=True)
    errs = pd.Series(list(errors), dtype=float).reset_index(drop=True)
    errs = errs.reindex(vals.index).fillna(0.0)
    if vals.notna().any():
        low, high = float((vals - errs).min()), float((vals + errs).max())
        top = min(1.0, high + 0.01)
        low = max(0.0, min(low - 0.02, top - 0.10))
        rng = [low, top]
    else:
        rng = [0.0, 1.0]
    getattr(fig, f"update_{axis}axes")(title_text=title, range=rng, tickformat=".0%", **where)


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
