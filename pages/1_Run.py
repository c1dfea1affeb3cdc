"""Run page: choose model, dataset, method (with its own settings), schedule (with a live preview),
target sparsity and training settings; train in the background with progress and a Stop button.

Every choice is mirrored in the URL's query parameters (``ui.forms.config_to_query``), so copying
the address shares the exact setup; a link with a value that cannot be used shows an error naming
it and opens with the default for that field instead.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pruning.config import ConfigError, RunConfig
from pruning.data import DATASETS
from pruning.methods import METHODS
from pruning.methods.scheduled import ScheduledPruning
from pruning.models import MODELS
from pruning.schedules import SCHEDULES, schedule_from_config
from ui import charts, common, forms
from ui.safe_text import md

SLOT = "run"
K = "run."  # widget key prefix
IMAGE_SIZES = [0, 8, 16, 28, 32]
CHANNELS = [0, 1, 3]


def devices() -> list[str]:
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def init_widgets(config: RunConfig) -> None:
    """First visit of this session: widgets start from the URL's config (then keep their own).

    Streamlit forgets the state of a widget that was not drawn in the last run (the N:M fields
    while granularity is not nm, α/β while the schedule is not one-cycle …); writing each value
    back to itself at the top of every run keeps the user's choices when those widgets return.
    """
    if st.session_state.get(K + "initialised"):
        for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(K)]:
            st.session_state[key] = st.session_state[key]
        return
    for name, value in config.to_dict().items():
        if name == "method_params":
            for param, v in value.items():
                cls = METHODS.config_class(config.method)
                if cls is not None:
                    st.session_state[f"{K}p.{config.method}.{param}"] = (
                        forms.tuple_text(v) if isinstance(v, tuple) else v)
        elif name == "device" and value not in devices():
            continue
        else:
            st.session_state[K + name] = value
    st.session_state[K + "custom_window"] = not (config.window_start == -1.0
                                                 and config.window_end == -1.0)
    st.session_state[K + "initialised"] = True


def describe(registry, name: str) -> str:
    return registry.entry(name).description.split("\n")[0]


def form() -> RunConfig:
    """Draw the form and return the RunConfig it describes (not yet validated)."""
    v: dict = {}
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("What to train")
        c1, c2 = st.columns(2)
        v["model"] = c1.selectbox("model", MODELS.names(), key=K + "model",
                                  help="the network to prune")
        v["dataset"] = c2.selectbox("dataset", DATASETS.names(), key=K + "dataset",
                                    help="digits ships with the app; the others need their files "
                                         "(python -m pruning run --download)")
        st.caption(f"**{md(v['model'])}**: {md(describe(MODELS, v['model']))}  \n"
                   f"**{md(v['dataset'])}**: {md(describe(DATASETS, v['dataset']))}")
        c1, c2, c3 = st.columns(3)
        v["image_size"] = c1.selectbox("image size (px)", IMAGE_SIZES, key=K + "image_size",
                                       format_func=lambda s: "native" if s == 0 else str(s))
        v["channels"] = c2.selectbox("channels", CHANNELS, key=K + "channels",
                                     format_func=lambda c: "native" if c == 0 else str(c))
        v["width"] = c3.number_input("width multiplier", step=0.25, key=K + "width",
                                     help="scales the channel counts of models that have one")

        st.subheader("How to prune")
        v["method"] = st.selectbox("method", METHODS.names(), key=K + "method")
        st.caption(METHODS.entry(v["method"]).description)
        method_cls = METHODS.config_class(v["method"])
        if method_cls is not None:
            st.markdown("**Method settings**")
            params = forms.dataclass_widgets(method_cls, key=f"{K}p.{v['method']}")
            v["method_params"] = forms.changed_params(method_cls, params)
        else:
            v["method_params"] = {}
        scheduled = issubclass(METHODS.get(v["method"]), ScheduledPruning)
        if scheduled:
            c1, c2 = st.columns(2)
            v["scope"] = c1.selectbox("scope", ["global", "layerwise"], key=K + "scope",
                                      help="global: one threshold over all layers; layerwise: "
                                           "every layer pruned to the same sparsity")
            v["granularity"] = c2.selectbox(
                "granularity", ["unstructured", "nm", "channel"], key=K + "granularity",
                help="unstructured: single weights; nm: N of every M kept; channel: whole "
                     "output channels")
            if v["granularity"] == "nm":
                c1, c2 = st.columns(2)
                v["nm_n"] = int(c1.number_input("N (kept)", step=1, key=K + "nm_n"))
                v["nm_m"] = int(c2.number_input("M (group)", step=1, key=K + "nm_m"))
            c1, c2 = st.columns(2)
            v["prune_every"] = int(c1.number_input(
                "re-prune every (steps)", step=1, key=K + "prune_every"))
        v["prune_first_last"] = st.checkbox(
            "also prune the first and last layer", key=K + "prune_first_last",
            help="off by default: they are small and pruning them costs much accuracy")
    with right:
        st.subheader("When to prune")
        c1, c2 = st.columns(2)
        v["sparsity"] = c1.number_input("target sparsity", step=0.05, format="%.3f",
                                        key=K + "sparsity",
                                        help="fraction of the prunable weights set to zero")
        v["initial_sparsity"] = c2.number_input("initial sparsity", step=0.05, format="%.3f",
                                                key=K + "initial_sparsity",
                                                help="sparsity before the schedule starts")
        if scheduled:
            v.update(schedule_widgets())
            preview(RunConfig().replace(**{k: v[k] for k in (
                "schedule", "sparsity", "initial_sparsity", "alpha", "beta", "steps",
                "window_start", "window_end") if k in v}))
        else:
            st.caption(f"**{md(v['method'])}** decides itself when to prune during training; "
                       "the schedule settings do not apply to it.")
        st.subheader("Training")
        c1, c2, c3 = st.columns(3)
        v["epochs"] = int(c1.number_input("epochs", step=1, key=K + "epochs"))
        v["seed"] = int(c2.number_input("seed", step=1, key=K + "seed"))
        v["device"] = c3.selectbox("device", devices(), key=K + "device",
                                   help="auto: GPU when there is one, else CPU")
        with st.expander("More training settings"):
            c1, c2, c3 = st.columns(3)
            v["batch_size"] = int(c1.number_input("batch size", step=16, key=K + "batch_size"))
            v["optimizer"] = c2.selectbox("optimizer", ["adam", "sgd"], key=K + "optimizer")
            v["lr"] = c3.number_input("learning rate", format="%.4g", step=1e-3, key=K + "lr")
            v["lr_schedule"] = c1.selectbox("LR schedule", ["cosine", "constant", "step"],
                                            key=K + "lr_schedule")
            v["momentum"] = c2.number_input("momentum (SGD)", step=0.05, key=K + "momentum")
            v["weight_decay"] = c3.number_input("weight decay", format="%.2g", step=1e-4,
                                                key=K + "weight_decay")
            v["snapshots"] = int(c1.number_input("mask snapshots", step=5, key=K + "snapshots",
                                                 help="masks saved over the run for the Mask "
                                                      "evolution page"))
            v["max_train_samples"] = int(c2.number_input(
                "max training samples (0 = all)", step=1000, key=K + "max_train_samples"))
    return RunConfig().replace(**v)


def schedule_widgets() -> dict:
    v: dict = {}
    v["schedule"] = st.selectbox("schedule", SCHEDULES.names(), key=K + "schedule")
    st.caption(describe(SCHEDULES, v["schedule"]))
    fields = SCHEDULES.get(v["schedule"]).__dataclass_fields__
    c1, c2 = st.columns(2)
    if "alpha" in fields:
        v["alpha"] = c1.number_input("α (steepness)", step=1.0, key=K + "alpha")
        v["beta"] = c2.number_input("β (offset)", step=0.5, key=K + "beta")
    if "steps" in fields:
        v["steps"] = int(c1.number_input("steps", step=1, key=K + "steps"))
    if st.checkbox("custom pruning window", key=K + "custom_window",
                   help="the share of training during which the schedule moves; before it the "
                        "target is the initial sparsity, after it the final one"):
        start = st.session_state.get(K + "window_start", -1.0)
        end = st.session_state.get(K + "window_end", -1.0)
        default = SCHEDULES.get(v["schedule"]).default_window
        initial = (start, end) if 0 <= start <= end <= 1 else default
        kwargs = {} if K + "window" in st.session_state else {"value": initial}
        start, end = st.slider("window (fraction of training)", 0.0, 1.0, step=0.05,
                               key=K + "window", **kwargs)
        v["window_start"], v["window_end"] = float(start), float(end)
    else:
        v["window_start"] = v["window_end"] = -1.0
    return v


def preview(config: RunConfig) -> None:
    """The chosen schedule's curve, redrawn on every change of the form."""
    try:
        schedule = schedule_from_config(config)  # the very object a run would follow
    except ValueError as exc:
        st.caption(md(f"No preview: {exc}"))
        return
    progress = np.linspace(0.0, 1.0, 201)
    curve = pd.DataFrame({"progress": progress, "target": [schedule(float(t)) for t in progress],
                          "schedule": config.schedule})
    st.plotly_chart(charts.schedule_curves(curve, height=240), key="run-preview")
    common.caption(f"Live preview: the target sparsity the {config.schedule} schedule asks for "
                   "over training; the mask follows it step by step.")


