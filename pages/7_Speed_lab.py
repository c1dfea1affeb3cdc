"""Speed lab: "why isn't my pruned model faster?" — four forms of one run, measured here.

For a chosen run, ``pruning.speedlab.four_forms`` times the dense model, the masked dense model,
the model with sparse kernels (CSR on CPU, 2:4 on recent NVIDIA GPUs) and the physically pruned
model on this machine across batch sizes; ``csr_crossover`` finds the sparsity from which CSR beats
a dense matmul. Measurements run only when asked (they take seconds) and are kept per run in
``st.session_state`` as small dicts, never models.
"""
import streamlit as st
import torch

from ui import analysis_charts as ac
from ui import common

common.page_setup(
    "Speed lab",
    "**Why isn't it faster?** A 90 % sparse model still multiplies every zero unless something "
    "skips them. Here one pruned model runs in four forms on *this* machine: **dense** (the "
    "baseline), **masked dense** (zeros in place: what most pruning code runs), **sparse "
    "kernels** (CSR on a CPU, 2:4 on recent NVIDIA GPUs, only where they measured faster) and "
    "**physically pruned** (empty channels cut out: a smaller dense model).")

BATCH_SIZES = (1, 8, 32, 64, 256)
store = common.store()


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def measure(run, batch_sizes, device: str, seconds: float) -> dict:
    """Time the four forms (and, once per session and device, the CSR crossover)."""
    from pruning import speedlab

    crossover = st.session_state.get(f"speedlab:crossover:{device}")
    if crossover is None and device == "cpu":
        crossover = speedlab.csr_crossover(device=device, max_seconds=min(seconds, 4.0))
        st.session_state[f"speedlab:crossover:{device}"] = crossover
    model, mask, shape = ac.speedlab_inputs(store, run)
    rows = speedlab.four_forms(model, mask, shape, device, batch_sizes=tuple(batch_sizes),
                               max_seconds=seconds, crossover=crossover)
    return {"rows": rows, "has_mask": mask is not None,
            "mask_sparsity": None if mask is None else mask.sparsity(), "input_shape": list(shape)}


with common.user_errors():
    runs = [r for r in common.finished_runs(store) if store.model_path(r.id).exists()]
    if not runs:
        common.empty_state("No finished run with a saved model yet. Train the default session "
                           "(small CNN on digits, 90 % sparse; seconds on a CPU), then measure it "
                           "here.", key="speedlab")
        st.stop()

    run = common.run_picker("Run to measure", runs, key="speedlab-run")
    left, mid, right = st.columns([3, 1, 1])
    batch_sizes = left.multiselect("Batch sizes", BATCH_SIZES, default=[1, 8, 64, 256],
                                   key="speedlab-batches")
    device = mid.selectbox("Device", devices(), key="speedlab-device")
    seconds = right.select_slider("Time budget (s)", [3.0, 6.0, 12.0], value=6.0,
                                  key="speedlab-seconds",
                                  help="Total timing budget; fewer repeats on a slow machine.")
    key = f"speedlab:{run.id}:{device}"
    if st.button("Measure the four forms on this machine", type="primary",
                 disabled=not batch_sizes, key="speedlab-measure"):
        with st.spinner("Timing dense, masked, sparse-kernel and physically pruned forms …"):
            try:
                st.session_state[key] = measure(run, sorted(batch_sizes), device, seconds)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory on the chosen device
                st.error(f"Measuring failed on {device}: {exc}. Try fewer or smaller batch sizes "
                         "or another device.")

    result = st.session_state.get(key)
    if result is None:
        st.info("Press the button to time this run's model in its four forms (a few seconds). "
                "Nothing is measured until you do.")
        st.stop()

    frame = ac.forms_frame(result["rows"])
    first = result["rows"][0]
    st.caption(f"Measured on **{first['device']}**, {first['threads']} threads, "
               f"{first['dtype']}, input {'×'.join(map(str, result['input_shape']))}; "
               + ("mask sparsity " + common.fmt_pct(result["mask_sparsity"])
                  if result["has_mask"] else
                  "this run's method changed the architecture itself (no mask): every form is "
                  "the already-pruned network, so compare with the run's dense latency in Runs")
               + ".")
    noisy = ac.noisy_share(frame)
    if noisy > 0.25:
        st.warning(f"{noisy:.0%} of these measurements vary a lot (90th percentile over twice the "
                   "median): something else is using this machine, so the speed-ups below are "
                   "unreliable. Close other work and measure again.")
    table = ac.forms_table(frame)
    st.dataframe(table, hide_index=True, width="stretch", height=36 * (len(table) + 1) + 4)
    common.caption("One row per form and batch size: median and 90th-percentile time per batch, "
                   "parameters each form needs, FLOPs it executes, and the speed-up over dense that "
                   "FLOPs promise (theoretical) against the one measured.")

    largest = frame[frame["batch_size"] == frame["batch_size"].max()]
    st.markdown("\n".join(f"- **{row.label}** ({row.measured_speedup:.2f}× measured, "
                          f"{row.theoretical_speedup:.2f}× in theory): {row.explanation}"
                          for row in largest.itertuples()))
    common.caption(f"Why each form is as fast as it is, at batch {int(frame['batch_size'].max())}.")
    with st.expander("Explanations at every batch size"):
        st.markdown("\n".join(f"- batch {row.batch_size}, **{row.label}**: {row.explanation}"
                              for row in frame.itertuples()))

    left, right = st.columns(2)
    with left:
        st.plotly_chart(ac.latency_figure(frame), key="speedlab-latency")
        common.caption("Time per image of each form as the batch grows (batch size on a log axis): "
                       "larger batches spread fixed per-call costs over more images.")
    with right:
        st.plotly_chart(ac.speedup_figure(frame), key="speedlab-speedup")
        common.caption("Speed-up over dense that each form achieved (solid) against the FLOPs "
                       "ratio it promises (dashed); below the grey line it is slower than dense.")

    crossover = st.session_state.get(f"speedlab:crossover:{device}")
    if crossover is not None:
        st.subheader("When does a sparse kernel pay off?")
        st.plotly_chart(ac.crossover_figure(crossover), key="speedlab-crossover")
        common.caption(f"Time of one {crossover['in_features']}×{crossover['out_features']} "
                       f"linear layer on a batch of {crossover['batch_size']}, as a dense matmul "
                       f"and as CSR, at growing sparsity: {crossover['explanation']}")
