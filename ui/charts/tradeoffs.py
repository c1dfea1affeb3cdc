"""Trade-offs: accuracy against a cost, one point per group of runs that differ only in their
seed (mean with error bars, n in the hover and the caption), the points of a sweep joined per
method and schedule into curves, the dense baseline as a band, and the Pareto front drawn only
through steps larger than the noise (``pruning.compare.noise_aware_front``).

Sparsity is drawn as pruning papers draw it: the fraction of weights kept (density) on a log
axis, so 90 %, 99 % and 99.9 % sparsity are evenly spaced and the accuracy cliff is visible.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from pruning.compare import Group, noise_aware_front
from ui.charts.style import (MARKER, accuracy_axis, empty_figure, method_color, run_color,
                             schedule_dash, schedule_of, schedule_symbol, style)
from ui.charts.training import rgba

#: summary metrics averaged over a group's seeds for the trade-off views
TRADEOFF_METRICS = ("test_acc", "mask_sparsity", "effective_sparsity", "flops", "latency_ms")
#: config fields that name a curve besides method and schedule when they differ between curves
CURVE_FIELDS = ("model", "dataset", "granularity", "scope", "epochs", "width", "image_size")


def tradeoff_frame(groups: Sequence[Group]) -> pd.DataFrame:
    """One row per group: method, schedule (the one it followed, or "no schedule"), target,
    n, seeds, ``curve`` (the line it belongs to), ``dense`` (target 0), and per metric ``<m>``
    (mean) and ``<m>_error`` (the half-width to draw, ``Group.error``); ``density`` = 1 − the
    sparsity reached (fraction of weights kept) and ``mflops``."""
    rows = []
    for g in groups:
        c = g.config
        row: dict[str, Any] = {"method": c["method"],
                               "schedule": schedule_of(c["method"], c["schedule"]),
                               "target": c["sparsity"], "n": g.n,
                               "seeds": ", ".join(map(str, g.seeds)),
                               "dense": float(c["sparsity"]) == 0.0,
                               **{f: c.get(f) for f in CURVE_FIELDS}}
        for m in TRADEOFF_METRICS:
            s = g.metrics.get(m)
            row[m] = s.mean if s else math.nan
            error = g.error(m)
            row[f"{m}_error"] = math.nan if error is None else error
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # the mask's sparsity; for methods that remove units instead (no mask), the share removed
    masked = frame["mask_sparsity"].notna()
    frame["sparsity"] = frame["mask_sparsity"].where(masked, frame["effective_sparsity"])
    frame["density"] = 1.0 - frame["sparsity"]
    frame["density_error"] = frame["mask_sparsity_error"].where(
        masked, frame["effective_sparsity_error"])
    frame["mflops"] = frame["flops"] / 1e6
    frame["mflops_error"] = frame["flops_error"] / 1e6
    varying = [f for f in CURVE_FIELDS if frame[f].astype(str).nunique() > 1]
    frame["curve"] = [" · ".join([r["method"], r["schedule"]] + [f"{f} {r[f]}" for f in varying])
                      for _, r in frame.iterrows()]
    return frame


DENSITY_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def density_axis(fig: go.Figure, values: pd.Series) -> None:
    """Fraction of weights kept on a log axis, ticks as percentages, 100 % (dense) at the right."""
    low = max(float(values[values > 0].min()) if (values > 0).any() else 0.01, 1e-4)
    ticks = [t for t in DENSITY_TICKS if t >= low / 2.5]
    fig.update_xaxes(type="log", range=[math.log10(low / 1.6), math.log10(1.25)],
                     tickvals=ticks, ticktext=[f"{t:.1%}".replace(".0%", "%") for t in ticks],
                     title_text="fraction of weights kept (%, log scale; 100 % = dense)")


def tradeoff_figure(frame: pd.DataFrame, x: str, *, x_title: str, x_higher_better: bool,
                    log_x: bool = False, x_errors: bool = False, front: bool = True,
                    height: int = 460) -> go.Figure:
    """Accuracy (mean over seeds, error bars) against ``x``; one curve per method and schedule
    (colour = method, dash and marker = schedule), the dense baseline as a band, and the
    noise-aware Pareto front. ``x="density"`` draws the log density axis."""
    data = frame.dropna(subset=[x, "test_acc"]) if not frame.empty else frame
    if data.empty:
        return empty_figure(f"no finished run has {x_title}")
    fig = go.Figure()
    for _, base in data[data["dense"]].iterrows():  # the dense baseline: mean ± error band
        low, high = base["test_acc"] - base["test_acc_error"], base["test_acc"] + base["test_acc_error"]
        fig.add_hrect(y0=max(low, 0.0), y1=min(high, 1.0), line_width=0,
                      fillcolor=rgba(method_color(base["method"]), 0.12), layer="below")
        fig.add_hline(y=base["test_acc"], line=dict(color="#555", width=1, dash="dot"),
                      annotation_text=f"dense baseline ({base['test_acc']:.1%}, n = {base['n']})",
                      annotation_position="bottom right", annotation_font_size=11)
    for curve, g in data.groupby("curve", sort=False):
        g = g.sort_values(x)
        method, schedule = g["method"].iloc[0], g["schedule"].iloc[0]
        color = run_color(method, schedule)
        n = g["n"].max()
        fig.add_trace(go.Scatter(
            x=g[x], y=g["test_acc"], mode="lines+markers",
            name=f"{curve} (n = {n} seed{'s' if n > 1 else ''})" if g["n"].nunique() == 1
            else f"{curve} (n = {g['n'].min()}–{n} seeds)",
            line=dict(color=color, dash=schedule_dash(schedule), width=2),
            marker={**MARKER, "symbol": schedule_symbol(schedule), "color": color},
            error_y=dict(type="data", array=g["test_acc_error"].fillna(0.0), thickness=1.2,
                         width=4, color=color),
            error_x=(dict(type="data", array=g[f"{x}_error"].fillna(0.0), thickness=1.2, width=4,
                          color=color) if x_errors and f"{x}_error" in g else None),
            customdata=g[["target", "n", "seeds", "test_acc_error"]].to_numpy(),
            hovertemplate=("%{x:.3g}: accuracy %{y:.1%} ± %{customdata[3]:.1%}<br>target "
                           "%{customdata[0]}, n = %{customdata[1]} (seeds %{customdata[2]})"
                           "<extra>%{fullData.name}</extra>")))
    if front:
        points = noise_aware_front(data, x, "test_acc",
                                   x_error=f"{x}_error" if x_errors else None,
                                   y_error="test_acc_error", x_higher_better=x_higher_better)
        if len(points) >= 2:
            fig.add_trace(go.Scatter(x=points[x], y=points["test_acc"], mode="lines",
                                     name="Pareto front (steps beyond the noise)",
                                     # along the edge of what the front's points dominate,
                                     # never above a point (which would promise accuracy
                                     # no run reached)
                                     line=dict(color="#333", dash="dot", width=1.5,
                                               shape="vh" if x_higher_better else "hv"),
                                     hoverinfo="skip"))
    style(fig, x_title=x_title, height=height, legend_title="")
    if x == "density":
        density_axis(fig, data["density"])
    elif log_x:
        fig.update_xaxes(type="log")
    accuracy_axis(fig, data["test_acc"], data["test_acc_error"])
    return fig
