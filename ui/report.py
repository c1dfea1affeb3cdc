"""What the app says about one run and one method: a run's report (status, metric tiles,
curves, sparsities, per-layer bars, configuration) and a registered method's description; and,
for several runs, their groups over seeds (``seed_groups``), the groups' spread
(``spread_table``) and the verdicts on their differences in words (``verdict_lines``), by the one
rule of ``pruning.compare``."""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from pruning import compare
from pruning.methods import reads_target_sparsity
from pruning.results import time_breakdown_text
from pruning.store import Run, RunStore
from ui import forms
from ui.charts.layers import layer_bars
from ui.charts.sparsity import sparsity_bars
from ui.charts.style import schedule_of
from ui.charts.training import SPARSITY_LINES, training_curves
from ui.pickers import epochs_frame
from ui.formatting import metric_tiles, run_label, shown_summary
from ui.page import caption, store
from ui.safe_text import md


def run_report(run: Run, *, key: str, store_: RunStore | None = None,
               curves: bool = True) -> None:
    """A run's result: status, the sparsities and ratios side by side, curves, per-layer bars."""
    store_ = store_ or store()
    s = shown_summary(run)
    if run.status == "failed":
        st.error(md(f"This run failed: {(run.error or 'no reason recorded').splitlines()[0]}"))
    elif run.status == "stopped":
        st.warning(f"This run was stopped after {s.get('epochs_done', 0)} epoch(s); "
                   "its history up to then is kept.")
    elif run.status == "running":
        st.info("This run is still training; its history so far is shown.")
    missing = store_.missing_files(run.id, run.status)
    if missing:
        st.warning(md(f"Run {run.id}'s files are incomplete: {', '.join(missing[:5])}"
                      f"{' …' if len(missing) > 5 else ''} missing in {store_.run_dir(run.id)}. "
                      f"Its history and summary below are intact; what needs those files "
                      f"(mask pictures, export) cannot be made for it."))
    metric_tiles(s, "detail")
    if s.get("latency_device"):
        caption(f"Latency: median over batches of {s.get('latency_batch_size', '–')} on "
                f"{s['latency_device']}, the final model after physical removal.")
    where_time_went = time_breakdown_text(s)
    if where_time_went:
        caption(f"Where the time went: {where_time_went}.")
    rows = store_.epochs(run.id)
    if curves and rows:
        frame = pd.DataFrame(rows)
        if "target_sparsity" not in s:  # a target the method did not aim at is not drawn
            frame = frame.drop(columns=["target_sparsity"], errors="ignore")
        st.plotly_chart(training_curves(frame), key=f"{key}-curves")
        caption(f"Test accuracy (left) and sparsity (right) after each epoch: {SPARSITY_LINES}.")
    if s:
        left, right = st.columns(2)
        with left:
            st.plotly_chart(sparsity_bars({run_label(run): s}, height=340),
                            key=f"{key}-sparsity")
            caption("Three sparsities side by side (target, mask, effective), then the share of "
                    "all parameters that are zero and of FLOPs skipped or removed.")
        layers = next((r["layer_sparsity"] for r in reversed(rows) if r.get("layer_sparsity")),
                      None)
        with right:
            if layers:
                st.plotly_chart(layer_bars(layers, title=None), key=f"{key}-layers")
                caption("Final sparsity of each prunable layer, input side on top: a global "
                        "criterion lets layers differ, a layerwise one prunes each equally.")
    with st.expander("Configuration and command line"):
        st.code(forms.cli_command(run.config), language="bash")
        st.json(run.config.to_dict(), expanded=False)


def method_description(name: str) -> str:
    """The registered method's description (paper, rule and interpretation notes), or ''."""
    from pruning.methods import METHODS

    return METHODS.entry(name).description if name in METHODS else ""


