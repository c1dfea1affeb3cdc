"""Methods: what three papers' methods do inside, drawn from what their runs recorded.

- i-SpaSP (Wolfe & Kyrillidis, arXiv 2112.04905): residual per iteration, chosen units.
- SSC (Verma, Mehta, Si, Henao, Carin, arXiv 2210.12818): kernel patterns and special cases.
- Micro-structured weight unification (Lin et al., arXiv 2106.08301): ADMM and storage.

Each tab reads the traces of a finished run of that method (``RunStore.traces``) and offers to
train one on the default model when there is none.
"""
import json

import streamlit as st

from pruning.config import RunConfig
from ui import formatting, live, page, pickers, report, state
from ui.charts import methods
from ui.charts.style import short_name

page.page_setup(
    "Methods",
    "Three pruning methods that do more than zero small weights: **i-SpaSP** removes whole "
    "hidden units chosen by sparse signal recovery, **SSC** fixes a structured kernel pattern "
    "before training, and **weight unification** makes small blocks of weights share one "
    "magnitude. Each tab shows what happened inside one run.")

store = page.store()


def description(method: str) -> None:
    text = report.method_description(method)
    if text:
        with st.expander("What the method does (paper, rule, interpretation)"):
            st.markdown(text)


def method_runs(method: str, trace: str):
    """Finished runs of ``method`` that recorded ``trace``, newest first."""
    return pickers.runs_with_trace(store, pickers.finished_runs(
        store, statuses=("done", "stopped"), where=lambda r: r.config.method == method), trace)


def pick_run(method: str, trace: str, what: str, *, describe: bool = True):
    """The method's description, then a picker over its runs — or, with none, a button that
    trains one on the default model (returns None then)."""
    if describe:
        description(method)
    runs = method_runs(method, trace)
    if not runs:
        live.empty_state(
            f"No {what} run yet. Train one on the default model (small CNN on digits; a minute "
            "or two on a CPU) and this tab draws what happened inside it.",
            key=f"methods-{method}", config=RunConfig(method=method),
            button=f"Run {what} on the default model")
        return None
    return pickers.run_picker(f"{what} run", runs, key=f"{method}-run", param=f"{method}.run")


# ---- i-SpaSP -------------------------------------------------------------------------------------
def ispasp_tab() -> None:
    run = pick_run("ispasp", "ispasp_residual", "i-SpaSP")
    if run is None:
        return
    s = run.summary
    x = s.get("extras") or {}  # i-SpaSP's own results
    cols = st.columns(4)
    cols[0].metric("Accuracy after fine-tuning", formatting.fmt_pct(x.get("acc_finetuned")),
                   delta=None if x.get("acc_dense") is None or x.get("acc_finetuned") is None
                   else f"{(x['acc_finetuned'] - x['acc_dense']) * 100:+.1f} pts vs dense")
    cols[1].metric("Parameters", formatting.fmt_int(s.get("params_compact")),
                   delta=_relative(s.get("params_compact"), s.get("params_dense")),
                   delta_color="inverse", help=f"dense: {formatting.fmt_int(s.get('params_dense'))}")
    cols[2].metric("FLOPs per image", formatting.fmt_mflops(s.get("flops_compact")),
                   delta=_relative(s.get("flops_compact"), s.get("flops_dense")),
                   delta_color="inverse", help=f"dense: {formatting.fmt_mflops(s.get('flops_dense'))}")
    cols[3].metric("Units kept", f"{formatting.fmt_int(x.get('channels_kept'))} of "
                                 f"{formatting.fmt_int(x.get('channels_dense'))}",
                   help=f"over {x.get('blocks', '–')} blocks")

    left, right = st.columns([3, 2])
    with left:
        relative = state.linked(st.toggle, "relative to ‖Y_dense‖", value=True,
                                key="ispasp-relative",
                                help="Off: the absolute residual norm on a log axis.",
                                param="ispasp.relative", codec=state.flag())
        frame = methods.ispasp_residual_frame(store.traces(run.id, "ispasp_residual"))
        st.plotly_chart(methods.ispasp_residual_figure(frame, relative=relative), key="ispasp-residual")
        page.caption("How far each block's output from the kept units is from its dense output "
                     "(lower is better), from iteration 0 (no unit kept: the whole output is "
                     "missing, 100 %). Solid: the best set of units found so far, which the "
                     "search keeps, so it never rises. Dotted, open markers: the set each "
                     "iteration proposed from the residual's gradient, which may be worse; where "
                     "the two lines coincide the proposal was the new best. The first step's "
                     "fall is the search's main gain; a flat line after it means the search "
                     "settled on a fixed point.")
    with right:
        st.plotly_chart(methods.ispasp_accuracy_figure(methods.ispasp_accuracy_frame(x)), key="ispasp-acc")
        page.caption("Test accuracy of the dense network, right after i-SpaSP removed units "
                       "(no refit), and after the fine-tuning epochs.")

    blocks, matrix, kept = methods.ispasp_units_matrix(store.traces(run.id, "ispasp_units"))
    st.plotly_chart(methods.ispasp_units_figure(blocks, matrix), key="ispasp-units")
    page.caption("Which hidden units / channels each block kept (dark) and removed (pale), by "
                   "their index in the dense network; blocks are listed from input to output.")
    st.dataframe(kept.assign(kept_fraction=kept["kept_fraction"].map(formatting.fmt_pct)),
                 hide_index=True, column_config={"kept_fraction": "kept (%)"})


