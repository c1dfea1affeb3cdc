"""Data shaping and plotly figures for the analysis pages (layer attention, mask evolution,
methods, speed lab). No Streamlit here: the pages call these and only lay the results out.

Each ``*_frame`` turns a run's stored traces (``RunStore.traces(run_id, kind)`` rows:
``{"kind", "step", **payload}``) into a tidy pandas frame; each ``*_figure`` draws one frame.
Fractions stay fractions in the frames and are shown on percent axes; every axis names its unit.

Traces come from the methods (see their modules for the papers): "aswl"/"aswl_final" (ASWL,
He, Shi, Dong, arXiv 2111.02399), "ispasp_residual"/"ispasp_units" (i-SpaSP, Wolfe & Kyrillidis,
arXiv 2112.04905), "ssc_pattern" (SSC, Verma et al., arXiv 2210.12818), "admm"/
"unification_storage" (micro-structured weight unification, Lin et al., arXiv 2106.08301).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui import charts
from ui.masks_view import LayerFilm

# Kept weights dark, pruned ones pale: a sparse layer reads as a mostly empty picture.
MASK_COLORSCALE = [[0.0, "#f4f1ea"], [1.0, "#1f3b73"]]
# SSC kernel kinds: 0 empty, 1 pointwise (centre tap), 2 full K×K.
SSC_KINDS = ("empty", "pointwise (1×1)", "full K×K")
SSC_COLORS = ("#f4f1ea", "#e69f00", "#1f3b73")
# The four forms of the speed lab, in the order they are explained.
FORM_ORDER = ("dense", "masked dense", "sparse kernels", "physically pruned")


def short_name(layer: str) -> str:
    """``features.3.weight`` → ``features.3``: legends name layers, not their weight tensors."""
    return layer[: -len(".weight")] if layer.endswith(".weight") else layer


def _style(fig: go.Figure, height: int = charts.HEIGHT, legend_title: str | None = None) -> go.Figure:
    return charts.style(fig, height=height, legend_title=legend_title)


def _percent_axis(fig: go.Figure, axis: str = "y", **kwargs: Any) -> None:
    getattr(fig, f"update_{axis}axes")(tickformat=".0%", **kwargs)


def _empty_figure(message: str, height: int = 220) -> go.Figure:
    return charts.empty_figure(message, height=height)


# ---- mask evolution --------------------------------------------------------------------------------
def _heatmap(frame: np.ndarray, showscale: bool, coloraxis: str = "coloraxis") -> go.Heatmap:
    rows, cols = frame.shape
    return go.Heatmap(z=frame, coloraxis=coloraxis, showscale=showscale,
                      hovertemplate="row %{y}, column %{x}<br>kept %{z:.0%}<extra></extra>",
                      x=np.arange(cols), y=np.arange(rows))


def mask_film_figure(films: Sequence[tuple[str, LayerFilm]],
                     alignment: Sequence[tuple[int, ...]] | None = None,
                     height: int = 460) -> go.Figure:
    """One layer's mask over training, one heatmap per run side by side, with a play button.

    ``alignment``: for each animation frame, the snapshot index shown for each film (see
    ``masks_view.progress_alignment``); by default frame i shows snapshot i of every film.
    """
    if not films:
        return _empty_figure("no mask snapshots")
    if alignment is None:
        count = min(len(f.frames) for _, f in films)
        alignment = [tuple(i for _ in films) for i in range(count)]
    fig = make_subplots(rows=1, cols=len(films), subplot_titles=[t for t, _ in films],
                        horizontal_spacing=0.08)
    first = alignment[0]
    for col, ((_, film), index) in enumerate(zip(films, first), start=1):
        fig.add_trace(_heatmap(film.frames[index], showscale=col == 1), row=1, col=col)
        x_title, y_title = film.picture.axis_titles()
        fig.update_xaxes(title_text=x_title, row=1, col=col, showgrid=False)
        fig.update_yaxes(title_text=y_title, row=1, col=col, autorange="reversed", showgrid=False)

    def label(indices: tuple[int, ...]) -> str:
        return " | ".join(f"epoch {film.epochs[i]:.1f}" for (_, film), i in zip(films, indices))

    frames, steps = [], []
    for number, indices in enumerate(alignment):
        name = str(number)
        frames.append(go.Frame(
            name=name, traces=list(range(len(films))),
            data=[_heatmap(film.frames[i], showscale=k == 0)
                  for k, ((_, film), i) in enumerate(zip(films, indices))]))
        steps.append({"method": "animate", "label": label(indices) if len(films) == 1
                      else f"{number + 1}",
                      "args": [[name], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                        "transition": {"duration": 0}}]})
    fig.frames = frames
    fig.update_layout(
        coloraxis=dict(colorscale=MASK_COLORSCALE, cmin=0.0, cmax=1.0,
                       colorbar=dict(title="kept", tickformat=".0%", len=0.8)),
        updatemenus=[{
            "type": "buttons", "direction": "left", "x": 0.0, "y": -0.16, "xanchor": "left",
            "yanchor": "top", "showactive": False,
            "buttons": [
                {"label": "▶ play", "method": "animate",
                 "args": [None, {"frame": {"duration": 400, "redraw": True}, "fromcurrent": True,
                                 "transition": {"duration": 0}}]},
                {"label": "❚❚ pause", "method": "animate",
                 "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]},
            ]}],
        sliders=[{"active": 0, "x": 0.16, "y": -0.12, "len": 0.84, "xanchor": "left", "yanchor": "top",
                  "currentvalue": {"prefix": "snapshot " if len(films) > 1 else "", "visible": True},
                  "pad": {"t": 10}, "steps": steps}],
    )
    _style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=120))
    return fig


def churn_figure(churn: pd.DataFrame) -> go.Figure:
    """Entries that flipped between consecutive snapshots, summed over layers, one line per run.

    ``churn``: ``masks_view.churn_frame`` rows with an added ``run`` column.
    """
    if churn.empty:
        return _empty_figure("fewer than two snapshots: no churn to show")
    totals = (churn.groupby(["run", "step", "epoch"], as_index=False)[["flips", "pruned", "regrown"]]
              .sum().sort_values(["run", "step"]))
    fig = go.Figure()
    for run, group in totals.groupby("run", sort=False):
        fig.add_trace(go.Scatter(
            x=group["epoch"], y=group["flips"], mode="lines+markers", name=str(run),
            customdata=np.stack([group["pruned"], group["regrown"]], axis=-1),
            hovertemplate=("epoch %{x:.2f}: %{y} flipped<br>%{customdata[0]} pruned, "
                           "%{customdata[1]} regrown<extra>%{fullData.name}</extra>")))
    fig.update_xaxes(title_text="epoch (of the later snapshot)")
    fig.update_yaxes(title_text="mask entries flipped since previous snapshot (count)", rangemode="tozero")
    return _style(fig, legend_title="run")


def layer_sparsity_figure(frame: pd.DataFrame) -> go.Figure:
    """Each layer's sparsity at every snapshot; one panel per run (``run`` column)."""
    if frame.empty:
        return _empty_figure("no mask snapshots")
    runs = list(dict.fromkeys(frame["run"]))
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=runs, shared_yaxes=True,
                        horizontal_spacing=0.05)
    colors = charts.color_map(frame["layer"])
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
    _percent_axis(fig, range=[0, 1.02])
    return _style(fig, legend_title="layer")