# ---- several runs over seeds ----------------------------------------------------------------------
def _value(field: str, config: dict) -> str:
    value = config.get(field)
    if field == "schedule":
        value = schedule_of(config.get("method", ""), str(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def seed_groups(runs: Sequence[Run]) -> dict[str, str]:
    """{run id: its group's label}: runs that differ only in their seed (``compare.group_key``)
    share a label, which names what differs between the groups (just the values when one
    setting differs, e.g. "agp"; "method ispasp · schedule no schedule" for methods that ignore
    the schedule), or method and schedule when all runs are one group."""
    keys = {r.id: compare.group_key(r) for r in runs}
    distinct = list(dict.fromkeys(keys.values()))
    configs = [dict(k) for k in distinct]
    fields = [f for f in (configs[0] if configs else {})
              if len({repr(c.get(f)) for c in configs}) > 1]
    if not fields:
        fields = ["method", "schedule"]
    labels = {}
    for key in distinct:
        config = dict(key)
        if len(fields) == 1:
            labels[key] = _value(fields[0], config)
        else:
            labels[key] = " · ".join(f"{f.replace('_', ' ')} {_value(f, config)}" for f in fields)
    return {run_id: labels[key] for run_id, key in keys.items()}


def grouped_epochs(store_: RunStore, runs: Sequence[Run]) -> pd.DataFrame:
    """Epoch rows of ``runs`` with ``group`` (``seed_groups``), ``method`` and ``schedule``
    (the one it followed) columns, for ``training_curves(..., group="group")``."""
    groups = seed_groups(runs)
    frame = epochs_frame(store_, [r.id for r in runs], groups)
    by_id = {r.id: r for r in runs}
    frame["group"] = frame["run"]
    if "target_sparsity" in frame:  # a target the method did not aim at is not drawn
        aimed = {r.id: reads_target_sparsity(r.config) for r in runs}
        frame["target_sparsity"] = frame["target_sparsity"].where(frame["run_id"].map(aimed))
    frame["method"] = [by_id[i].config.method for i in frame["run_id"]]
    frame["schedule"] = [schedule_of(by_id[i].config.method, by_id[i].config.schedule)
                         for i in frame["run_id"]]
    return frame


def seeds_text(runs: Sequence[Run]) -> str:
    """"n = 3 seeds per group" or "n = 1–3 seeds per group" for captions."""
    sizes = pd.Series(list(seed_groups(runs).values())).value_counts()
    if sizes.empty:
        return "no runs"
    low, high = int(sizes.min()), int(sizes.max())
    n = str(low) if low == high else f"{low}–{high}"
    return f"n = {n} seed{'s' if high > 1 else ''} per line"


def spread_table(runs: Sequence[Run], metric: str = "test_acc") -> pd.DataFrame:
    """One row per group of finished runs: n seeds, mean ± std and min–max of ``metric``."""
    labels = seed_groups(runs)
    rows = []
    for g in compare.group_runs(runs, [metric]):
        s = g.metrics.get(metric)
        rows.append({"group": labels[g.run_ids[0]], "seeds": g.n,
                     f"mean ± std": "–" if s is None else
                     f"{s.mean:.1%} ± {s.std:.1%}" if g.n > 1 else f"{s.mean:.1%} (one seed)",
                     "min – max": "–" if s is None else f"{s.low:.1%} – {s.high:.1%}"})
    return pd.DataFrame(rows, columns=["group", "seeds", "mean ± std", "min – max"])


def verdict_lines(runs: Sequence[Run], metric: str = "test_acc") -> list[str]:
    """One sentence per pair of groups that differ in one setting: the better one, by how much,
    and whether that exceeds the seed spread, lies within it, or is smaller than one test
    example (``compare.pairwise``)."""
    labels = seed_groups(runs)
    groups = compare.group_runs(runs, [metric])
    lines = []
    for d in compare.pairwise(groups, metric):
        a, b = labels[d.a.run_ids[0]], labels[d.b.run_ids[0]]
        size = f"{d.delta * 100:.2f} points" if metric in compare.ACCURACY_METRICS \
            else f"{d.delta:.3g}"
        lines.append(f"**{md(a)}** over **{md(b)}** by {size}: {d.verdict}"
                     + (f" (one test example = {1 / d.a.test_examples:.2%})"
                        if d.verdict == compare.SMALLER_THAN_ONE_EXAMPLE and d.a.test_examples
                        else "") + ".")
    return lines


def seed_curves(runs: Sequence[Run], *, key: str, what: str) -> None:
    """The runs' accuracy and sparsity curves, runs that differ only in their seed averaged into
    one line with a ± one standard deviation band; ``what`` opens the caption (it may use
    ``{seeds}``, the seed counts in words)."""
    epochs = grouped_epochs(store(), runs)
    st.plotly_chart(training_curves(epochs, group="group"), key=key)
    caption(what.format(seeds=seeds_text(runs)) + " One colour per method, one dash and marker "
            f"per schedule. Right: {SPARSITY_LINES}.")


def verdicts(runs: Sequence[Run], what: str) -> None:
    """The differences between the runs' groups in words (``compare``'s rule), then ``what``."""
    lines = verdict_lines(runs)
    if lines:
        st.markdown("\n".join(f"- {line}" for line in lines))
        caption(f"{what}: {compare.RULE}.")

