"""Layer attention: what ASWL learned about each layer (He, Shi, Dong, arXiv 2111.02399).

ASWL gives every conv and dense layer a trainable attention a_l; the layer is pruned at
p_l = min((1 − a_l)^γ, 0.99). This page draws a_l and p_l over training and the final per-layer
ratios next to uniform and global-magnitude allocations at the same overall sparsity.
"""
import streamlit as st

from pruning.methods import method_config, target_text
from pruning.config import RunConfig
from ui import formatting, live, page, pickers, report
from ui.charts import layers
from ui.charts.style import short_name

page.page_setup(
    "Layer attention",
    "**ASWL** learns *how much to prune each layer* while training from scratch: every conv "
    "and dense layer gets an attention a_l that scales its output, and the layer is "
    "magnitude-pruned at its own ratio p_l = (1 − a_l)^γ. A regulariser pulls the attentions "
    "down, each in proportion to its layer's share of the weights, until the network reaches "
    "the target; layers the loss needs pull theirs back up and are pruned less.")

with st.expander("How ASWL works, and how this implementation reads the paper"):
    st.markdown(report.method_description("aswl"))

store = page.store()
with page.user_errors():
    runs = pickers.runs_with_trace(store, pickers.finished_runs(store, where=lambda r: r.config.method == "aswl"),
                              "aswl")
    if not runs:
        live.empty_state(
            "No ASWL run yet. Train one (small CNN on digits, 90 % target; about a minute on a "
            "CPU) and this page draws its attentions and per-layer ratios.",
            key="aswl", config=RunConfig(method="aswl"),
            button="Run ASWL on the default model")
        st.stop()

    run = pickers.run_picker("ASWL run", runs, key="aswl-run", param="run")
    s = run.summary
    cols = st.columns(4)
    cols[0].metric("Target", formatting.short_target(run.config),
                   help=target_text(run.config))
    cols[1].metric("Reached (mask)", formatting.fmt_pct(s.get("mask_sparsity")))
    cols[2].metric("Test accuracy", formatting.fmt_pct(s.get("test_acc")))
    settings = method_config(run.config)  # the run's values, defaults filled in
    cols[3].metric("λ, γ", f"{settings.lam:g}, {settings.gamma:g}")

    frame = layers.aswl_frame(store.traces(run.id, "aswl"))
    overlap = "".join(
        f" The lines of {', '.join(short_name(n) for n in group)} lie on top of each other."
        for group in layers.overlapping_layers(frame, "attention"))
    page.charts_side_by_side(
        (layers.aswl_lines_figure(frame, "attention"), "aswl-attention",
         "Each layer's attention a_l over training (all start at 0.5). The density regulariser "
         "pulls attentions down, harder for layers with more weights; the task loss pulls a "
         "layer it needs back up (most for layers without a BatchNorm after them, which "
         "would otherwise cancel a_l). " + layers.attention_story(frame) + overlap),
        (layers.aswl_lines_figure(frame, "ratio"), "aswl-ratio",
         "Each layer's pruning ratio p_l = (1 − a_l)^γ, the mirror image of its attention "
         "(capped at 0.99). The dashed line is the whole network's sparsity"
         + (f": here it peaked at {formatting.fmt_pct(1 - frame['density'].min())} and ended "
            f"at {formatting.fmt_pct(1 - frame.sort_values('step')['density'].iloc[-1])} "
            f"(target {formatting.short_target(run.config)})."
            if not frame.empty and frame["density"].notna().any() else ".") + overlap))

    finals = store.traces(run.id, "aswl_final")
    if finals:
        allocation = layers.allocation_frame(finals[-1])
        st.subheader("Final per-layer ratios vs simple allocations")
        st.plotly_chart(layers.allocation_figure(allocation), key="aswl-allocation")
        overall = layers.overall_sparsity(allocation)
        page.caption(
            "Share of each layer's weights pruned at the end: ASWL's learned choice beside "
            "pruning every layer equally (uniform) and one magnitude threshold over all layers "
            "(global magnitude), all at the same overall sparsity "
            f"({formatting.fmt_pct(overall.get('ASWL (learned)'))}).")
    else:
        st.info("This run stopped before ASWL recorded its final ratios.")