# ---- ASWL --------------------------------------------------------------------------------------------
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
        return _empty_figure("no ASWL trace")
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
        _percent_axis(fig, range=[0, 1.0])
    else:
        fig.update_yaxes(title_text=f"{label} (unitless, clipped to [0.01, 1])", range=[0, 1.02])
    fig.update_xaxes(title_text="optimizer step")
    return _style(fig, legend_title="layer")


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
        return _empty_figure("no final ASWL allocation")
    fig = go.Figure()
    colors = {"ASWL (learned)": "#1f3b73", "uniform": "#999999", "global magnitude": "#e69f00"}
    for allocation, group in frame.groupby("allocation", sort=False):
        labels = [f"{short_name(l)}<br>({s:,} w)" for l, s in zip(group["layer"], group["size"])]
        fig.add_trace(go.Bar(x=labels, y=group["ratio"], name=allocation,
                             marker_color=colors.get(allocation),
                             hovertemplate="%{x}: %{y:.1%} pruned<extra>%{fullData.name}</extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="layer (number of weights)")
    fig.update_yaxes(title_text="pruned (% of the layer's weights)")
    _percent_axis(fig, range=[0, 1.0])
    return _style(fig, legend_title="allocation")


# ---- i-SpaSP ---------------------------------------------------------------------------------------
def ispasp_residual_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"ispasp_residual" rows → block, iteration, loss, norm, relative.

    The trace's ``residual`` is the loss L = ½‖Y_dense − Y_S‖²_F that i-SpaSP minimises; ``norm``
    is ‖Y_dense − Y_S‖_F = √(2L) and ``relative`` that norm over ‖Y_dense‖_F (from the trace when
    the method recorded it, else over the block's first norm), comparable across blocks.
    """
    rows = []
    for t in traces:
        loss = float(t["residual"])
        rows.append({"block": str(t["block"]), "iteration": int(t["iteration"]), "loss": loss,
                     "norm": float(np.sqrt(2.0 * max(loss, 0.0))),
                     "relative": float(t["relative"]) if t.get("relative") is not None else np.nan})
    frame = pd.DataFrame(rows, columns=["block", "iteration", "loss", "norm", "relative"])
    if frame["relative"].isna().any():
        first = frame.groupby("block", sort=False)["norm"].transform("first")
        frame["relative"] = frame["relative"].fillna(frame["norm"] / first.where(first > 0))
    return frame


def ispasp_residual_figure(frame: pd.DataFrame, relative: bool = True) -> go.Figure:
    """‖Y_dense − Y_S‖ per i-SpaSP iteration, one line per pruned block."""
    if frame.empty:
        return _empty_figure("no i-SpaSP residual trace")
    column = "relative" if relative else "norm"
    fig = go.Figure()
    for block, group in frame.groupby("block", sort=False):
        fig.add_trace(go.Scatter(
            x=group["iteration"], y=group[column], mode="lines+markers", name=short_name(block),
            hovertemplate="iteration %{x}: " + ("%{y:.1%}" if relative else "%{y:.4g}")
                          + "<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(title_text="i-SpaSP iteration")
    if relative:
        fig.update_yaxes(title_text="‖Y_dense − Y_S‖ ÷ ‖Y_dense‖ (%)", tickformat=".0%",
                         rangemode="tozero")
    else:
        fig.update_yaxes(title_text="‖Y_dense − Y_S‖_F (log scale)", type="log")
    return _style(fig, legend_title="block")


def ispasp_units_matrix(traces: Iterable[Mapping[str, Any]]) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """"ispasp_units" rows → (block names, kept matrix, summary frame).

    The matrix is blocks × max channels: 1 = unit kept, 0 = removed, NaN = the block has fewer
    channels. The summary has block, channels, kept, kept_fraction. The last row of a block wins.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for t in traces:
        latest[str(t["block"])] = t
    blocks = list(latest)
    width = max((int(t["channels"]) for t in latest.values()), default=0)
    matrix = np.full((len(blocks), width), np.nan)
    rows = []
    for i, block in enumerate(blocks):
        t = latest[block]
        channels = int(t["channels"])
        matrix[i, :channels] = 0.0
        chosen = [int(c) for c in t["chosen"]]
        matrix[i, chosen] = 1.0
        rows.append({"block": block, "channels": channels, "kept": len(chosen),
                     "kept_fraction": len(chosen) / channels if channels else float("nan")})
    return blocks, matrix, pd.DataFrame(rows, columns=["block", "channels", "kept", "kept_fraction"])


def ispasp_units_figure(blocks: Sequence[str], matrix: np.ndarray) -> go.Figure:
    """One strip per block: which hidden units/channels i-SpaSP kept (dark) or removed (pale)."""
    if not len(blocks):
        return _empty_figure("no i-SpaSP unit trace")
    text = np.where(np.isnan(matrix), "", np.where(matrix == 1, "kept", "removed"))
    fig = go.Figure(go.Heatmap(
        z=matrix, x=np.arange(matrix.shape[1]), y=[short_name(b) for b in blocks],
        colorscale=MASK_COLORSCALE,
        zmin=0, zmax=1, showscale=False, xgap=1, ygap=4, text=text,
        hovertemplate="%{y}, unit %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="hidden unit / channel index", showgrid=False)
    fig.update_yaxes(title_text="block", autorange="reversed", showgrid=False, type="category")
    return _style(fig, height=max(200, 60 + 36 * len(blocks)))


# ---- SSC -------------------------------------------------------------------------------------------
def _discrete_colorscale(colors: Sequence[str]) -> list[list]:
    n = len(colors)
    scale = []
    for i, color in enumerate(colors):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def ssc_pattern_figure(pattern: Sequence[Sequence[int]], title: str | None = None,
                       height: int = 340, showscale: bool = True) -> go.Figure:
    """An SSC kernel pattern: for each output filter (row) and input channel (column), whether
    the kernel is empty, pointwise (centre tap only) or a full K×K kernel."""
    z = np.asarray(pattern, dtype=float)
    if z.ndim != 2 or z.size == 0:
        return _empty_figure("no SSC pattern")
    kinds = np.asarray(SSC_KINDS, dtype=object)[z.astype(int)]
    fig = go.Figure(go.Heatmap(
        z=z, zmin=-0.5, zmax=2.5, colorscale=_discrete_colorscale(SSC_COLORS), customdata=kinds,
        x=np.arange(z.shape[1]), y=np.arange(z.shape[0]), xgap=1 if z.shape[1] <= 64 else 0,
        ygap=1 if z.shape[0] <= 64 else 0, showscale=showscale,
        colorbar=dict(tickvals=[0, 1, 2], ticktext=list(SSC_KINDS), title="kernel", len=0.9),
        hovertemplate="filter %{y}, channel %{x}: %{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="input channel", showgrid=False)
    fig.update_yaxes(title_text="output filter", autorange="reversed", showgrid=False)
    if z.shape[0] == z.shape[1] and z.shape[0] <= 32:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title)
    return _style(fig, height=height)


def ssc_layers_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"ssc_pattern" rows → one row per layer: kind, shape, periods and parameters vs dense."""
    rows = []
    for t in traces:
        rows.append({"layer": t["layer"], "kind": t["kind"], "in": int(t["in"]), "out": int(t["out"]),
                     "kernel": int(t["kernel"]), "period_full": t.get("period_full"),
                     "period_pointwise": t.get("period_pointwise"), "params": int(t["params"]),
                     "dense_params": int(t["dense_params"])})
    frame = pd.DataFrame(rows, columns=["layer", "kind", "in", "out", "kernel", "period_full",
                                        "period_pointwise", "params", "dense_params"])
    frame["params_fraction"] = frame["params"] / frame["dense_params"].where(frame["dense_params"] > 0)
    return frame


# ---- weight unification (ADMM) -------------------------------------------------------------------------
def admm_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"admm" rows → round, w_minus_z, pruned_fraction, unified_fraction."""
    return pd.DataFrame([{"round": int(t["round"]), "w_minus_z": float(t["w_minus_z"]),
                          "pruned_fraction": float(t["pruned_fraction"]),
                          "unified_fraction": float(t["unified_fraction"])} for t in traces],
                        columns=["round", "w_minus_z", "pruned_fraction", "unified_fraction"])


def admm_distance_figure(frame: pd.DataFrame) -> go.Figure:
    """‖W − Z‖ after each ADMM round: how far the trained weights are from the unified ones."""
    if frame.empty:
        return _empty_figure("no ADMM trace")
    fig = go.Figure(go.Scatter(x=frame["round"], y=frame["w_minus_z"], mode="lines+markers",
                               name="‖W − Z‖_F",
                               hovertemplate="round %{x}: %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="ADMM round", dtick=1 if len(frame) <= 20 else None)
    fig.update_yaxes(title_text="‖W − Z‖_F (Frobenius norm, log scale)", type="log")
    fig.update_layout(showlegend=True)
    return _style(fig, legend_title="distance")


def admm_fractions_figure(frame: pd.DataFrame) -> go.Figure:
    """Fraction of micro-blocks pruned (magnitude 0) and unified (one shared magnitude) per round."""
    if frame.empty:
        return _empty_figure("no ADMM trace")
    fig = go.Figure()
    for column, name, color in (("pruned_fraction", "pruned blocks", "#999999"),
                                ("unified_fraction", "unified blocks", "#1f3b73")):
        fig.add_trace(go.Scatter(x=frame["round"], y=frame[column], mode="lines+markers", name=name,
                                 line=dict(color=color),
                                 hovertemplate="round %{x}: %{y:.1%}<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(title_text="ADMM round", dtick=1 if len(frame) <= 20 else None)
    fig.update_yaxes(title_text="micro-blocks (% of all blocks)")
    _percent_axis(fig, range=[0, 1.02])
    return _style(fig, legend_title="blocks")


# ---- shared by the pages -----------------------------------------------------------------------------
def method_description(name: str) -> str:
    """The registered method's description (paper, rule and interpretation notes), or ''."""
    from pruning.methods import METHODS

    return METHODS.entry(name).description if name in METHODS else ""


def runs_with_trace(store, runs: Sequence, kind: str) -> list:
    """The runs (in the given order) that recorded at least one trace of ``kind``."""
    return [r for r in runs if kind in store.trace_kinds(r.id)]
