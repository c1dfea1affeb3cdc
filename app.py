"""Pruning Explorer: the Streamlit entry point (``streamlit run app.py``) and the home page.

The entry point lists the pages with ``st.navigation``: "Home" (below) first, then every file in
``pages/`` in its numbered order, so a new page is one new file. The home page explains pruning in
a few sentences and offers one button that trains the default session (small CNN on the embedded
digits, magnitude pruning on the one-cycle schedule to 90 %) in a background job with live
curves; then it says where to go next and lists the recent runs.

When the first page is served, a background thread warms what the first run needs (imports, the
default data set and model, FLOPs, a training step: ``pruning.warmup``), once per server process
(``JobManager.warm_up``), so the first visitor's click trains at once instead of first importing
for seconds; a run started before the warm-up has ended waits for it rather than compete with it.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import formatting, live, page, pickers

ROOT = Path(__file__).resolve().parent
SLOT = "home"

NEXT_STEPS = (
    ("pages/1_Run.py", "Run", "change the model, method, schedule or target and train again"),
    ("pages/2_Schedules.py", "Schedules", "see one-shot, iterative, AGP and one-cycle side by side"),
    ("pages/3_Layer_attention.py", "Layer attention",
     "see how much each layer is pruned, and how ASWL learns it"),
    ("pages/4_Mask_evolution.py", "Mask evolution", "watch the masks change during training"),
    ("pages/5_Trade-offs.py", "Trade-offs", "sweep sparsities and draw the accuracy trade-off"),
    ("pages/6_Methods.py", "Methods", "look inside i-SpaSP, SSC and weight unification"),
    ("pages/7_Speed_lab.py", "Speed lab", "measure whether a sparse model is actually faster"),
    ("pages/8_Runs.py", "Runs", "compare runs side by side, export weights or ONNX"),
)


def _page_order(path: Path) -> tuple[float, str]:
    prefix = path.stem.split("_", 1)[0]
    return (float(prefix) if prefix.isdigit() else float("inf"), path.stem)


def home() -> None:
    page.page_setup(
        "Pruning Explorer",
        "**Pruning** removes weights from a trained (or training) network: each pruned weight is "
        "fixed at zero by a binary *mask*. Which weights go is decided by a *criterion* (e.g. the "
        "smallest magnitudes), how many by the *target sparsity* (90 % = nine weights in ten are "
        "zero), and when by a *schedule* (all at once, in steps, or gradually while training). "
        "Done well, accuracy barely moves while the model needs far fewer parameters and FLOPs — "
        "though a masked model is only *faster* if its zeros can be skipped, which is a story of "
        "its own (see Speed lab).")
    st.subheader("Try it: one pruning session in seconds")
    st.markdown("A small CNN learns the embedded 8×8 handwritten digits while magnitude pruning "
                "follows the one-cycle schedule up to 90 % sparsity.")
    running = live.slot_running(SLOT)
    if st.button(live.DEFAULT_SESSION_LABEL, type="primary", key="home-run",
                 disabled=running):
        live.start_job(SLOT, [live.default_config()])
    progress = live.show_job(SLOT)
    if progress is not None and not progress.running and progress.run_id:
        _result(progress.run_id)

    st.subheader("Where to go next")
    for path, label, what in NEXT_STEPS:
        if (ROOT / path).exists():
            page.page_link(path, f"**{label}** — {what}")

    _recent_runs()


def _result(run_id: str) -> None:
    with page.user_errors():
        run = page.store().get_run(run_id)
        if run.status != "done":
            return
        formatting.metric_tiles(run.summary, "headline")
        st.caption(f"Run `{run.id}` — open it on the Runs page to compare or export it.")


def _recent_runs() -> None:
    st.subheader("Recent runs")
    runs = page.runs(limit=8)
    if not runs:
        st.caption("No runs yet: the button above trains the first one.")
        return
    frame = pickers.runs_frame(runs)
    metrics = formatting.metric_columns("headline")
    cols = [c for c in ("label", "status", *metrics, "created") if c in frame]
    table = frame[cols].copy()
    table["created"] = table["created"].map(formatting.fmt_time)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"label": "run", "status": "status", **metrics,
                                "created": "started"})
    st.caption("The newest runs in the store, newest first; the Runs page has the full history.")


def main() -> None:
    live.manager().warm_up()  # once per server process; the first run waits for it to end
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [st.Page(str(p)) for p in sorted((ROOT / "pages").glob("*.py"), key=_page_order)]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
