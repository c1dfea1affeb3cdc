"""Plotly figure builders: pandas frames in, figures out, in one consistent style.

Every builder returns a ``plotly.graph_objects.Figure`` and never calls Streamlit, so pages stay
thin and the builders can be tested on plain frames. Conventions: fractions (accuracy, sparsity)
are drawn on percent axes; axis titles carry units ("MFLOPs", "ms", "%"); one colour per run or
schedule that stays the same across the panels of a figure; legends horizontal above the plot.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.safe_text import escape_figure

#: colour-blind-safe qualitative palette used for runs, schedules and methods
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Vivid
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


# ---- curves over training ---------------------------------------------------------------------
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


# ---- trade-offs -------------------------------------------------------------------------------
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


# ---- comparisons ------------------------------------------------------------------------------
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


#: (summary key, label) of the three sparsities a run reports
SPARSITY_KINDS = (("target_sparsity", "target"), ("mask_sparsity", "mask"),
                  ("effective_sparsity", "effective"))


def sparsity_frame(summaries: dict[str, dict]) -> pd.DataFrame:
    """Long frame (run, group, kind, value) from {run label: summary}: the three sparsities
    (target = what the schedule asked, mask = zeros among prunable weights, effective = share of
    all parameters physically removable), then the zero share of all parameters and the FLOPs
    skipped under the mask and removed physically."""
    rows = []
    for label, s in summaries.items():
        for key, kind in SPARSITY_KINDS:
            if s.get(key) is not None:
                rows.append({"run": label, "group": "sparsity", "kind": f"{kind} sparsity",
                             "value": float(s[key])})
        # effective sparsity already is "parameters removed physically"
        for kind, num, den in (("all params zero", "params_nonzero", "params_dense"),
                               ("FLOPs skipped (mask)", "flops", "flops_dense"),
                               ("FLOPs removed physically", "flops_compact", "flops_dense")):
            if s.get(num) is not None and s.get(den):
                rows.append({"run": label, "group": "ratio", "kind": kind,
                             "value": 1.0 - float(s[num]) / float(s[den])})
    return pd.DataFrame(rows, columns=["run", "group", "kind", "value"])


def sparsity_bars(summaries: dict[str, dict], *, height: int = HEIGHT) -> go.Figure:
    """Target vs mask vs effective sparsity, and parameter vs FLOPs reductions, side by side."""
    frame = sparsity_frame(summaries)
    if frame.empty:
        return empty_figure("no sparsity recorded for these runs")
    if frame["run"].nunique() > 1:
        return grouped_bars(frame, "kind", "value", "run", x_title="",
                            y_title="fraction removed (%)", height=height)
    # One run: horizontal bars read better in a half-width column; sparsities in one colour,
    # parameter/FLOPs reductions in another.
    colors = [PALETTE[0] if g == "sparsity" else PALETTE[2] for g in frame["group"]]
    fig = go.Figure(go.Bar(x=frame["value"], y=frame["kind"], orientation="h",
                           marker_color=colors, texttemplate="%{x:.1%}", textposition="outside",
                           cliponaxis=False, hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    style(fig, x_title="fraction removed (%)", x_percent=True, height=height)
    fig.update_xaxes(range=[0, 1.15])
    return fig


def layer_bars(layer_values: dict[str, float], *, title: str | None = None,
               x_title: str = "sparsity (% of the layer's weights zero)",
               height: int | None = None) -> go.Figure:
    """Horizontal bars, one per layer in network order (first layer on top)."""
    if not layer_values:
        return empty_figure("no per-layer values recorded")
    names = list(layer_values)
    fig = go.Figure(go.Bar(x=[layer_values[n] for n in names], y=names, orientation="h",
                           marker_color=PALETTE[0], texttemplate="%{x:.1%}",
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    style(fig, x_title=x_title, y_title="layer", x_percent=True, title=title,
          height=height or max(220, 60 + 26 * len(names)))
    fig.update_xaxes(range=[0, 1.12])
    return fig
