"""Run page: choose model, dataset, method (with its own settings), schedule (with a live preview),
target sparsity and training settings; train in the background with progress and a Stop button.

Under the dataset choice, ``ui.datasets.dataset_panel`` says whether its files are on this server
and offers to download a missing one (Run stays disabled, with the reason, until they are).

Every choice is mirrored in the URL's query parameters (``ui.forms.config_to_query``), so copying
the address shares the exact setup; a link with a value that cannot be used shows an error naming
it and opens with the default for that field instead.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pruning.config import ConfigError, RunConfig, Spec, specs
from pruning.schedules import SCHEDULES, schedule_from_config
from pruning.validation import follows_schedule, registry, validate
from ui import datasets, formatting, forms, live, page, report
from ui.charts import schedules
from ui.safe_text import md

SLOT = "run"
K = "run."  # widget key prefix
SPECS = specs(RunConfig)
#: how the form's sections sit on the page: (column, section, inside an expander)
LAYOUT = (("left", "what to train", False), ("left", "how to prune", False),
          ("right", "when to prune", False), ("right", "training", False),
          ("right", "more training", True))
EXPANDER_LABEL = "More training settings"


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
    while granularity is not nm, a schedule's settings while another schedule is chosen …);
    writing each value back to itself at the top of every run keeps the user's choices when
    those widgets return.
    """
    if st.session_state.get(K + "initialised"):
        for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(K)]:
            st.session_state[key] = st.session_state[key]
        return
    owners = {"method_params": f"{K}p.{config.method}.", "schedule_params": f"{K}s.{config.schedule}."}
    for name, value in config.to_dict().items():
        if name in owners:
            for param, v in value.items():
                st.session_state[owners[name] + param] = (
                    forms.tuple_text(v) if isinstance(v, tuple) else v)
        elif name == "device" and value not in devices():
            continue
        else:
            st.session_state[K + name] = value
    st.session_state[K + "custom_window"] = not config.default_window()
    st.session_state[K + "initialised"] = True


def describe(registry_key: str, name: str) -> str:
    return registry(registry_key).entry(name).description.split("\n")[0]


def shown(s: Spec, v: dict) -> bool:
    """Whether the form draws ``s`` given the values chosen above it."""
    if s.kind is dict or s.section == "":
        return False
    if s.follows_schedule and not follows_schedule(v["method"]):
        return False
    return all(v.get(k) == want for k, want in s.when.items())


def own_params(v: dict, kind: str) -> None:
    """The chosen method's or schedule's own settings, from its registered dataclass."""
    name, prefix = (v["method"], "p") if kind == "method" else (v["schedule"], "s")
    cls = registry(kind + "s").config_class(name)
    if cls is None:
        v[kind + "_params"] = {}
        return
    st.markdown(f"**{'Method' if kind == 'method' else 'Schedule'} settings**")
    params = forms.dataclass_widgets(cls, key=f"{K}{prefix}.{name}")
    v[kind + "_params"] = forms.changed_params(cls, params)


def section(name: str, v: dict) -> None:
    """Draw one section's settings in field order; registry choices full width with their
    description, the others three to a row."""
    row: list = []
    for s in SPECS:
        if s.section != name or not shown(s, v):
            continue
        if s.registry is not None:
            row = []
            v[s.name] = st.selectbox(s.label, registry(s.registry).names(), key=K + s.name,
                                     help=s.help)
            st.caption(f"**{v[s.name]}**: {describe(s.registry, v[s.name])}")
            if s.name == "dataset":
                # not under K: init_widgets rewrites K keys, which buttons refuse
                datasets.dataset_panel(v[s.name], key="run-data")
            elif s.name == "method":
                own_params(v, "method")
            elif s.name == "schedule":
                own_params(v, "schedule")
                v.update(window_widgets(v["schedule"]))
            continue
        if not row:
            row = list(st.columns(3))
        v[s.name] = forms.setting_widget(s, K + s.name, container=row.pop(0),
                                         options=devices() if s.name == "device" else None)


def form() -> RunConfig:
    """Draw the form and return the RunConfig it describes (not yet validated)."""
    v: dict = {}
    columns = dict(zip(("left", "right"), st.columns(2, gap="large")))
    for column, name, folded in LAYOUT:
        with columns[column]:
            if folded:
                with st.expander(EXPANDER_LABEL):
                    section(name, v)
            else:
                st.subheader(name[0].upper() + name[1:])
                section(name, v)
                if name == "when to prune":
                    when_to_prune_note(v)
    return RunConfig().replace(**v)


def when_to_prune_note(v: dict) -> None:
    if follows_schedule(v["method"]):
        preview(RunConfig().replace(**{k: v[k] for k in (
            "schedule", "schedule_params", "sparsity", "initial_sparsity", "window_start",
            "window_end") if k in v}))
    else:
        st.caption(f"**{v['method']}** decides itself when to prune during training; "
                   "the schedule settings do not apply to it.")


def window_widgets(schedule: str) -> dict:
    """The pruning window: the schedule's default, or a custom [start, end] range."""
    if st.checkbox("custom pruning window", key=K + "custom_window",
                   help="the share of training during which the schedule moves; before it the "
                        "target is the initial sparsity, after it the final one"):
        start = st.session_state.get(K + "window_start", -1.0)
        end = st.session_state.get(K + "window_end", -1.0)
        default = SCHEDULES.get(schedule).default_window
        initial = (start, end) if 0 <= start <= end <= 1 else default
        kwargs = {} if K + "window" in st.session_state else {"value": initial}
        start, end = st.slider("window (fraction of training)", 0.0, 1.0, step=0.05,
                               key=K + "window", **kwargs)
        return {"window_start": float(start), "window_end": float(end)}
    return {"window_start": -1.0, "window_end": -1.0}


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
    st.plotly_chart(schedules.schedule_curves(curve, height=240), key="run-preview")
    page.caption(f"Live preview: the target sparsity the {config.schedule} schedule asks for "
                   "over training; the mask follows it step by step.")


def main() -> None:
    page.page_setup("Run a pruning session",
                      "Pick what to prune and how, then train. The address bar keeps every "
                      "choice, so a copied link reproduces this exact setup.")
    config, problems = forms.config_from_query(st.query_params.to_dict())
    if problems and not st.session_state.get(K + "initialised"):
        st.error("Some settings in the link could not be used and were reset to defaults — "
                 + md("; ".join(problems)) + ". Change them below.")
    init_widgets(config)
    # The Run button, its problems and its progress sit above the long form, where they are
    # seen; they are filled in once the form below has been read.
    bar = st.container(border=True)
    try:
        config = form()
    except ConfigError as exc:
        st.error(md(exc))
        return
    forms.sync_query(config)
    error = None
    try:
        config = validate(config)
        live.limits().check(config)  # this server's bounds on one run's work
        error = datasets.unavailable(config.dataset)
    except ConfigError as exc:
        error = str(exc)
    with bar:
        if error:
            st.error(md(f"Cannot run this setup: {error}"))
        running = live.slot_running(SLOT)
        if st.button("Run", type="primary", key="run-start", disabled=bool(error) or running):
            live.start_job(SLOT, [config])
        progress = live.show_job(SLOT)
    if progress is not None and not progress.running and progress.run_id:
        with bar, page.user_errors():
            run = page.store().get_run(progress.run_id)
            st.subheader(f"Result: {md(formatting.run_label(run))}")
            report.run_report(run, key="run-result", curves=False)
            page.page_link("pages/8_Runs.py", "Compare it with other runs on the Runs page")


main()
