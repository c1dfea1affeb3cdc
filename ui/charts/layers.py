"""Per-layer charts: each layer's final sparsity, and ASWL's layer attention and allocations.

ASWL traces (He, Shi, Dong, arXiv 2111.02399): "aswl" rows per step and layer, "aswl_final" the
final per-layer ratios next to uniform and global-magnitude allocations at the same sparsity.
Traces are ``RunStore.traces(run_id, kind)`` rows: ``{"kind", "step", **payload}``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui.charts.style import PALETTE, empty_figure, percent_axis, short_name, style


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


def aswl_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"aswl" trace rows → long frame: step, layer, attention (a_l), ratio (p_l), density."""
    rows = []
    for t in traces:
        for layer, a, p in zip(t["layers"], t["attention"], t["ratio"]):
            rows.append({"step": int(t["step"]), "layer": layer, "attention": float(a),
                         "ratio": float(p), "density": float(t.get("density", float("nan")))})
    return pd.DataFrame(rows, columns=["step", "layer", "attention", "ratio", "density"])


def aswl_lines_figure(frame: pd.DataFrame, value: str) -> go.Figure:
    """a_l (``value="attention"``) or p_l (``value="ratio"``) of every layer over training steps."""
    if frame.empty:
        return empty_figure("no ASWL trace", height=220)
    fig = go.Figure()
    label = {"attention": "attention a_l", "ratio": "pruning ratio p_l"}[value]
    for layer, group in frame.groupby("layer", sort=False):
        fig.add_trace(go.Scatter(x=group["step"], y=group[value], mode="lines", name=short_name(layer),
                                 hovertemplate="step %{x}: %{y:.3f}<extra>%{fullData.name}</extra>"))
    if value == "ratio":
        overall = frame.drop_duplicates("step")
        fig.add_trace(go.Scatter(x=overall["step"], y=1.0 - overall["density"], mode="lines",
                                 name="overall sparsity", line=dict(color="black", dash="dash"),
                                 hovertemplate="step %{x}: %{y:.1%}<extra>overall</extra>"))
        fig.update_yaxes(title_text=f"{label} (% of the layer pruned)")
        percent_axis(fig, range=[0, 1.0])
    else:
        fig.update_yaxes(title_text=f"{label} (unitless, clipped to [0.01, 1])", range=[0, 1.02])
    fig.update_xaxes(title_text="optimizer step")
    return style(fig, legend_title="layer")


def attention_story(frame: pd.DataFrame, floor: float = 0.01, still: float = 0.02) -> str:
    """What each layer's attention actually did in this run, in words, read from the trace
    (so the caption never says "up" where the lines go down): which fell to the floor, which
    fell, which rose, which barely moved, and which came back up after a low."""
    if frame.empty:
        return ""
    moves: dict[str, list[str]] = {"fell to the floor": [], "fell": [], "rose": [],
                                   "barely moved": []}
    recovered = []
    for layer, g in frame.sort_values("step").groupby("layer", sort=False):
        first, last, low = g["attention"].iloc[0], g["attention"].iloc[-1], g["attention"].min()
        name = short_name(layer)
        if abs(last - first) <= still and low >= first - still:
            moves["barely moved"].append(f"{name} ({last:.2f})")
        elif last > first:
            moves["rose"].append(f"{name} (to {last:.2f})")
        elif last <= floor * 1.5:
            moves["fell to the floor"].append(name)
        else:
            moves["fell"].append(f"{name} (to {last:.2f})")
        if low <= floor * 1.5 and last > low + 0.05:
            recovered.append(f"{name} (from {low:.2f} back to {last:.2f})")
    parts = [f"{', '.join(names)} {verb}" for verb, names in moves.items() if names]
    text = "In this run, from 0.5: " + "; ".join(parts) + "."
    if recovered:
        text += " Pulled back up after a low: " + ", ".join(recovered) + "."
    return text


def overlapping_layers(frame: pd.DataFrame, value: str, tol: float = 1e-6) -> list[list[str]]:
    """Groups (2+) of layers whose ``value`` series are equal at every step: their lines hide
    each other in the chart, so the page says which ones are drawn on top of each other."""
    series = {layer: g.sort_values("step")[value].to_numpy() for layer, g in frame.groupby("layer", sort=False)}
    groups: list[list[str]] = []
    for layer, values in series.items():
        for group in groups:
            ref = series[group[0]]
            if len(ref) == len(values) and np.allclose(ref, values, atol=tol, rtol=0):
                group.append(layer)
                break
        else:
            groups.append([layer])
    return [g for g in groups if len(g) > 1]


def allocation_frame(final: Mapping[str, Any]) -> pd.DataFrame:
    """"aswl_final" payload → long frame: layer, size, allocation, ratio (fraction pruned)."""
    names = {"ratio_aswl": "ASWL (learned)", "ratio_uniform": "uniform",
             "ratio_global_magnitude": "global magnitude"}
    rows = []
    for key, allocation in names.items():
        for layer, size, ratio in zip(final["layers"], final["sizes"], final[key]):
            rows.append({"layer": layer, "size": int(size), "allocation": allocation,
                         "ratio": float(ratio)})
    return pd.DataFrame(rows, columns=["layer", "size", "allocation", "ratio"])


def overall_sparsity(frame: pd.DataFrame) -> dict[str, float]:
    """Size-weighted overall sparsity of each allocation (they should all agree)."""
    out = {}
    for allocation, group in frame.groupby("allocation", sort=False):
        out[allocation] = float((group["ratio"] * group["size"]).sum() / group["size"].sum())
    return out


def allocation_figure(frame: pd.DataFrame) -> go.Figure:
    """Per-layer pruning ratio of ASWL's final masks beside uniform and global-magnitude ones."""
    if frame.empty:
        return empty_figure("no final ASWL allocation", height=220)
    fig = go.Figure()
    colors = {"ASWL (learned)": "#1f3b73", "uniform": "#999999", "global magnitude": "#e69f00"}
    for allocation, group in frame.groupby("allocation", sort=False):
        labels = [f"{short_name(l)} ({s:,} w)" for l, s in zip(group["layer"], group["size"])]
        fig.add_trace(go.Bar(x=labels, y=group["ratio"], name=allocation,
                             marker_color=colors.get(allocation),
                             hovertemplate="%{x}: %{y:.1%} pruned<extra>%{fullData.name}</extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="layer (number of weights)")
    fig.update_yaxes(title_text="pruned (% of the layer's weights)")
    percent_axis(fig, range=[0, 1.0])
    return style(fig, legend_title="allocation")
