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
from ui.safe_text import html
from ui.masks_view import LayerFilm

# Kept weights dark, pruned ones pale: a sparse layer reads as a mostly empty picture.
MASK_COLORSCALE = [[0.0, "#f4f1ea"], [1.0, "#1f3b73"]]
# SSC kernel kinds: 0 empty, 1 pointwise (centre tap), 2 full K×K.
SSC_KINDS = ("empty", "pointwise (1×1)", "full K×K")
SSC_COLORS = ("#f4f1ea", "#e69f00", "#1f3b73")
# The four forms of the speed lab (pruning.speedlab.FORMS) and how the page names them.
FORM_LABELS = {"dense": "dense", "masked": "masked dense", "sparse": "sparse kernels",
               "physical": "physically pruned"}
FORM_COLORS = {"dense": "#999999", "masked": "#1f3b73", "sparse": "#e69f00", "physical": "#009e73"}


def short_name(layer: str) -> str:
    """``features.3.weight`` → ``features.3``: legends name layers, not their weight tensors."""
    return layer[: -len(".weight")] if layer.endswith(".weight") else layer


def _style(fig: go.Figure, height: int = charts.HEIGHT, legend_title: str | None = None) -> go.Figure:
    return charts.style(fig, height=height, legend_title=legend_title)


def _percent_axis(fig: go.Figure, axis: str = "y", **kwargs: Any) -> None:
    getattr(fig, f"update_{axis}axes")(tickformat=".0%", **kwargs)


def _value_axis(fig: go.Figure, values: Iterable[float], title: str) -> None:
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
                     height: int = 560) -> go.Figure:
    """One layer's mask over training, one heatmap per run side by side, with a play button.

    ``alignment``: for each animation frame, the snapshot index shown for each film (see
    ``masks_view.progress_alignment``); by default frame i shows snapshot i of every film.
    """
    if not films:
        return _empty_figure("no mask snapshots")
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
    _style(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=150))
    return fig


def churn_figure(churn: pd.DataFrame) -> go.Figure:
    """Entries that flipped between consecutive snapshots, summed over layers, one line per run.

    ``churn``: ``masks_view.churn_frame`` rows with an added ``run`` column.
    """
    if churn.empty:
        return _empty_figure("fewer than two snapshots: no churn to show")
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
    return _style(fig, legend_title="run")


def layer_sparsity_figure(frame: pd.DataFrame) -> go.Figure:
    """Each layer's sparsity at every snapshot; one panel per run (``run`` column)."""
    if frame.empty:
        return _empty_figure("no mask snapshots")
    runs = list(dict.fromkeys(frame["run"]))
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[html(r) for r in runs],
                        shared_yaxes=True,
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
    _style(fig, legend_title="layer")
    # subplot titles sit at the top edge: lift the legend above them
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.14))
    return fig


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
        _value_axis(fig, frame["norm"], "‖Y_dense − Y_S‖_F")
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


ISPASP_STAGES = (("acc_dense", "dense<br>(before pruning)"), ("acc_pruned", "right after<br>pruning"),
                 ("acc_finetuned", "after<br>fine-tuning"))


