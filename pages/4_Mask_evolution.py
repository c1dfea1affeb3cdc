"""Mask evolution: each prunable layer's mask over training, two runs side by side, and churn.

A mask snapshot is stored about 20 times per run (RunStore.snapshots). Here one layer's snapshots
play as a film (plotly frames), by default for a one-cycle run (Hubens et al., arXiv 2107.02086)
next to an iterative one with the same model and seed, so the only difference is the schedule.
"""
import pandas as pd
import streamlit as st

from pruning.config import RunConfig
from pruning.store import RunFilesError
from ui import live, page, pickers, state
from ui.charts import masks
from ui.charts.style import short_name
from ui import masks_view as mv
from ui.safe_text import md

page.page_setup(
    "Mask evolution",
    "Which weights survive, and when? Each picture is one layer's mask (dark = kept, pale = "
    "pruned, orange = regrown: pruned at an earlier snapshot and kept again) at a moment of "
    "training; press ▶ play to watch it thin out. Two schedules that reach the same sparsity "
    "can get there very differently — gradually (one-cycle) or in steps (iterative). Whether a "
    "pruned weight can come back depends on the method: magnitude pruning holds pruned weights "
    "at zero, so they stay pruned; methods that re-score every weight (ASWL's straight-through "
    "updates, re-scored criteria) can regrow some.")


@st.cache_data(show_spinner=False, max_entries=16)
def film_tables(home: str, run_id: str, count: int):
    """Layer names, churn and per-layer sparsity of a run's snapshots (``count`` keys the cache)."""
    snaps = mv.load_snapshots(page.store(), run_id)
    return (list(snaps[-1].mask) if snaps else [], mv.churn_frame(snaps),
            mv.layer_sparsity_frame(snaps))


@st.cache_data(show_spinner=False, max_entries=16)
def film(home: str, run_id: str, count: int, layer: str) -> mv.LayerFilm:
    return mv.layer_film(mv.load_snapshots(page.store(), run_id), layer)


def pair_configs() -> list[RunConfig]:
    base = RunConfig()
    return [base.replace(schedule="one_cycle"), base.replace(schedule="iterative")]


PAIR_HELP = ("Trains the default small CNN (digits, 90 %, seed 0) twice, under a one-cycle and "
             "an iterative schedule, so only the schedule differs (about a minute each on a CPU).")

store = page.store()
with page.user_errors():
    candidates = pickers.finished_runs(store, statuses=("done", "stopped"))
    counts = {r.id: len(store.snapshots(r.id)) for r in candidates}
    runs = [r for r in candidates if counts[r.id]]
    if not runs:
        live.empty_state("No run with mask snapshots yet. " + PAIR_HELP, key="masks",
                           configs=pair_configs(),
                           button="Run one-cycle and iterative (same model and seed)")
        st.stop()

    pair = mv.pick_pair(runs)
    if pair is None:
        with st.expander("No one-cycle / iterative pair with the same model and seed yet — "
                         "train one"):
            live.empty_state(PAIR_HELP, key="masks-pair", configs=pair_configs(),
                               button="Run one-cycle and iterative")
    left, right = st.columns(2)
    with left:
        run_a = pickers.run_picker("Left run", runs, key="masks-a",
                                  default=pair[0].id if pair else runs[0].id, param="left")
    others = [r for r in runs if r.id != run_a.id]
    with right:
        run_b = pickers.run_picker(
            "Right run", others, key="masks-b",
            default=pair[1].id if pair and pair[1].id != run_a.id else None,
            param="right") if others else None

    home = str(store.home)
    chosen = [run_a] + ([run_b] if run_b is not None else [])
    tables = {}
    for r in list(chosen):  # a run whose snapshot files are gone is named; the other still shows
        try:
            tables[r.id] = film_tables(home, r.id, counts[r.id])
        except RunFilesError as exc:
            st.error(md(f"{pickers.run_title(r)}: {exc}"))
            chosen.remove(r)
    if not chosen:
        st.stop()
    layers = tables[chosen[0].id][0]
    layer = state.linked(st.selectbox, "Layer", layers, format_func=short_name, key="masks-layer",
                         help="Only prunable layers have masks (by default the first and last "
                              "layers are not pruned).", param="layer", codec=state.choice(layers))
    films = [(pickers.run_title(r), film(home, r.id, counts[r.id], layer))
             for r in chosen if layer in tables[r.id][0]]
    if len(films) < len(chosen):
        st.info(f"The right run has no layer {md(layer)} (a different model); showing the left "
                "run only.")
    alignment = (mv.progress_alignment(films[0][1].epochs, films[1][1].epochs)
                 if len(films) == 2 else None)
    lead = films[0][1]
    opening = lead.opening()
    telling = next((i for i, a in enumerate(alignment) if a[0] >= opening), 0) if alignment \
        else opening
    frames = alignment or [(i,) for i in range(len(lead.frames))]
    start = telling
    if len(frames) > 1:  # the snapshot the film opens on is a choice, and part of the link
        labels = {i: f"{lead.epochs[a[0]]:.1f}" for i, a in enumerate(frames)}
        start = state.linked(st.select_slider, "Film opens at epoch", list(labels),
                             value=telling, format_func=labels.get, key="masks-frame",
                             param="frame", codec=state.choice(list(labels)),
                             help="The snapshot shown before ▶ play (epochs of the left run).")
    st.plotly_chart(masks.mask_film_figure(films, alignment, start=start), key="masks-film")
    picture = lead.picture
    regrown = {title: max(f.regrown, default=0) for title, f in films}
    regrowth = ("; ".join(f"{md(t)}: up to {n:,} regrown weights" for t, n in regrown.items() if n)
                or "no weight of this layer regrew in these runs: once pruned, it stayed pruned")
    page.caption(f"What am I looking at: {picture.describe()} Dark cells are kept weights, pale "
                 f"ones pruned, orange ones regrown ({regrowth}). "
                 + ("The film opens at epoch " if start == telling else
                    f"The film opens at epoch {lead.epochs[frames[start][0]]:.1f} (chosen "
                    "above); by default it opens at epoch ")
                 + f"{lead.epochs[opening]:.1f}, the first snapshot where this layer is at least "
                 f"half as sparse as at the end ({lead.sparsity[opening]:.0%} of "
                 f"{lead.sparsity[-1]:.0%}); the slider steps through every stored snapshot "
                 f"(aligned by training progress when the runs differ in length).")

    def stacked(index: int) -> pd.DataFrame:
        """Churn (1) or per-layer sparsity (2) of the chosen runs, with a ``run`` column."""
        return pd.concat([tables[r.id][index].assign(run=pickers.run_title(r)) for r in chosen],
                         ignore_index=True)

    st.subheader("Churn: weights that changed sides")
    st.plotly_chart(masks.churn_figure(stacked(1)), key="masks-churn")
    page.caption("Mask entries that flipped (kept → pruned or pruned → kept) between one "
                   "snapshot and the next, all layers together; hover for how many were "
                   "pruned and how many regrew.")

    st.subheader("Per-layer sparsity over training")
    st.plotly_chart(masks.layer_sparsity_figure(stacked(2)), key="masks-sparsity")
    page.caption("Share of each layer's weights pruned at every snapshot, one panel per run: "
                   "global pruning lets layers end at very different sparsities.")
