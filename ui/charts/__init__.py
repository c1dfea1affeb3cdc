"""Plotly figure builders, one module per chart family; pandas frames in, figures out.

No builder calls Streamlit, so pages stay thin and the builders are tested on plain frames.

- ``style``      the one look (palette, template, percent and log axes, empty figures, layer names)
                 and the generic line and grouped-bar builders.
- ``training``   accuracy and sparsity over epochs, one colour per run.
- ``schedules``  target sparsity over training progress, one line per schedule.
- ``sparsity``   a run's target, mask and effective sparsity and its parameter/FLOPs reductions.
- ``layers``     per-layer sparsity bars; ASWL's layer attention and allocations.
- ``masks``      mask films (animated heatmaps), churn and per-layer sparsity over snapshots.
- ``tradeoffs``  accuracy against a cost with the Pareto front.
- ``methods``    inside i-SpaSP, SSC and weight unification, from their runs' traces.
- ``speed``      the speed lab: latency and speed-up of the four forms, the CSR crossover.
"""
