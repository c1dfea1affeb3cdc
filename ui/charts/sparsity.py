"""A run's sparsities side by side: target, mask and effective sparsity, and the share of
parameters and FLOPs removed."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ui.charts.style import HEIGHT, PALETTE, empty_figure, grouped_bars, style


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