def ispasp_accuracy_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Test accuracy at the three stages of an i-SpaSP run (stage, accuracy)."""
    rows = [{"stage": label, "accuracy": float(summary[key])}
            for key, label in ISPASP_STAGES if summary.get(key) is not None]
    return pd.DataFrame(rows, columns=["stage", "accuracy"])


def ispasp_accuracy_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars: accuracy of the dense network, right after i-SpaSP cut it, and after fine-tuning."""
    if frame.empty:
        return _empty_figure("no accuracies recorded")
    fig = go.Figure(go.Bar(x=frame["stage"], y=frame["accuracy"], texttemplate="%{y:.1%}",
                           textposition="outside", cliponaxis=False, name="test accuracy",
                           marker_color=[charts.PALETTE[i % len(charts.PALETTE)] for i in range(len(frame))],
                           hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_xaxes(title_text="stage of the run", tickangle=0)
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 1.12])
    _percent_axis(fig)
    return _style(fig, height=320)


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
    rows, cols = z.shape
    # Fixed ranges and square cells: the pattern fills its panel without padding around it.
    fig.update_xaxes(title_text="input channel", showgrid=False, zeroline=False,
                     range=[-0.5, cols - 0.5], constrain="domain")
    fig.update_yaxes(title_text="output filter", showgrid=False, zeroline=False,
                     range=[rows - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_layout(title=title)
    return _style(fig, height=height)


def _kernel_text(kernel: Any) -> str:
    sizes = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel, kernel]
    return "×".join(str(int(k)) for k in sizes)


def ssc_layers_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"ssc_pattern" rows → one row per layer: kind, shape, periods, parameters vs dense."""
    rows = []
    for t in traces:
        rows.append({"layer": t["layer"], "kind": t["kind"], "in": int(t["in"]), "out": int(t["out"]),
                     "kernel": _kernel_text(t["kernel"]), "period_full": t.get("period_full"),
                     "period_pointwise": t.get("period_pointwise"), "params": int(t["params"]),
                     "dense_params": int(t["dense_params"])})
    frame = pd.DataFrame(rows, columns=["layer", "kind", "in", "out", "kernel", "period_full",
                                        "period_pointwise", "params", "dense_params"])
    frame["params_fraction"] = frame["params"] / frame["dense_params"].where(frame["dense_params"] > 0)
    return frame


#: (title, what it shows, in, out, period_full, period_pointwise, layout) of the didactic cases
SSC_CASES = (
    ("dense", "P_k = 1: every kernel full", 8, 8, 1, 0, "shifted"),
    ("depthwise", "P_k = C: one full kernel per filter, on its own channel", 8, 8, 8, 0, "shifted"),
    ("group (2 groups)", "P_k = 2, blocked layout: full kernels within the filter's group",
     8, 8, 2, 0, "blocked"),
    ("pointwise", "P_k = 0, P_p = 1: only centre taps (a 1×1 conv)", 8, 8, 0, 1, "shifted"),
    ("HetConv (P = 4)", "P_k = 4, P_p = 1: every 4th kernel full, the rest 1×1", 8, 8, 4, 1, "shifted"),
    ("SSC mix", "P_k = 4, P_p = 2: full, pointwise and empty kernels", 8, 8, 4, 2, "shifted"),
)


def ssc_special_cases() -> list[tuple[str, str, np.ndarray]]:
    """(title, note, pattern) of depthwise/group/pointwise/dense and two mixed SSC patterns,
    computed by the method's own ``pattern_matrix`` (no run needed)."""
    from pruning.methods.ssc import pattern_matrix

    return [(title, note, pattern_matrix(c_in, c_out, pk, pp, layout).numpy())
            for title, note, c_in, c_out, pk, pp, layout in SSC_CASES]


def ssc_cases_figure(cases: Sequence[tuple[str, str, np.ndarray]], height: int = 260) -> go.Figure:
    """The special cases side by side, one small kernel-pattern picture each."""
    fig = make_subplots(rows=1, cols=len(cases), subplot_titles=[t for t, _, _ in cases],
                        horizontal_spacing=0.025)
    scale = _discrete_colorscale(SSC_COLORS)
    for col, (_, note, pattern) in enumerate(cases, start=1):
        kinds = np.asarray(SSC_KINDS, dtype=object)[pattern.astype(int)]
        fig.add_trace(go.Heatmap(
            z=pattern, zmin=-0.5, zmax=2.5, colorscale=scale, showscale=col == len(cases),
            customdata=kinds, xgap=2, ygap=2,
            colorbar=dict(tickvals=[0, 1, 2], ticktext=list(SSC_KINDS), title="kernel", len=0.9),
            hovertemplate=note + "<br>filter %{y}, channel %{x}: %{customdata}<extra></extra>"),
            row=1, col=col)
        rows, cols = pattern.shape
        # Fixed ranges (not autorange) so the square cells fill each panel without padding.
        fig.update_yaxes(range=[rows - 0.5, -0.5], showgrid=False, zeroline=False,
                         showticklabels=False, scaleanchor=f"x{col if col > 1 else ''}",
                         constrain="domain", row=1, col=col)
        fig.update_xaxes(range=[-0.5, cols - 0.5], showgrid=False, zeroline=False,
                         showticklabels=False, constrain="domain", title_text="input channels →",
                         row=1, col=col)
    fig.update_yaxes(title_text="output filters →", row=1, col=1)
    _style(fig, height=height)
    fig.update_layout(margin=dict(t=50, b=10))
    fig.update_annotations(font_size=12)
    return fig


def ssc_comparison_frame(runs: Sequence) -> pd.DataFrame:
    """SSC and pruning-at-init runs with the same parameter budget, one row each.

    ``params_removed`` is the share of all parameters that are gone (SSC: never stored;
    baselines: zero under the mask), the budget the comparison holds equal.
    """
    rows = []
    for run in runs:
        s = run.summary
        nonzero, dense = s.get("params_nonzero"), s.get("params_dense")
        rows.append({"method": run.config.method,
                     "params_removed": 1.0 - nonzero / dense if nonzero is not None and dense else None,
                     "params_nonzero": nonzero, "params_dense": dense,
                     "test_acc": s.get("test_acc"), "flops": s.get("flops"),
                     "latency_ms": s.get("latency_ms"), "run_id": run.id})
    return pd.DataFrame(rows, columns=["method", "params_removed", "params_nonzero", "params_dense",
                                       "test_acc", "flops", "latency_ms", "run_id"])


# ---- weight unification (ADMM) -------------------------------------------------------------------------
ADMM_COLUMNS = ("round", "w_minus_z", "w_minus_z_rel", "pruned_fraction", "unified_fraction",
                "w_unified_fraction")


def admm_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"admm" rows → one row per ADMM round (round 0 = before the first Z/U update).

    w_minus_z: ‖W − Z‖_F; w_minus_z_rel: the same over ‖W‖_F; pruned/unified_fraction: blocks
    of the projection Z that are pruned / unified; w_unified_fraction: kept blocks whose own
    weights W are already (nearly) unified, i.e. |w| spread within 5 % of their mean.
    """
    rows = [{c: (float(t[c]) if c != "round" else int(t[c])) if t.get(c) is not None else np.nan
             for c in ADMM_COLUMNS} for t in traces]
    return pd.DataFrame(rows, columns=list(ADMM_COLUMNS))


def admm_distance_figure(frame: pd.DataFrame) -> go.Figure:
    """‖W − Z‖ after each ADMM round: how far the trained weights are from the unified ones."""
    if frame.empty:
        return _empty_figure("no ADMM trace")
    relative = frame["w_minus_z_rel"].notna().all()
    y = frame["w_minus_z_rel"] if relative else frame["w_minus_z"]
    fig = go.Figure(go.Scatter(
        x=frame["round"], y=y, mode="lines+markers",
        name="‖W − Z‖ ÷ ‖W‖" if relative else "‖W − Z‖_F",
        customdata=frame["w_minus_z"],
        hovertemplate="round %{x}: %{y:.3g}<br>‖W − Z‖_F = %{customdata:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="ADMM round (Z, U updated)")
    _value_axis(fig, y, "‖W − Z‖_F ÷ ‖W‖_F" if relative else "‖W − Z‖_F")
    fig.update_layout(showlegend=True)
    return _style(fig, legend_title="distance")


def admm_fractions_figure(frame: pd.DataFrame) -> go.Figure:
    """Block fractions per ADMM round: Z's pruned and unified blocks, and how many of W's kept
    blocks are already unified themselves."""
    if frame.empty:
        return _empty_figure("no ADMM trace")
    fig = go.Figure()
    for column, name, color, dash in (
            ("pruned_fraction", "pruned blocks (in Z)", "#999999", "dot"),
            ("unified_fraction", "unified blocks (in Z)", "#1f3b73", "dot"),
            ("w_unified_fraction", "kept blocks of W already unified", "#e69f00", None)):
        if frame[column].notna().any():
            fig.add_trace(go.Scatter(
                x=frame["round"], y=frame[column], mode="lines+markers", name=name,
                line=dict(color=color, dash=dash),
                hovertemplate="round %{x}: %{y:.1%}<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(title_text="ADMM round (Z, U updated)")
    fig.update_yaxes(title_text="share of micro-blocks (%)")
    _percent_axis(fig, range=[0, 1.02])
    return _style(fig, legend_title="")


STORAGE_KEYS = ("weights", "blocks", "unified_blocks", "pruned_blocks", "dense_bits", "unified_bits",
                "dense_multiplies", "unified_multiplies")


def storage_frame(trace: Mapping[str, Any]) -> pd.DataFrame:
    """"unification_storage" payload → one row per layer plus a final "total" row."""
    layers = list(trace.get("layers", []))
    rows = [{"layer": layer, **{k: int(trace[k][i]) for k in STORAGE_KEYS if k in trace}}
            for i, layer in enumerate(layers)]
    total = trace.get("total") or {}
    if total:
        rows.append({"layer": "total", **{k: int(total[k]) for k in STORAGE_KEYS if k in total}})
    frame = pd.DataFrame(rows, columns=["layer", *STORAGE_KEYS])
    frame["compression"] = frame["dense_bits"] / frame["unified_bits"].where(frame["unified_bits"] > 0)
    frame["multiply_reduction"] = (frame["dense_multiplies"]
                                   / frame["unified_multiplies"].where(frame["unified_multiplies"] > 0))
    return frame


def storage_figure(frame: pd.DataFrame) -> go.Figure:
    """Per layer: storage (kbit) and multiplies per image, dense vs unified-and-pruned."""
    layers = frame[frame["layer"] != "total"]
    if layers.empty:
        return _empty_figure("no storage report")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("storage of the weights", "multiplies per image"))
    names = [short_name(l) for l in layers["layer"]]
    for col, (dense, unified, scale, unit) in enumerate(
            (("dense_bits", "unified_bits", 1e3, "kbit"),
             ("dense_multiplies", "unified_multiplies", 1e3, "thousand multiplies")), start=1):
        for column, label, color in ((dense, "dense (32-bit floats)", "#999999"),
                                     (unified, "unified + pruned blocks", "#1f3b73")):
            fig.add_trace(go.Bar(x=names, y=layers[column] / scale, name=label, marker_color=color,
                                 legendgroup=label, showlegend=col == 1,
                                 hovertemplate="%{x}: %{y:,.1f} " + unit
                                               + "<extra>%{fullData.name}</extra>"),
                          row=1, col=col)
        fig.update_yaxes(title_text=unit, row=1, col=col)
        fig.update_xaxes(title_text="layer", row=1, col=col)
    fig.update_layout(barmode="group")
    _style(fig, legend_title="")
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.14))
    return fig


# ---- speed lab ----------------------------------------------------------------------------------------
FORMS_COLUMNS = ("form", "label", "batch_size", "median_ms", "p90_ms", "ms_per_image", "params",
                 "flops", "theoretical_speedup", "measured_speedup", "repeats", "explanation")


def forms_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``speedlab.four_forms`` rows → frame with a readable ``label`` and ms per image."""
    records = []
    for r in rows:
        records.append({**{k: r.get(k) for k in FORMS_COLUMNS if k in r},
                        "label": FORM_LABELS.get(r["form"], r["form"]),
                        "ms_per_image": float(r["median_ms"]) / int(r["batch_size"])})
    return pd.DataFrame(records, columns=list(FORMS_COLUMNS))


def forms_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table the page shows: one row per form and batch size, units in the headers."""
    return pd.DataFrame({
        "form": frame["label"], "batch": frame["batch_size"],
        "median (ms / batch)": frame["median_ms"].round(3), "p90 (ms / batch)": frame["p90_ms"].round(3),
        "parameters": frame["params"], "MFLOPs / image": (frame["flops"] / 1e6).round(3),
        "theoretical ×": frame["theoretical_speedup"].round(2),
        "measured ×": frame["measured_speedup"].round(2)})


def noisy_share(frame: pd.DataFrame, spread: float = 2.0) -> float:
    """Share of measurements whose 90th percentile exceeds ``spread`` × the median: a sign that
    something else was using the machine and the speed-ups are not to be trusted."""
    if frame.empty:
        return 0.0
    return float((frame["p90_ms"] > spread * frame["median_ms"]).mean())


def _form_lines(fig: go.Figure, frame: pd.DataFrame, y: str, *, dash: str | None = None,
                suffix: str = "", showlegend: bool = True, hover: str) -> None:
    for form, group in frame.groupby("form", sort=False):
        group = group.sort_values("batch_size")
        fig.add_trace(go.Scatter(
            x=group["batch_size"], y=group[y], mode="lines+markers", name=FORM_LABELS.get(form, form) + suffix,
            legendgroup=form, showlegend=showlegend,
            line=dict(color=FORM_COLORS.get(form), dash=dash),
            hovertemplate="batch %{x}: " + hover + "<extra>%{fullData.name}</extra>"))


def latency_figure(frame: pd.DataFrame) -> go.Figure:
    """Median latency per image of each form across batch sizes (log-log)."""
    if frame.empty:
        return _empty_figure("nothing measured yet")
    fig = go.Figure()
    _form_lines(fig, frame, "ms_per_image", hover="%{y:.3g} ms per image")
    fig.update_xaxes(title_text="batch size (images, log scale)", type="log",
                     tickvals=sorted(frame["batch_size"].unique()))
    _value_axis(fig, frame["ms_per_image"], "latency per image (ms)")
    return _style(fig, legend_title="form")


def speedup_figure(frame: pd.DataFrame) -> go.Figure:
    """Measured speed-up over dense (solid) against the FLOPs-based theoretical one (dashed)."""
    if frame.empty:
        return _empty_figure("nothing measured yet")
    shown = frame[frame["form"] != "dense"]
    fig = go.Figure()
    _form_lines(fig, shown, "measured_speedup", suffix=" — measured", hover="%{y:.2f}×")
    _form_lines(fig, shown, "theoretical_speedup", dash="dash", suffix=" — FLOPs ratio",
                hover="%{y:.2f}× in theory")
    fig.add_hline(y=1.0, line=dict(color="#666", width=1), annotation_text="as fast as dense",
                  annotation_position="bottom right")
    fig.update_xaxes(title_text="batch size (images, log scale)", type="log",
                     tickvals=sorted(frame["batch_size"].unique()))
    _value_axis(fig, pd.concat([shown["measured_speedup"], shown["theoretical_speedup"], pd.Series([1.0])]),
                "speed-up over dense (×)")
    return _style(fig, height=420, legend_title="")


def speedlab_inputs(store, run) -> tuple[Any, Any, tuple[int, int, int]]:
    """(final model on CPU, final mask or None, input shape (C, H, W)) of a finished run.

    The mask is the run's last snapshot; methods that changed the architecture (i-SpaSP, SSC)
    store none, and their model already is the pruned network.
    """
    from pruning import data

    model = store.load_model(run.id)
    snapshots = store.snapshots(run.id)
    mask = store.load_snapshot(run.id, snapshots[-1]["step"]) if snapshots else None
    channels, size, _ = data.dataset_shape(run.config)
    return model, mask, (channels, size, size)


def crossover_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """``speedlab.csr_crossover`` result → sparsity, dense_ms, csr_ms, speedup."""
    return pd.DataFrame({"sparsity": result["sparsities"], "dense_ms": result["dense_ms"],
                         "csr_ms": result["csr_ms"], "speedup": result["speedup"]})


def crossover_figure(result: Mapping[str, Any]) -> go.Figure:
    """Dense vs CSR time of one Linear layer as sparsity grows, and where CSR starts to win."""
    frame = crossover_frame(result)
    if frame.empty:
        return _empty_figure("nothing measured yet")
    fig = go.Figure()
    for column, name, color in (("dense_ms", "dense matmul", FORM_COLORS["dense"]),
                                ("csr_ms", "CSR sparse matmul", FORM_COLORS["sparse"])):
        fig.add_trace(go.Scatter(x=frame["sparsity"], y=frame[column], mode="lines+markers",
                                 name=name, line=dict(color=color),
                                 hovertemplate="%{x:.0%} sparse: %{y:.3g} ms<extra>%{fullData.name}</extra>"))
    crossover = result.get("crossover")
    if crossover is not None:
        fig.add_vline(x=crossover, line=dict(color="#333", dash="dash"),
                      annotation_text=f"CSR wins from ~{crossover:.0%}", annotation_position="top left")
    fig.update_xaxes(title_text="sparsity of the weight (% zeros)", tickformat=".0%")
    _value_axis(fig, pd.concat([frame["dense_ms"], frame["csr_ms"]]), "time per call (ms)")
    return _style(fig, legend_title="")


# ---- shared by the pages -----------------------------------------------------------------------------
def method_description(name: str) -> str:
    """The registered method's description (paper, rule and interpretation notes), or ''."""
    from pruning.methods import METHODS

    return METHODS.entry(name).description if name in METHODS else ""


def runs_with_trace(store, runs: Sequence, kind: str) -> list:
    """The runs (in the given order) that recorded at least one trace of ``kind``."""
    return [r for r in runs if kind in store.trace_kinds(r.id)]
