"""Export a run: masked weights (.pt state_dict), compact model, ONNX and a CSV of its metrics.

- ``weights``: the final masked weights as a plain state_dict (``torch.load(weights_only=True)``
  reads it back).
- ``compact``: the physically pruned model (pruned channels removed, see ``physical.py``) as
  weights plus a plain-data description of its architecture (``modelfile``): it too loads with
  ``weights_only=True``, through ``pruning.modelfile.load_model_file(path)``.
- ``onnx``: the compact model traced to ONNX (opset 17) for deployment tools.
- ``metrics``: one CSV row per epoch (accuracy, loss, target and mask sparsity, LR, time).

All or nothing: everything is read and built in memory first (a missing or corrupt model or mask
file is reported before anything is written), then the files are written under temporary names
in the target folder and renamed into place; on any failure the ones written are removed.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from pruning.config import ConfigError
from pruning.store import DiskFullError, RunStore, is_disk_full

CSV_COLUMNS = ["epoch", "phase", "step", "train_loss", "train_acc", "test_loss", "test_acc",
               "target_sparsity", "mask_sparsity", "lr", "epoch_time_s"]


class ExportError(ConfigError):
    """The export folder cannot take the files (a file in the way, no permission)."""


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


def compact_of_run(store: RunStore, run_id: str, model: torch.nn.Module | None = None
                   ) -> tuple[torch.nn.Module, torch.Tensor]:
    """(compact model, example input) for a finished run (``model``: its loaded final model)."""
    from pruning import data
    from pruning.masks import Mask
    from pruning.physical import compact_model

    run = store.get_run(run_id)
    model = model if model is not None else store.load_model(run.id)
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


def build_export(store: RunStore, run_id: str, onnx: bool = False, compact: bool = True
                 ) -> dict[str, tuple[str, bytes]]:
    """Every export file of a run in memory: {kind: (file name, bytes)}. Reads and checks all
    the run's files first; raises (StoreError, ModelFileError) before anything is written."""
    from pruning import data, modelfile

    run = store.get_run(run_id)
    stem = f"run-{run.id}"
    model = store.load_model(run.id)
    files: dict[str, tuple[str, bytes]] = {}
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    files["weights"] = (f"{stem}-weights.pt", buffer.getvalue())
    files["metrics"] = (f"{stem}-metrics.csv", metrics_csv(store, run.id).encode())
    if compact or onnx:
        compact_model, example = compact_of_run(store, run.id, model)
        if compact:
            files["compact"] = (f"{stem}-compact.pt", modelfile.to_bytes(
                compact_model, run.config, data.dataset_shape(run.config)))
        if onnx:
            buffer = io.BytesIO()
            torch.onnx.export(compact_model, (example,), buffer, opset_version=17,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
            files["onnx"] = (f"{stem}.onnx", buffer.getvalue())
    return files


def _out_folder(out_dir: str | Path) -> Path:
    """The export folder, created if missing; ExportError (one line) if it cannot be."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder; give a folder (it is created if "
                          f"missing), e.g. --out exports")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a parent is a file
        raise ExportError(f"cannot create the folder {out}: part of that path is a file; choose "
                          f"another --out") from None
    except OSError as exc:
        raise ExportError(f"cannot create the folder {out} ({exc.strerror or exc}); choose a "
                          f"folder you can write to with --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write into {out} (permission denied); choose a folder you can "
                          f"write to with --out")
    return out


def write_all(out: Path, files: dict[str, tuple[str, bytes]]) -> dict[str, Path]:
    """Write every file or none: temporary names first, then renames; on failure every file
    this call wrote is removed (files it replaced are lost only if a rename itself fails)."""
    written: list[Path] = []
    final: dict[str, Path] = {}
    try:
        for kind, (name, payload) in files.items():
            partial = out / f".{name}.partial"
            written.append(partial)
            with open(partial, "wb") as f:
                f.write(payload)
            final[kind] = out / name
        for kind, path in final.items():
            os.replace(out / f".{path.name}.partial", path)
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError(f"disk full while writing the export into {out}; nothing was "
                                f"written: free space there or choose another --out") from None
        raise ExportError(f"cannot write the export into {out} ({exc.strerror or exc}); nothing "
                          f"was written: choose another --out") from None
    return final


def export_run(store: RunStore, run_id: str, out_dir: str | Path, onnx: bool = False,
               compact: bool = True) -> dict[str, Path]:
    """Write the run's files into ``out_dir``, all or nothing; returns {kind: path}."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():  # before the work: the cheapest refusal first
        _out_folder(out)
    files = build_export(store, run_id, onnx=onnx, compact=compact)
    return write_all(_out_folder(out), files)
