"""What three papers' methods do inside, drawn from the traces their runs recorded.

"ispasp_residual"/"ispasp_units" (i-SpaSP, Wolfe & Kyrillidis, arXiv 2112.04905), "ssc_pattern"
(SSC, Verma et al., arXiv 2210.12818), "admm"/"unification_storage" (micro-structured weight
unification, Lin et al., arXiv 2106.08301). Each ``*_frame`` turns a run's stored traces
(``RunStore.traces(run_id, kind)`` rows: ``{"kind", "step", **payload}``) into a tidy frame;
each ``*_figure`` draws one. Fractions stay fractions, shown on percent axes.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.charts.style import (MASK_COLORSCALE, PALETTE, empty_figure, percent_axis, short_name, style,
                             value_axis)

# SSC kernel kinds: 0 empty, 1 pointwise (centre tap), 2 full K×K.
SSC_KINDS = ("empty", "pointwise (1×1)", "full K×K")
SSC_COLORS = ("#f4f1ea", "#e69f00", "#1f3b73")


# ---- i-SpaSP ---------------------------------------------------------------------------------------
def ispasp_residual_frame(traces: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """"ispasp_residual" rows → block, iteration, loss, norm, relative, candidate_relative.

    The trace's ``residual`` is the loss L = ½‖Y_dense − Y_S‖²_F of the best support found so
    far, the quantity i-SpaSP minimises; ``norm`` is ‖Y_dense − Y_S‖_F = √(2L) and ``relative``
    that norm over ‖Y_dense‖_F (from the trace when the method recorded it, else over the
    block's first norm), comparable across blocks. ``candidate_relative`` is the same for the
    iteration's own candidate support (the trace's ``candidate``), which may rise and fall.
    Each block starts with an iteration-0 row: the empty support, Y_S = 0, relative residual 1.
    """
    rows, recorded = [], {}
    for t in traces:
        loss = float(t["residual"])
        candidate = t.get("candidate")
        if t.get("relative") is not None:
            recorded.setdefault(str(t["block"]), set()).add("relative")
        rows.append({"block": str(t["block"]), "iteration": int(t["iteration"]), "loss": loss,
                     "norm": float(np.sqrt(2.0 * max(loss, 0.0))),
                     "relative": float(t["relative"]) if t.get("relative") is not None else np.nan,
                     "candidate_norm": (float(np.sqrt(2.0 * max(float(candidate), 0.0)))
                                        if candidate is not None else np.nan)})
    columns = ["block", "iteration", "loss", "norm", "relative", "candidate_relative"]
    frame = pd.DataFrame(rows, columns=columns[:-1] + ["candidate_norm"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if frame["relative"].isna().any():
        first = frame.groupby("block", sort=False)["norm"].transform("first")
        frame["relative"] = frame["relative"].fillna(frame["norm"] / first.where(first > 0))
    # ‖Y_dense‖ of each block, recovered from any row: norm / relative
    dense = (frame["norm"] / frame["relative"].where(frame["relative"] > 0)).groupby(
        frame["block"], sort=False).transform("max")
    frame["candidate_relative"] = frame["candidate_norm"] / dense
    # Iteration 0, the empty support (Y_S = 0, residual = ‖Y_dense‖), for blocks whose trace
    # recorded ‖Y_dense‖ (through ``relative``); older traces start at iteration 1.
    known = [b for b, g in frame.groupby("block", sort=False) if "relative" in recorded.get(b, ())]
    starts = pd.DataFrame({"block": known, "iteration": 0, "relative": 1.0,
                           "candidate_relative": 1.0})
    starts["norm"] = starts["block"].map(dense.groupby(frame["block"], sort=False).first())
    starts["loss"] = starts["norm"] ** 2 / 2
    order = {b: i for i, b in enumerate(frame["block"].unique())}
    frame = pd.concat([starts, frame], ignore_index=True) if len(starts) else frame
    frame = frame.sort_values(["block", "iteration"], key=lambda c: c.map(order) if c.name == "block"
                              else c, kind="stable").reset_index(drop=True)
    return frame[columns]


def ispasp_residual_figure(frame: pd.DataFrame, relative: bool = True) -> go.Figure:
    """‖Y_dense − Y_S‖ per i-SpaSP iteration, one colour per pruned block: the best support so
    far (solid, what the search keeps) and each iteration's own candidate (dotted, open
    markers), from iteration 0 (empty support)."""
    if frame.empty:
        return empty_figure("no i-SpaSP residual trace", height=220)
    fig = go.Figure()
    for i, (block, group) in enumerate(frame.groupby("block", sort=False)):
        color = PALETTE[i % len(PALETTE)]
        dense = group["norm"].iloc[0]  # iteration 0: the empty support's residual is ‖Y_dense‖
        best = group["relative"] if relative else group["norm"]
        candidate = group["candidate_relative"] if relative else group["candidate_relative"] * dense
        fmt = "%{y:.1%}" if relative else "%{y:.4g}"
        fig.add_trace(go.Scatter(
            x=group["iteration"], y=best, mode="lines+markers", name=f"{short_name(block)} best",
            legendgroup=block, line=dict(color=color, width=2.5),
            hovertemplate="iteration %{x}: best so far " + fmt + "<extra>%{fullData.name}</extra>"))
        if candidate.isna().all():  # older traces did not record the candidates
            continue
        fig.add_trace(go.Scatter(
            x=group["iteration"], y=candidate, mode="lines+markers",
            name=f"{short_name(block)} candidate", legendgroup=block,
            line=dict(color=color, width=1.2, dash="dot"),
            marker=dict(symbol="circle-open", size=7, color=color),
            hovertemplate="iteration %{x}: this iteration's candidate " + fmt
                          + "<extra>%{fullData.name}</extra>"))
    fig.update_xaxes(title_text="i-SpaSP iteration (0 = empty support)", dtick=1
                     if frame["iteration"].max() <= 20 else None)
    if relative:
        fig.update_yaxes(title_text="‖Y_dense − Y_S‖ ÷ ‖Y_dense‖ (%)", tickformat=".0%",
                         rangemode="tozero")
    else:
        value_axis(fig, frame["norm"], "‖Y_dense − Y_S‖_F (output units)")
    return style(fig, legend_title="block")


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
        return empty_figure("no i-SpaSP unit trace", height=220)
    text = np.where(np.isnan(matrix), "", np.where(matrix == 1, "kept", "removed"))
    fig = go.Figure(go.Heatmap(
        z=matrix, x=np.arange(matrix.shape[1]), y=[short_name(b) for b in blocks],
        colorscale=MASK_COLORSCALE,
        zmin=0, zmax=1, showscale=False, xgap=1, ygap=4, text=text,
        hovertemplate="%{y}, unit %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="hidden unit / channel index", showgrid=False)
    fig.update_yaxes(title_text="block", autorange="reversed", showgrid=False, type="category")
    return style(fig, height=max(200, 60 + 36 * len(blocks)))


ISPASP_STAGES = (("acc_dense", "dense"), ("acc_pruned", "right after pruning"),
                 ("acc_finetuned", "after fine-tuning"))


def ispasp_accuracy_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Test accuracy at the three stages of an i-SpaSP run (stage, accuracy)."""
    rows = [{"stage": label, "accuracy": float(summary[key])}
            for key, label in ISPASP_STAGES if summary.get(key) is not None]
    return pd.DataFrame(rows, columns=["stage", "accuracy"])


