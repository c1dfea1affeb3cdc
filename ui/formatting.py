"""Numbers as the app shows them: percentages, counts, MFLOPs, milliseconds and times as text,
and the registered metrics (``pruning.results.METRICS``) as table columns and ``st.metric`` tiles.

Missing values (None, NaN) read "–" everywhere.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from pruning.results import METRICS, Metric


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


def metric_tiles(summary: dict[str, Any], view: str, per_row: int = 5) -> None:
    """``st.metric`` tiles of the metrics shown in ``view`` (missing values as "–")."""
    metrics = METRICS.view(view)
    for start in range(0, len(metrics), per_row):
        for col, metric in zip(st.columns(per_row), metrics[start:start + per_row]):
            col.metric(metric.label[:1].upper() + metric.label[1:],
                       metric.text(metric.value(summary)), help=metric.description or None)
