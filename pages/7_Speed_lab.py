"""Speed lab: "why isn't my pruned model faster?" — four forms of one run, measured here.

For a chosen run, ``pruning.speedlab.four_forms`` times the dense model, the masked dense model,
the model with sparse kernels (CSR on CPU, 2:4 on recent NVIDIA GPUs) and the physically pruned
model on this machine across batch sizes; ``csr_crossover`` finds the sparsity from which CSR beats
a dense matmul. The memory layout (PyTorch's default channels-first NCHW, or channels_last) is
chosen here and applied to every form and the input. Measurements run only when asked (they
take seconds) and are kept per run, device and layout in ``st.session_state`` as small dicts,
never models.
"""
import streamlit as st
import torch

from ui import formatting, live, page, pickers, state
from ui.charts import speed
from ui.safe_text import md

page.page_setup(
    "Speed lab",
    "**Why isn't it faster?** A 90 % sparse model still multiplies every zero unless something "
    "skips them. Here one pruned model runs in four forms on *this* machine: **dense** (the "
    "baseline), **masked dense** (zeros in place: what most pruning code runs), **sparse "
    "kernels** (CSR on a CPU, 2:4 on recent NVIDIA GPUs, only where they measured faster) and "
    "**physically pruned** (empty channels cut out: a smaller dense model).")

BATCH_SIZES = (1, 8, 32, 64, 256)
LAYOUTS = {"channels_first": "channels first (NCHW, PyTorch's default)",
           "channels_last": "channels last (NHWC)"}
LAYOUT_HELP = ("How image tensors are laid out in memory. PyTorch's default is channels first "
               "(NCHW). Channels last (NHWC) keeps each pixel's channels together, which CPU "
               "convolution and pooling kernels prefer: conv nets usually run faster with it, "
               "and a physically pruned model realises more of its FLOPs reduction, because "
               "BatchNorm, ReLU and pooling are memory-bound work that FLOPs do not count and "
               "NCHW max-pooling is slow on CPUs. Outputs, parameters and FLOPs are the same "
               "in both.")
store = page.store()


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def measure(run, batch_sizes, device: str, seconds: float, layout: str) -> dict:
    """Time the four forms in ``layout`` (and, once per session and device, the CSR
    crossover)."""
    from pruning import speedlab

    crossover = st.session_state.get(f"speedlab:crossover:{device}")
    if crossover is None and device == "cpu":
        crossover = speedlab.csr_crossover(device=device, max_seconds=min(seconds, 4.0))
        st.session_state[f"speedlab:crossover:{device}"] = crossover
    model, mask, shape = speed.speedlab_inputs(store, run)
    rows = speedlab.four_forms(model, mask, shape, device, batch_sizes=tuple(batch_sizes),
                               max_seconds=seconds, crossover=crossover, memory_format=layout)
    return {"rows": rows, "has_mask": mask is not None, "memory_format": layout,
            "mask_sparsity": None if mask is None else mask.sparsity(), "input_shape": list(shape)}