def _relative(after, before) -> str | None:
    if after is None or not before:
        return None
    return f"{after / before - 1:+.0%} vs dense"


# ---- SSC -----------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def baseline_configs(config_json: str) -> list[str]:
    """The "ssc" sweep preset's pruning-at-init baselines for an SSC run's config (as JSON)."""
    from pruning.methods.ssc import ssc_baseline_configs

    configs = ssc_baseline_configs(RunConfig.from_dict(json.loads(config_json)))
    return [c.to_json() for c in configs[1:]]


def ssc_comparison(run) -> None:
    st.subheader("SSC vs pruning at initialisation, same parameter budget")
    wanted = [RunConfig.from_dict(json.loads(c))
              for c in baseline_configs(run.config.to_json())]
    done = pickers.finished_runs(store)
    found = [next((r for r in done if r.config == c), None) for c in wanted]
    present = [r for r in found if r is not None]
    if present:
        table = methods.ssc_comparison_frame([run, *present])
        st.dataframe(table.drop(columns=["run_id", "params_dense"]), hide_index=True,
                     column_config={
                         "params_removed": st.column_config.NumberColumn("parameters removed",
                                                                         format="percent"),
                         "params_nonzero": st.column_config.NumberColumn("nonzero parameters"),
                         "test_acc": st.column_config.NumberColumn("test accuracy", format="percent"),
                         "flops": st.column_config.NumberColumn("FLOPs / image", format="compact"),
                         "latency_ms": st.column_config.NumberColumn("latency (ms / batch)",
                                                                     format="%.2f")})
        page.caption("The SSC run next to random, SNIP, GraSP and SynFlow pruning applied once at "
                       "initialisation, each removing as many parameters as SSC does (the "
                       "paper's baselines), same model, data, seed and epochs.")
    missing = [c for c, r in zip(wanted, found) if r is None]
    if missing:
        live.empty_state(
            f"{len(missing)} of the {len(wanted)} baselines for this run are missing "
            f"({', '.join(c.method for c in missing)}). They are the `ssc` sweep preset: "
            "`python -m pruning sweep --preset ssc`, or train them here.",
            key=f"ssc-baselines-{run.id}", configs=missing if len(missing) > 1 else None,
            config=missing[0] if len(missing) == 1 else None,
            button=f"Run the {len(missing)} missing baseline(s)")


def ssc_tab() -> None:
    description("ssc")
    st.markdown("**The special cases.** One pattern rule covers the familiar convolutions: "
                "each picture shows, for 8 filters × 8 input channels, which kernels are full "
                "K×K, pointwise (centre tap only) or empty.")
    st.plotly_chart(methods.ssc_cases_figure(methods.ssc_special_cases()), key="ssc-cases")
    page.caption("Kernel patterns from SSC's own pattern function with different periods: "
                   "P_k sets how often a filter gets a full kernel, P_p a pointwise one; hover "
                   "for the rule behind each picture.")
    run = pick_run("ssc", "ssc_pattern", "SSC", describe=False)
    if run is None:
        return
    s = run.summary
    x = s.get("extras") or {}  # SSC's own results
    cols = st.columns(4)
    cols[0].metric("Test accuracy", formatting.fmt_pct(s.get("test_acc")))
    cols[1].metric("Conv weights kept", formatting.fmt_pct(x.get("density")),
                   help=f"{formatting.fmt_int(x.get('conv_params'))} of "
                        f"{formatting.fmt_int(x.get('conv_params_dense'))} in the replaced convs")
    cols[2].metric("Parameters", formatting.fmt_int(s.get("params_compact")),
                   delta=_relative(s.get("params_compact"), s.get("params_dense")), delta_color="inverse")
    cols[3].metric("FLOPs per image", formatting.fmt_mflops(s.get("flops_compact")),
                   delta=_relative(s.get("flops_compact"), s.get("flops_dense")), delta_color="inverse")

    traces = store.traces(run.id, "ssc_pattern")
    layers = methods.ssc_layers_frame(traces)
    names = list(layers["layer"])
    name = state.linked(st.selectbox, "Layer", names, key="ssc-layer", param="ssc.layer",
                        codec=state.choice(names))
    trace = next(t for t in traces if t["layer"] == name)
    pattern = trace["pattern"]
    shown = (f" (first {len(pattern)} filters × {len(pattern[0])} channels of "
             f"{trace['out']} × {trace['in']})"
             if len(pattern) < trace["out"] or len(pattern[0]) < trace["in"] else "")
    st.plotly_chart(methods.ssc_pattern_figure(pattern, height=420), key="ssc-pattern")
    page.caption(f"Kernel pattern of {name}, a {trace['kind']} layer{shown}: for each output "
                   "filter and input channel, a full K×K kernel, a centre tap or nothing — fixed "
                   "before training.")
    st.dataframe(layers.assign(params_fraction=layers["params_fraction"].map(formatting.fmt_pct)),
                 hide_index=True, width="stretch", column_config={
                     "in": "in channels", "out": "out channels", "period_full": "P_k (full)",
                     "period_pointwise": "P_p (pointwise)", "params": "weights",
                     "dense_params": "dense weights", "params_fraction": "kept (% of dense)"})
    page.caption("Every replaced convolution: its kind, periods and the weights it keeps against "
                   "the dense conv it replaces.")
    ssc_comparison(run)