def ispasp_accuracy_figure(frame: pd.DataFrame) -> go.Figure:
    """Bars: accuracy of the dense network, right after i-SpaSP cut it, and after fine-tuning."""
    if frame.empty:
        return empty_figure("no accuracies recorded", height=220)
    fig = go.Figure(go.Bar(x=frame["stage"], y=frame["accuracy"], texttemplate="%{y:.1%}",
                           textposition="outside", cliponaxis=False, name="test accuracy",
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(frame))],
                           hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_xaxes(title_text="stage of the run", tickangle=0)
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 1.12])
    percent_axis(fig)
    return style(fig, height=320)


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
        return empty_figure("no SSC pattern", height=220)
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
    return style(fig, height=height)


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
    style(fig, height=height)
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
        return empty_figure("no ADMM trace", height=220)
    relative = frame["w_minus_z_rel"].notna().all()
    y = frame["w_minus_z_rel"] if relative else frame["w_minus_z"]
    fig = go.Figure(go.Scatter(
        x=frame["round"], y=y, mode="lines+markers",
        name="‖W − Z‖ ÷ ‖W‖" if relative else "‖W − Z‖_F",
        customdata=frame["w_minus_z"],
        hovertemplate="round %{x}: %{y:.3g}<br>‖W − Z‖_F = %{customdata:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="ADMM round (Z, U updated)")
    value_axis(fig, y, "‖W − Z‖_F ÷ ‖W‖_F" if relative else "‖W − Z‖_F")
    fig.update_layout(showlegend=True)
    return style(fig, legend_title="distance")


def admm_fractions_figure(frame: pd.DataFrame) -> go.Figure:
    """Block fractions per ADMM round: Z's pruned and unified blocks, and how many of W's kept
    blocks are already unified themselves."""
    if frame.empty:
        return empty_figure("no ADMM trace", height=220)
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
    percent_axis(fig, range=[0, 1.02])
    return style(fig, legend_title="")


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
        return empty_figure("no storage report", height=220)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("storage of the weights (theoretical)",
                                        "multiplies per image (theoretical)"))
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
    style(fig, legend_title="")
    fig.update_layout(margin=dict(t=90), legend=dict(y=1.14))
    return fig