with page.user_errors():
    runs = [r for r in pickers.finished_runs(store) if store.model_path(r.id).exists()]
    if not runs:
        live.empty_state("No finished run with a saved model yet. Train the default session "
                           "(small CNN on digits, 90 % sparse; seconds on a CPU), then measure it "
                           "here.", key="speedlab")
        st.stop()

    run = pickers.run_picker("Run to measure", runs, key="speedlab-run", param="run")
    left, mid, layout_col, right = st.columns([3, 1, 2, 1])
    batch_sizes = state.linked(left.multiselect, "Batch sizes", BATCH_SIZES,
                               default=[1, 8, 64, 256], key="speedlab-batches", param="batches",
                               codec=state.choices(BATCH_SIZES))
    device = state.linked(mid.selectbox, "Device", devices(), key="speedlab-device",
                          param="device", codec=state.choice(devices()))
    layout = state.linked(layout_col.selectbox, "Memory layout", list(LAYOUTS),
                          format_func=LAYOUTS.get, key="speedlab-layout", help=LAYOUT_HELP,
                          param="layout", codec=state.choice(list(LAYOUTS)))
    budgets = [3.0, 6.0, 12.0]
    seconds = state.linked(right.select_slider, "Time budget (s)", budgets, value=6.0,
                           key="speedlab-seconds",
                           help="Total timing budget; fewer repeats on a slow machine.",
                           param="seconds", codec=state.choice(budgets))
    key = f"speedlab:{run.id}:{device}:{layout}"
    if st.button("Measure the four forms on this machine", type="primary",
                 disabled=not batch_sizes, key="speedlab-measure"):
        with st.spinner("Timing dense, masked, sparse-kernel and physically pruned forms …"):
            try:
                st.session_state[key] = measure(run, sorted(batch_sizes), device, seconds, layout)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory on the chosen device
                st.error(md(f"Measuring failed on {device}: {exc}.") + " Try fewer or smaller batch sizes "
                         "or another device.")

    result = st.session_state.get(key)
    if result is None:
        st.info("Press the button to time this run's model in its four forms (a few seconds). "
                "Nothing is measured until you do.")
        st.stop()

    frame = speed.forms_frame(result["rows"])
    first = result["rows"][0]
    row_layout = first.get("memory_format")
    st.caption(f"Measured on **{first['device']}**, {first['threads']} threads, "
               f"{first['dtype']}, input {'×'.join(map(str, result['input_shape']))}, "
               + (f"**{LAYOUTS[row_layout]}** layout; " if row_layout in LAYOUTS else
                  "no image layout (flat input); ")
               + ("mask sparsity " + formatting.fmt_pct(result["mask_sparsity"])
                  if result["has_mask"] else
                  "this run's method changed the architecture itself (no mask): every form is "
                  "the already-pruned network, so compare with the run's dense latency in Runs")
               + ".")
    noisy = speed.noisy_share(frame)
    if noisy > 0.25:
        st.warning(f"{noisy:.0%} of these measurements vary a lot (90th percentile over twice the "
                   "median): something else is using this machine, so the speed-ups below are "
                   "unreliable. Close other work and measure again.")
    table = speed.forms_table(frame)
    # frame keeps the rows' order, so the layout column lines up with the table
    table.insert(2, "layout", [r.get("memory_format") or "—" for r in result["rows"]])
    st.dataframe(table, hide_index=True, width="stretch", height=36 * (len(table) + 1) + 4)
    page.caption("One row per form and batch size: memory layout, median and 90th-percentile "
                   "time per batch, parameters each form needs, FLOPs it executes, and the "
                   "speed-up over dense that FLOPs promise (theoretical) against the one measured.")
    other_layout = next(name for name in LAYOUTS if name != layout)
    other = st.session_state.get(f"speedlab:{run.id}:{device}:{other_layout}")
    if other is not None and row_layout is not None:  # both layouts measured: compare them
        by_layout = {layout: result["rows"], other_layout: other["rows"]}

        def timed(layout_name: str, batch: int) -> str | None:
            rows = {r["form"]: r for r in by_layout[layout_name] if r["batch_size"] == batch}
            if "dense" not in rows or "physical" not in rows:
                return None
            return (f"{layout_name}: dense {rows['dense']['median_ms']:.3g} ms → pruned "
                    f"{rows['physical']['median_ms']:.3g} ms "
                    f"({rows['physical']['measured_speedup']:.2f}×)")

        lines = []
        for batch in sorted({r["batch_size"] for r in result["rows"]}):
            parts = [timed(name, batch) for name in LAYOUTS]
            if all(parts):
                promise = next(r["theoretical_speedup"] for r in result["rows"]
                               if r["form"] == "physical" and r["batch_size"] == batch)
                lines.append(f"- batch {batch}: " + "; ".join(parts)
                             + f"; FLOPs promise {promise:.2f}×")
        if lines:
            st.markdown("**Physically pruned form in both layouts** (time per batch; each "
                        "speed-up is over the dense model in the same layout):\n"
                        + "\n".join(lines))

    largest = frame[frame["batch_size"] == frame["batch_size"].max()]
    st.markdown("\n".join(f"- **{row.label}** ({row.measured_speedup:.2f}× measured, "
                          f"{row.theoretical_speedup:.2f}× in theory): {row.explanation}"
                          for row in largest.itertuples()))
    page.caption(f"Why each form is as fast as it is, at batch {int(frame['batch_size'].max())}.")
    with st.expander("Explanations at every batch size"):
        st.markdown("\n".join(f"- batch {row.batch_size}, **{row.label}**: {row.explanation}"
                              for row in frame.itertuples()))

    page.charts_side_by_side(
        (speed.latency_figure(frame), "speedlab-latency",
         "Time per image of each form as the batch grows (batch size on a log axis): larger "
         "batches spread fixed per-call costs over more images."),
        (speed.speedup_figure(frame), "speedlab-speedup",
         "Speed-up over dense that each form achieved (solid) against the FLOPs ratio it "
         "promises (dashed); below the grey line it is slower than dense."))

    crossover = st.session_state.get(f"speedlab:crossover:{device}")
    if crossover is not None:
        st.subheader("When does a sparse kernel pay off?")
        st.plotly_chart(speed.crossover_figure(crossover), key="speedlab-crossover")
        page.caption(f"Time of one {crossover['in_features']}×{crossover['out_features']} "
                       f"linear layer on a batch of {crossover['batch_size']}, as a dense matmul "
                       f"and as CSR, at growing sparsity: {crossover['explanation']}")