# ---- weight unification ---------------------------------------------------------------------------
def unification_tab() -> None:
    run = pick_run("unification", "admm", "weight unification")
    if run is None:
        return
    s = run.summary
    storage = store.traces(run.id, "unification_storage")
    table = methods.storage_frame(storage[-1]) if storage else None
    total = table[table["layer"] == "total"].iloc[0] if table is not None and len(table) else None
    block = s.get("unification_block") or run.config.method_params.get("block") or (1, 4)
    cols = st.columns(4)
    cols[0].metric("Test accuracy", formatting.fmt_pct(s.get("test_acc")))
    cols[1].metric("Blocks pruned", formatting.fmt_pct(s.get("unification_pruned_block_fraction")),
                   help=f"micro-blocks of {block[0]}×{block[1]} weights")
    cols[2].metric("Storage vs dense", "–" if total is None else f"{total['compression']:.1f}× smaller",
                   help="32 bits per dense weight against one 32-bit magnitude + one sign bit "
                        "per weight of each unified block; pruned blocks cost nothing")
    cols[3].metric("Multiplies vs dense (theoretical)",
                   "–" if total is None else f"{total['multiply_reduction']:.1f}× fewer",
                   help="counted, not measured: a unified block needs one multiply per output "
                        "row it spans, on hardware that exploits the shared magnitude")
    if s.get("latency_ms") is not None and s.get("latency_dense_ms") is not None:
        page.caption(f"Theoretical against measured: the multiplies and storage above are "
                     f"counted from the unified blocks. Measured on this machine, the final "
                     f"model takes {formatting.fmt_ms(s['latency_ms'])} per batch against "
                     f"{formatting.fmt_ms(s['latency_dense_ms'])} dense: PyTorch still runs the "
                     f"unified weights as a dense tensor, so no multiply is actually skipped.")

    frame = methods.admm_frame(store.traces(run.id, "admm"))
    page.charts_side_by_side(
        (methods.admm_distance_figure(frame), "admm-distance",
         "Distance between the trained weights W and their unified-and-pruned projection Z "
         "after each ADMM round: falling means W is taking the shape."),
        (methods.admm_fractions_figure(frame), "admm-fractions",
         "Share of micro-blocks that the projection prunes and unifies (fixed by the target) "
         "and how many of W's kept blocks already share one magnitude."))
    if table is not None:
        st.plotly_chart(methods.storage_figure(table), key="unification-storage")
        page.caption("Per layer, after the final projection: bits to store the weights and "
                     "multiplies per image, dense against unified-and-pruned blocks (both "
                     "theoretical: counted from the blocks, not measured).")
        shown = table.assign(layer=table["layer"].map(short_name),
                             dense_bits=table["dense_bits"] / 1e3, unified_bits=table["unified_bits"] / 1e3)
        st.dataframe(shown, hide_index=True, width="stretch", column_config={
            "blocks": "micro-blocks", "unified_blocks": "unified blocks",
            "pruned_blocks": "pruned blocks",
            "dense_bits": st.column_config.NumberColumn("dense (kbit)", format="%.1f"),
            "unified_bits": st.column_config.NumberColumn("unified (kbit)", format="%.1f"),
            "dense_multiplies": "dense multiplies / image",
            "unified_multiplies": "unified multiplies / image",
            "compression": st.column_config.NumberColumn("storage ×", format="%.1f×"),
            "multiply_reduction": st.column_config.NumberColumn("multiplies ×", format="%.1f×")})
        page.caption("The same per layer as numbers; × = how many times smaller / fewer than "
                     "dense, in theory.")


tabs = state.linked_tabs(["i-SpaSP", "SSC", "Weight unification"], key="methods-tab",
                         param="method")
with page.user_errors():
    for tab, draw in zip(tabs, (ispasp_tab, ssc_tab, unification_tab)):
        if state.is_open(tab):
            with tab:
                draw()
