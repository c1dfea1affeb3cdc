"""What one browser session remembers, in ``st.session_state``: ids and choices, never models.

Streamlit reruns a page's script on every interaction, so anything that must outlive a rerun goes
here. Keys are namespaced strings so pages cannot collide; values are plain ids (job ids, run ids)
that are looked up again in the job manager or the store, because the objects they name can be
large (models) or shared by other sessions (the store). One process serves many users, so none of
this is module-level state: ``st.session_state`` is per browser session.

Every view is also a link: ``linked(draw, key=..., param=..., codec=...)`` draws one widget whose
value lives in the URL's query parameter ``param``. When the widget is new in this session the
parameter is read (a value the codec refuses gives one ``st.warning`` naming the parameter, what
was wrong and what was used instead, and the widget keeps its default); after the widget is drawn
its value is written back, so the address bar always holds the page's choices and a copied link
reopens the same view in a fresh browser. Codecs (``choice``, ``choices``, ``number``, ``span``,
``flag``, ``text``) turn values into short readable strings and back; ``linked_tabs`` does the
same for the open tab.

Streamlit's own ``bind="query-params"`` is not used: it drops an unusable value silently (a
shared link must say what it could not restore), and it leaves a value equal to the widget's
default out of the URL, while a run picker's default is "the newest run", which changes as runs
are added; a link here names every choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import streamlit as st

from ui.safe_text import md

_JOB = "job:"
_RUNS = "runs:"


def job_id(slot: str) -> str | None:
    """The id of the background job this session started in ``slot`` (a page's name), if any."""
    return st.session_state.get(_JOB + slot)


def set_job(slot: str, job: str) -> None:
    st.session_state[_JOB + slot] = job


def clear_job(slot: str) -> None:
    st.session_state.pop(_JOB + slot, None)


def session_jobs() -> dict[str, str]:
    """{slot: job id} for every job this session started and has not cleared."""
    return {k[len(_JOB):]: v for k, v in st.session_state.items()
            if isinstance(k, str) and k.startswith(_JOB) and v}


def chosen_runs(key: str) -> list[str]:
    """Run ids chosen under ``key`` (e.g. the Runs page's comparison), in the order chosen."""
    return list(st.session_state.get(_RUNS + key, []))


def set_chosen_runs(key: str, run_ids: list[str]) -> None:
    st.session_state[_RUNS + key] = list(run_ids)


def remember(key: str, value: Any) -> None:
    """Keep a small choice (a string, a number, a list of ids) for this session."""
    st.session_state["choice:" + key] = value


def recall(key: str, default: Any = None) -> Any:
    return st.session_state.get("choice:" + key, default)


def last_run() -> str | None:
    """The run this session trained most recently (pages open on it by default)."""
    return st.session_state.get("last_run")


def set_last_run(run_id: str | None) -> None:
    if run_id:
        st.session_state["last_run"] = run_id


# ---- widgets whose value lives in the URL ----------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """How one widget's value is written into a query parameter and read back.

    ``read`` turns the parameter's text into ``(value, problem)``: ``problem`` is None when the
    text was fully usable, else a short reason; ``value`` is None when nothing usable was found
    (the widget then keeps its default), or the usable part (e.g. the known runs of a list).
    """
    read: Callable[[str], tuple[Any, str | None]]
    write: Callable[[Any], str]


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def choice(options: Sequence[Any]) -> Codec:
    """One of ``options`` (a selectbox, a radio), written as its text."""
    by_text = {_plain(o): o for o in options}

    def read(text: str) -> tuple[Any, str | None]:
        if text in by_text:
            return by_text[text], None
        return None, f"{text!r} is not one of the {len(by_text)} choices"
    return Codec(read, _plain)


def choices(options: Sequence[Any], limit: int | None = None) -> Codec:
    """Several of ``options`` (a multiselect), comma-separated; unknown ones are dropped, and
    those past ``limit`` (the widget's max_selections)."""
    by_text = {_plain(o): o for o in options}

    def read(text: str) -> tuple[Any, str | None]:
        items = [t for t in (x.strip() for x in text.split(",")) if t]
        unknown = [t for t in items if t not in by_text]
        known = list(dict.fromkeys(by_text[t] for t in items if t in by_text))
        problem = f"{', '.join(map(repr, unknown))} not among the choices" if unknown else None
        if limit is not None and len(known) > limit:
            known = known[:limit]
            problem = "; ".join(filter(None, [problem, f"more than {limit} chosen"]))
        return (known if known or not items else None), problem
    return Codec(read, lambda values: ",".join(_plain(v) for v in values))


def number(low: float, high: float, kind: type = float) -> Codec:
    """A number in [low, high] (a slider, a number input)."""
    def read(text: str) -> tuple[Any, str | None]:
        try:
            value = float(text)
        except ValueError:
            return None, f"{text!r} is not a number"
        if not math.isfinite(value) or not low <= value <= high:
            return None, f"{text!r} is outside {_plain(low)}–{_plain(high)}"
        if kind is int and value != int(value):
            return None, f"{text!r} is not a whole number"
        return kind(value), None
    return Codec(read, _plain)


def span(low: float, high: float) -> Codec:
    """A (start, end) range in [low, high] (a range slider), written "start-end"."""
    one = number(low, high)

    def read(text: str) -> tuple[Any, str | None]:
        parts = text.split("-")
        if len(parts) != 2:
            return None, f"{text!r} is not written start-end, e.g. 0.2-0.8"
        (a, problem_a), (b, problem_b) = one.read(parts[0]), one.read(parts[1])
        if problem_a or problem_b:
            return None, problem_a or problem_b
        if a > b:
            return None, f"{text!r} starts after it ends"
        return (a, b), None
    return Codec(read, lambda v: f"{_plain(float(v[0]))}-{_plain(float(v[1]))}")


def flag() -> Codec:
    """On or off (a checkbox, a toggle), written true/false."""
    def read(text: str) -> tuple[Any, str | None]:
        value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
        return value, None if value is not None else f"{text!r} is not true or false"
    return Codec(read, lambda v: "true" if v else "false")


def text(max_length: int = 200) -> Codec:
    """Free text (a text input); the page validates it like typed text."""
    def read(value: str) -> tuple[Any, str | None]:
        if len(value) > max_length:
            return None, f"longer than {max_length} characters"
        return value, None
    return Codec(read, str)


def linked(draw: Callable[..., Any], *args: Any, key: str, param: str, codec: Codec,
           **kwargs: Any) -> Any:
    """``draw(*args, key=key, **kwargs)`` (any Streamlit widget), its value kept in the URL.

    When the widget is new in this session, the query parameter ``param`` sets its start value
    (a refused value: an ``st.warning`` naming it, and the widget's default); after drawing, its
    value is written to ``param``. Returns what the widget returns.
    """
    if key not in st.session_state and param in st.query_params:
        raw = st.query_params[param]
        value, problem = codec.read(raw)
        if problem:
            used = "the default" if value is None else "the rest of it"
            st.warning(md(f"The link's {param}={raw!r} could not be used ({problem}); "
                          f"showing {used} instead."))
        if value is not None:
            st.session_state[key] = value
            # a start value passed to the widget as well would only make Streamlit warn
            for name in ("value", "index", "default"):
                kwargs.pop(name, None)
    result = draw(*args, key=key, **kwargs)
    current = st.session_state.get(key)
    if current is not None:
        written = codec.write(current)
        if st.query_params.get(param) != written:
            st.query_params[param] = written
    return result


def linked_tabs(labels: Sequence[str], *, key: str, param: str) -> Sequence[Any]:
    """``st.tabs(labels)`` whose open tab is kept in the URL's ``param`` (by its label).

    Switching tabs reruns the page (so the URL follows), and each tab knows whether it is the
    open one: draw a tab's content only ``if is_open(tab)``, so a page computes and sends one
    tab's charts, not every tab's (the browser would lay out the hidden ones too)."""
    return linked(st.tabs, list(labels), key=key, param=param, codec=choice(list(labels)),
                  on_change="rerun")


def is_open(tab: Any) -> bool:
    """Whether ``tab`` (from ``linked_tabs``) is the one shown; True where Streamlit does not
    say (then every tab is drawn, as plain ``st.tabs`` does)."""
    return getattr(tab, "open", None) is not False
