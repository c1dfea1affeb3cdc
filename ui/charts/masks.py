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

from ui.charts.style import (MASK_PRUNED, MASK_KEPT, MASK_REGROWN, color_map, empty_figure,
                             percent_axis, short_name, style)
from ui.masks_view import LayerFilm
from ui.safe_text import html


#: 0 pruned (pale) … 1 kept (dark), then regrown entries (1, 2] in orange: three states apart
FILM_COLORSCALE = [[0.0, MASK_PRUNED], [0.5, MASK_KEPT], [0.5001, "#f6c48a"],
                   [1.0, MASK_REGROWN]]


#: a film's cell values are sent as whole percent: 0 pruned … 100 kept, up to 200 regrown
FILM_SCALE = 100


def film_cells(frame: np.ndarray) -> np.ndarray:
    """One frame's cells as uint8 percent (``FILM_SCALE`` × the value; see ``masks_view``).

    A film is dozens of frames of up to 128×128 cells per run; sent as floats with a word per
    cell for the hover it was 7 MB for two runs, which the server built and the browser parsed
    at every change of the page. As one byte per cell (plotly sends numpy arrays as binary) it
    is ~30 times smaller; a percent is finer than any colour step of the scale."""
    return np.rint(np.clip(frame, 0.0, 2.0) * FILM_SCALE).astype(np.uint8)


def _heatmap(frame: np.ndarray, showscale: bool, coloraxis: str = "coloraxis") -> go.Heatmap:
    rows, cols = frame.shape
    return go.Heatmap(z=film_cells(frame), coloraxis=coloraxis, showscale=showscale,
                      hovertemplate="row %{y}, column %{x}: %{z}<br>0 = pruned, 100 = kept, "
                                    "above 100 = regrown (a cell that stands for several "
                                    "weights: their average)<extra></extra>",
                      x=np.arange(cols, dtype=np.uint16), y=np.arange(rows, dtype=np.uint16))


def mask_film_figure(films: Sequence[tuple[str, LayerFilm]],
                     alignment: Sequence[tuple[int, ...]] | None = None,
                     height: int = 560, start: int = 0) -> go.Figure:
    """One layer's mask over training, one heatmap per run side by side, with a play button:
    pruned pale, kept dark, regrown (kept again after being pruned) orange.

    ``alignment``: for each animation frame, the snapshot index shown for each film (see
    ``masks_view.progress_alignment``); by default frame i shows snapshot i of every film.
    ``start``: the animation frame shown first (``masks_view.LayerFilm.opening``).
    """
    if not films:
        return empty_figure("no mask snapshots", height=220)
    if alignment is None:
        count = min(len(f.frames) for _, f in films)
        alignment = [tuple(i for _ in films) for i in range(count)]
    fig = make_subplots(rows=1, cols=len(films), subplot_titles=[html(t) for t, _ in films],
                        horizontal_spacing=0.08)
    start = min(max(start, 0), len(alignment) - 1)
    first = alignment[start]
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
        coloraxis=dict(colorscale=FILM_COLORSCALE, cmin=0, cmax=2 * FILM_SCALE,
                       colorbar=dict(title="weight", tickvals=[0, FILM_SCALE, 2 * FILM_SCALE],
                                     ticktext=["pruned", "kept", "regrown"], len=0.8)),
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
        sliders=[{"active": start, "x": 0.0, "y": -0.24, "len": 1.0, "xanchor": "left", "yanchor": "top",
                  "currentvalue": {"prefix": prefix, "visible": True, "xanchor": "right"},
                  "pad": {"t": 0}, "steps": steps}],
    )
    style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=150))
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
    named: set[str] = set()  # each layer once in the legend, from whichever panel has it first
    for col, run in enumerate(runs, start=1):
        for layer, group in frame[frame["run"] == run].groupby("layer", sort=False):
            color = colors[layer]
            first = layer not in named
            named.add(layer)
            fig.add_trace(go.Scatter(x=group["epoch"], y=group["sparsity"], mode="lines+markers",
                                     name=short_name(layer), legendgroup=layer, showlegend=first,
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
