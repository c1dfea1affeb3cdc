"""User text shown as text: escaped for Streamlit's Markdown and for plotly's HTML-like labels.

Streamlit renders Markdown in messages (``st.error``, ``st.info``, ``st.caption``, ...), widget
labels and ``help=`` tooltips: a run name or a URL parameter such as ``![t](http://host/x.png)``
would make every visitor's browser fetch that image, and ``[text](url)`` would show a live link.
Plotly renders a small HTML subset (``<a href>``, ``<b>``, ``<br>``) in trace names, category
ticks and titles. Everything that can hold text a visitor typed — run names and labels, model or
method names and parameters from a URL, and error messages that echo them — goes through ``md``
(Markdown) or ``html`` (plotly) before it is shown.
"""
from __future__ import annotations

import html as _html
import re
from typing import Any

import numpy as np

# Only what Markdown or Streamlit could read as syntax is escaped, so messages stay readable and
# searchable: backslash, "]" (every link, image and ":color[...]" directive needs one), angle brackets
# (autolinks, HTML), code/emphasis/strike/math marks; "_" at a word's edge (inside a word it is
# plain text); ":" before a letter or "/" (emoji and icon codes, "http://" autolinks); "www.";
# and block syntax at the start of a line (headings, quotes, lists, tables, setext rules).
_INLINE = re.compile(r"([\\\]<>`*~$|])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=[A-Za-z/])"
                     r"|(?<=www)\.")
_LINE_START = re.compile(r"^(\s*(?:\d+)?)([#>+=-]|(?<=\d)[.)])", re.MULTILINE)


def md(text: Any) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it literally: no link, image, HTML,
    emphasis, directive, math or block syntax survives."""
    escaped = _INLINE.sub(lambda m: "\\" + m.group(0), str(text))
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def html(text: Any) -> str:
    """``text`` escaped for plotly labels (which read ``<a>``, ``<b>``, ``<br>``, entities)."""
    return _html.escape(str(text), quote=False)


def _escaped(values: Any) -> Any:
    """A trace's text values with every string escaped (numbers and None unchanged)."""
    if values is None:
        return None
    if isinstance(values, str):
        return html(values)
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "OUS":
            return values  # numbers: nothing to escape
        return np.vectorize(lambda v: html(v) if isinstance(v, str) else v, otypes=[object])(values)
    try:
        items = list(values)
    except TypeError:
        return values
    if not any(isinstance(v, str) for v in _flat(items)):
        return values
    return [_escaped(v) if isinstance(v, (str, list, tuple, np.ndarray)) else v for v in items]


def _flat(items: list) -> list:
    out = []
    for v in items:
        if isinstance(v, np.ndarray):
            out.extend(v.ravel().tolist() if v.dtype.kind in "OUS" else [])
        else:
            out.extend(_flat(list(v)) if isinstance(v, (list, tuple)) else [v])
    return out


def escape_figure(fig):
    """Escape the data-derived text of every trace (and animation frame) of a plotly figure:
    names, category values, text, hover text, custom data. Our own templates and titles, which
    use ``<br>`` on purpose, are left alone."""
    traces = list(fig.data) + [t for frame in (fig.frames or ()) for t in frame.data]
    for trace in traces:
        name = getattr(trace, "name", None)
        template = getattr(trace, "hovertemplate", None) if "hovertemplate" in trace else None
        if isinstance(name, str) and isinstance(template, str) and name in template:
            # plotly express writes the group's value into the template ("run=<name>")
            trace.hovertemplate = template.replace(name, html(name))
        for attr in ("name", "x", "y", "text", "hovertext", "customdata"):
            if attr not in trace or getattr(trace, attr) is None:
                continue
            value = getattr(trace, attr)
            escaped = _escaped(value)
            if escaped is not value:
                setattr(trace, attr, escaped)
    return fig
