"""Export a run: masked weights (.pt state_dict), compact model, ONNX and a CSV of its metrics.

- ``weights``: the final masked weights as a plain state_dict (``torch.load(weights_only=True)``
  reads it back safely).
- ``compact``: the physically pruned model (pruned channels removed, see ``physical.py``) saved
  as a whole module — our own file format, for our own reloads.
- ``onnx``: the compact model traced to ONNX (opset 17) for deployment tools.
- ``metrics``: one CSV row per epoch (accuracy, loss, target and mask sparsity, LR, time).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from pruning.store import RunStore

CSV_COLUMNS = ["epoch", "phase", "step", "train_loss", "train_acc", "test_loss", "test_acc",
               "target_sparsity", "mask_sparsity", "lr", "epoch_time_s"]


def metrics_csv(store: RunStore, run_id: str) -> str:
    """The run's per-epoch metrics as CSV text (layer-wise sparsity flattened into columns)."""
    run_id = store.resolve(run_id)
    rows = store.epochs(run_id)
    layer_names = sorted({name for r in rows for name in (r.get("layer_sparsity") or {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS + [f"sparsity[{n}]" for n in layer_names])
    for r in rows:
        layers = r.get("layer_sparsity") or {}
        writer.writerow([r.get(c) for c in CSV_COLUMNS] + [layers.get(n) for n in layer_names])
    return buffer.getvalue()


def compact_of_run(store: RunStore, run_id: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """(compact model, example input) for a finished run."""
    from pruning import data
    from pruning.masks import Mask
    from pruning.physical import compact_model

    run = store.get_run(run_id)
    model = store.load_model(run.id)
    channels, size, _ = data.dataset_shape(run.config)
    example = torch.zeros(1, channels, size, size)
    mask = None
    snapshots = store.snapshots(run.id)
    if snapshots:
        mask = store.load_snapshot(run.id, snapshots[-1]["step"])
        params = dict(model.named_parameters())
        if any(name not in params or params[name].shape != m.shape for name, m in mask.items()):
            mask = Mask.from_weights(model, [n for n in mask if n in params])
    return compact_model(model, mask, example).eval(), example


def export_run(store: RunStore, run_id: str, out_dir: str | Path, onnx: bool = False,
               compact: bool = True) -> dict[str, Path]:
    """Write the run's files into ``out_dir``; returns {kind: path}."""
    run = store.get_run(run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"run-{run.id}"
    paths: dict[str, Path] = {}

    model = store.load_model(run.id)
    paths["weights"] = out / f"{stem}-weights.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, paths["weights"])

    paths["metrics"] = out / f"{stem}-metrics.csv"
    paths["metrics"].write_text(metrics_csv(store, run.id))

    if compact or onnx:
        compact_model, example = compact_of_run(store, run.id)
        if compact:
            paths["compact"] = out / f"{stem}-compact.pt"
            torch.save(compact_model, paths["compact"])
        if onnx:
            paths["onnx"] = out / f"{stem}.onnx"
            torch.onnx.export(compact_model, (example,), str(paths["onnx"]), opset_version=17,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
    return paths
