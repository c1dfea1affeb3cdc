"""Numbers as the app shows them: percentages, counts, MFLOPs, milliseconds and times as text,
and the registered metrics (``pruning.results.METRICS``) as table columns and ``st.metric`` tiles.

Missing values (None, NaN) read "–" everywhere.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from pruning.config import RunConfig
from pruning.methods import reads_target_sparsity, target_text
from pruning.results import METRICS, Metric
from pruning.store import Run
from ui.charts.style import NO_SCHEDULE, schedule_of


def fmt_pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}%}"


def fmt_int(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def fmt_mflops(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value) / 1e6:.2f} M"


def fmt_ms(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.2f} ms"


def fmt_time(epoch_seconds: float | None) -> str:
    if not epoch_seconds:
        return "–"
    return dt.datetime.fromtimestamp(epoch_seconds).strftime("%Y-%m-%d %H:%M")


def run_label(run: Run) -> str:
    """A run as the app names it: its name, else model · method · the schedule it followed
    (none for methods that ignore the schedule) · its real target · seed."""
    if run.name:
        return run.name
    c = run.config
    schedule = schedule_of(c.method, c.schedule)
    parts = [c.model, c.method] + ([] if schedule == NO_SCHEDULE else [schedule])
    return " · ".join(parts + [short_target(c), f"s{c.seed}"])


def short_target(config: RunConfig) -> str:
    """The real target, short: "90 %" for a mask sparsity, else the method's own words."""
    text = target_text(config)
    return text.replace(" target sparsity", "") if text.endswith(" target sparsity") else text


def shown_summary(run: Run) -> dict[str, Any]:
    """The run's summary as charts show it: without a target sparsity its method did not aim
    at (an i-SpaSP run asked for a keep ratio, so "target 90 %" beside it would mislead)."""
    summary = dict(run.summary)
    if not reads_target_sparsity(run.config):
        summary.pop("target_sparsity", None)
    return summary


#: how st.dataframe shows each metric format of pruning.results.FORMATS
COLUMN_FORMATS = {"pct": "percent", "int": "localized", "mflops": "compact", "ms": "%.2f ms",
                  "s": "%.1f s", "float": "%.4g"}


def metric_column(metric: Metric) -> Any:
    """The column config of a metric in ``st.dataframe``: its label, format and help."""
    return st.column_config.NumberColumn(metric.label, format=COLUMN_FORMATS[metric.fmt],
                                         help=metric.description or None)


def metric_columns(view: str) -> dict[str, Any]:
    """Column configs of every metric shown in ``view`` (pruning.results.VIEWS), in order."""
    return {metric.key: metric_column(metric) for metric in METRICS.view(view)}


def tile_label(metric: Metric) -> str:
    """A tile's label: the metric's label without its parenthesis (the help has it all), so it
    fits a narrow tile."""
    label = metric.label.split(" (")[0]
    return label[:1].upper() + label[1:]


def tile_text(metric: Metric, value: Any) -> str:
    """A tile's value, short enough for a fifth of the page: counts of ten thousand and more
    in thousands ("11.8 k"), so a tile never cuts its number off."""
    if metric.fmt == "int" and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and pd.notna(value) and abs(value) >= 10_000:
        return f"{value / 1000:,.1f} k"
    return metric.text(value)


def metric_tiles(summary: dict[str, Any], view: str, per_row: int = 5) -> None:
    """``st.metric`` tiles of the metrics shown in ``view`` (missing values as "–"); the exact
    value is in the tile's help."""
    metrics = METRICS.view(view)
    for start in range(0, len(metrics), per_row):
        for col, metric in zip(st.columns(per_row), metrics[start:start + per_row]):
            value = metric.value(summary)
            short = tile_text(metric, value)
            exact = metric.text(value)
            help_text = " ".join(p for p in (metric.label[:1].upper() + metric.label[1:] + ":",
                                             exact if exact != short else "",
                                             metric.description or "") if p)
            col.metric(tile_label(metric), short, help=help_text)
