"""Mask evolution: a layer's mask over training as an animated heatmap (one panel per run),
the entries that flip between snapshots, and each layer's sparsity at every snapshot.

The pictures and frames come from ``ui.masks_view``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.charts.style import MASK_COLORSCALE, color_map, empty_figure, percent_axis, short_name, style
from ui.masks_view import LayerFilm
from ui.safe_text import html


def _heatmap(frame: np.ndarray, showscale: bool, coloraxis: str = "coloraxis") -> go.Heatmap:
    rows, cols = frame.shape
    return go.Heatmap(z=frame, coloraxis=coloraxis, showscale=showscale,
                      hovertemplate="row %{y}, column %{x}<br>kept %{z:.0%}<extra></extra>",
                      x=np.arange(cols), y=np.arange(rows))


def mask_film_figure(films: Sequence[tuple[str, LayerFilm]],
                     alignment: Sequence[tuple[int, ...]] | None = None,
                     height: int = 560) -> go.Figure:
    """One layer's mask over training, one heatmap per run side by side, with a play button.

    ``alignment``: for each animation frame, the snapshot index shown for each film (see
    ``masks_view.progress_alignment``); by default frame i shows snapshot i of every film.
    """
    if not films:
        return empty_figure("no mask snapshots", height=220)
    if alignment is None:
        count = min(len(f.frames) for _, f in films)
        alignment = [tuple(i for _ in films) for i in range(count)]
    fig = make_subplots(rows=1, cols=len(films), subplot_titles=[html(t) for t, _ in films],
                        horizontal_spacing=0.08)
    first = alignment[0]
    for col, ((_, film), index) in enumerate(zip(films, first), start=1):
        fig.add_trace(_heatmap(film.frames[index], showscale=col == 1), row=1, col=col)
        x_title, y_title = film.picture.axis_titles()
        fig.update_xaxes(title_text=x_title, row=1, col=col, showgrid=False)
        fig.update_yaxes(title_text=y_title, row=1, col=col, autorange="reversed", showgrid=False)

    # Slider ticks show the first film's epoch (films are aligned by training progress).
    lead = films[0][1]
    frames, steps = [], []
    for number, indices in enumerate(alignment):
        name = str(number)
        frames.append(go.Frame(
            name=name, traces=list(range(len(films))),
            data=[_heatmap(film.frames[i], showscale=k == 0)
                  for k, ((_, film), i) in enumerate(zip(films, indices))]))
        steps.append({"method": "animate", "label": f"{lead.epochs[indices[0]]:.1f}",
                      "args": [[name], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                        "transition": {"duration": 0}}]})
    fig.frames = frames
    prefix = "epoch " if len(films) == 1 else "epoch (left run) "
    fig.update_layout(
        coloraxis=dict(colorscale=MASK_COLORSCALE, cmin=0.0, cmax=1.0,
                       colorbar=dict(title="kept", tickformat=".0%", len=0.8)),
        updatemenus=[{
            "type": "buttons", "direction": "left", "x": 0.0, "y": -0.14, "xanchor": "left",
            "yanchor": "top", "showactive": False, "pad": {"t": 0, "r": 10},
            "buttons": [
                {"label": "▶ play", "method": "animate",
                 "args": [None, {"frame": {"duration": 400, "redraw": True}, "fromcurrent": True,
                                 "transition": {"duration": 0}}]},
                {"label": "❚❚ pause", "method": "animate",
                 "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]},
            ]}],
        sliders=[{"active": 0, "x": 0.0, "y": -0.24, "len": 1.0, "xanchor": "left", "yanchor": "top",
                  "currentvalue": {"prefix": prefix, "visible": True, "xanchor": "right"},
                  "pad": {"t": 0}, "steps": steps}],
    )
    style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=150))
    return fig


def open_film_at(fig: go.Figure, index: int) -> go.Figure:
    """Make a mask film open on animation frame ``index``: the shown heatmaps and the slider."""
    frame = fig.frames[index]
    for trace, shown in zip(fig.data, frame.data):
        trace.update(shown)  # the frame's values; the trace keeps its subplot axes
    fig.layout.sliders[0].active = index
    return fig


def churn_figure(churn: pd.DataFrame) -> go.Figure:
    """Entries that flipped between consecutive snapshots, summed over layers, one line per run.

    ``churn``: ``masks_view.churn_frame`` rows with an added ``run`` column.
    """
    if churn.empty:
        return empty_figure("fewer than two snapshots: no churn to show", height=220)
    # Keep the runs in the order given (left run first) so colours match the panels above.
    totals = (churn.groupby(["run", "step", "epoch"], as_index=False, sort=False)
              [["flips", "pruned", "regrown"]].sum())
    fig = go.Figure()
    for run, group in totals.groupby("run", sort=False):
        fig.add_trace(go.Scatter(
            x=group["epoch"], y=group["flips"], mode="lines+markers", name=str(run),
            customdata=np.stack([group["pruned"], group["regrown"]], axis=-1),
            hovertemplate=("epoch %{x:.2f}: %{y} flipped<br>%{customdata[0]} pruned, "
                           "%{customdata[1]} regrown<extra>%{fullData.name}</extra>")))
    fig.update_xaxes(title_text="epoch (of the later snapshot)")
    fig.update_yaxes(title_text="entries flipped since last snapshot (count)", rangemode="tozero")
    return style(fig, legend_title="run")


def layer_sparsity_figure(frame: pd.DataFrame) -> go.Figure:
    """Each layer's sparsity at every snapshot; one panel per run (``run`` column)."""
    if frame.empty:
        return empty_figure("no mask snapshots", height=220)
    runs = list(dict.fromkeys(frame["run"]))
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[html(r) for r in runs],
                        shared_yaxes=True,
                        horizontal_spacing=0.05)
    colors = color_map(frame["layer"])
    for col, run in enumerate(runs, start=1):
        for layer, group in frame[frame["run"] == run].groupby("layer", sort=False):
            color = colors[layer]
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["sparsity"], mode="lines+markers",
                                     name=short_name(layer), legendgroup=layer, showlegend=col == 1,
                                     line=dict(color=color),
                                     hovertemplate="epoch %{x:.2f}: %{y:.1%} pruned"
                                                   "<extra>%{fullData.name}</extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_yaxes(title_text="layer sparsity (% of weights pruned)", row=1, col=1)
    percent_axis(fig, range=[0, 1.02])
    style(fig, legend_title="layer")
    # subplot titles sit at the top edge: lift the legend above them
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.14))
    return fig