def main() -> None:
    common.page_setup("Run a pruning session",
                      "Pick what to prune and how, then train. The address bar keeps every "
                      "choice, so a copied link reproduces this exact setup.")
    config, problems = forms.config_from_query(st.query_params.to_dict())
    if problems and not st.session_state.get(K + "initialised"):
        st.error("Some settings in the link could not be used and were reset to defaults — "
                 + md("; ".join(problems)) + ". Change them below.")
    init_widgets(config)
    try:
        config = form()
    except ConfigError as exc:
        st.error(md(exc))
        return
    forms.sync_query(config)
    error = None
    try:
        config.validate()
    except ConfigError as exc:
        error = str(exc)
    if error:
        st.error(md(f"Cannot run this setup: {error}"))

    running = common.slot_running(SLOT)
    if st.button("Run", type="primary", key="run-start", disabled=bool(error) or running):
        common.start_job(SLOT, [config])
    progress = common.show_job(SLOT)
    if progress is not None and not progress.running and progress.run_id:
        with common.user_errors():
            run = common.store().get_run(progress.run_id)
            st.subheader(f"Result: {md(run.label())}")
            common.run_report(run, key="run-result", curves=False)
            common.page_link("pages/8_Runs.py", "Compare it with other runs on the Runs page")


main()
