"""Mask snapshots → arrays and frames the Mask-evolution page draws (no Streamlit here).

A weight mask is drawn as a 2-D picture: a convolution weight (out, in, kh, kw) as
out × (in·kh·kw), so one row is one output filter and structured (channel) pruning shows as
whole empty rows; a linear weight (out, in) as it is. Large pictures are shrunk by averaging the
kept fraction over rectangular tiles (block-average density), so every heatmap stays at most
``max_side`` cells a side and the page says when, and by how much, it was shrunk.

Churn is the number of mask entries that flipped between two consecutive snapshots
(``Mask.flips``): zero for monotone schedules once the target is reached, non-zero where weights
are pruned and others regrow (ASWL's straight-through updates, re-scored criteria).

Everything here returns numpy arrays or pandas frames, so the page can cache them and tests can
check exact values on tiny masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from pruning.masks import Mask
from pruning.store import Run, RunFilesError, RunStore

#: Largest heatmap side, in cells; larger masks are block-averaged down to this.
MAX_SIDE = 128


# ---- one tensor → one picture ------------------------------------------------------------------
def mask_matrix(tensor: torch.Tensor) -> np.ndarray:
    """A mask tensor as a 2-D float array of 0/1: rows = output units, columns = their inputs.

    (out, in, kh, kw) → (out, in·kh·kw), columns ordered channel-major so the kh·kw taps of one
    input channel sit next to each other; (out, in) stays; a 1-D tensor becomes one row.
    """
    array = tensor.detach().cpu().numpy().astype(np.float32)
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


def downsample(matrix: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """Block-average ``matrix`` so neither side exceeds ``max_side``; returns (array, tile).

    ``tile`` = (rows, cols) of original cells averaged into one output cell ((1, 1): unchanged).
    Edge tiles that would stick out past the matrix average only the cells they cover, so a
    fully kept matrix stays exactly 1 everywhere.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    rows, cols = matrix.shape
    tile_r, tile_c = max(1, math.ceil(rows / max_side)), max(1, math.ceil(cols / max_side))
    if tile_r == 1 and tile_c == 1:
        return matrix.astype(np.float32), (1, 1)
    out_r, out_c = math.ceil(rows / tile_r), math.ceil(cols / tile_c)
    # Pad with NaN to whole tiles, then average ignoring the padding: (out_r, tile_r, out_c, tile_c).
    padded = np.full((out_r * tile_r, out_c * tile_c), np.nan, dtype=np.float64)
    padded[:rows, :cols] = matrix
    blocks = padded.reshape(out_r, tile_r, out_c, tile_c)
    sums = np.nansum(blocks, axis=(1, 3))
    counts = np.sum(~np.isnan(blocks), axis=(1, 3))
    return (sums / counts).astype(np.float32), (tile_r, tile_c)


@dataclass(frozen=True)
class LayerPicture:
    """How one layer's mask is drawn: its weight shape and the tile each heatmap cell averages."""
    name: str
    shape: tuple[int, ...]
    tile: tuple[int, int]
    rows: int
    cols: int

    @property
    def downsampled(self) -> bool:
        return self.tile != (1, 1)

    def axis_titles(self) -> tuple[str, str]:
        """(x title, y title) naming what a column and a row are."""
        if len(self.shape) == 4:
            x = "input channel × kernel tap (in·k·k)"
            y = "output filter"
        elif len(self.shape) == 2:
            x, y = "input unit", "output unit"
        else:
            x, y = "weight index", ""
        if self.tile[1] > 1:
            x += f", {self.tile[1]} per cell"
        if self.tile[0] > 1:
            y += f", {self.tile[0]} per cell"
        return x, y

    def describe(self) -> str:
        """One sentence: the weight's shape, how it is laid out and whether it was shrunk."""
        shape = "×".join(str(s) for s in self.shape)
        layout = "out × in·k·k" if len(self.shape) == 4 else "out × in"
        text = f"{self.name}: weight {shape}, drawn as {self.rows_full} × {self.cols_full} ({layout})"
        if self.downsampled:
            text += (f"; downsampled to {self.rows} × {self.cols}: each cell is the kept fraction "
                     f"of a {self.tile[0]}×{self.tile[1]} tile of weights")
        return text + "."

    @property
    def rows_full(self) -> int:
        return int(self.shape[0]) if self.shape else 1

    @property
    def cols_full(self) -> int:
        return int(np.prod(self.shape[1:])) if len(self.shape) > 1 else int(np.prod(self.shape) or 1)


def layer_picture(name: str, tensor: torch.Tensor, max_side: int = MAX_SIDE) -> tuple[LayerPicture, np.ndarray]:
    """The (possibly downsampled) kept-fraction heatmap of one mask tensor and how it was drawn."""
    matrix, tile = downsample(mask_matrix(tensor), max_side)
    picture = LayerPicture(name=name, shape=tuple(int(s) for s in tensor.shape), tile=tile,
                           rows=matrix.shape[0], cols=matrix.shape[1])
    return picture, matrix


# ---- a run's snapshots ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    step: int
    epoch: float
    sparsity: float
    mask: Mask


def load_snapshots(store: RunStore, run_id: str) -> list[Snapshot]:
    """Every stored mask snapshot of a run, in step order (empty when the run kept none).

    Raises RunFilesError naming the run and every snapshot file that is missing or corrupt."""
    rows, snapshots, bad = store.snapshots(run_id), [], []
    for s in rows:
        try:
            mask = store.load_snapshot(run_id, s["step"])
        except RunFilesError:
            bad.append(store.snapshot_path(run_id, s["step"]))
            continue
        snapshots.append(Snapshot(int(s["step"]), float(s["epoch"]), float(s["sparsity"]), mask))
    if bad:
        names = ", ".join(p.name for p in bad[:4]) + (", …" if len(bad) > 4 else "")
        raise RunFilesError(
            f"run {run_id} is missing {len(bad)} of its {len(rows)} mask snapshot files, or they "
            f"are corrupt ({names} in {bad[0].parent}); its masks cannot be drawn: choose another "
            f"run, or run this session again")
    return snapshots


#: cell values of a film's frames: 0 pruned … 1 kept (a tile's kept fraction in between);
#: above 1 a kept cell that was pruned at an earlier snapshot (regrown): 1 + the regrown share
PRUNED, KEPT, REGROWN = 0.0, 1.0, 2.0


@dataclass(frozen=True)
class LayerFilm:
    """One layer's heatmaps over a run's snapshots: ``frames`` is (snapshots, rows, cols) with
    the values above; ``sparsity`` and ``regrown`` (entries kept again after being pruned at
    an earlier snapshot) per snapshot, counted at full resolution."""
    picture: LayerPicture
    steps: tuple[int, ...]
    epochs: tuple[float, ...]
    frames: np.ndarray
    sparsity: tuple[float, ...] = ()
    regrown: tuple[int, ...] = ()

    def opening(self) -> int:
        """The first snapshot whose sparsity reaches half the final one: a telling first
        picture (the very first snapshot is often still nearly solid)."""
        if not self.sparsity:
            return 0
        half = self.sparsity[-1] / 2
        return next(i for i, s in enumerate(self.sparsity) if s >= half)


def layer_film(snapshots: Sequence[Snapshot], layer: str, max_side: int = MAX_SIDE) -> LayerFilm:
    """Heatmaps of ``layer`` at every snapshot (all drawn with the same tiling), regrown
    entries marked apart from kept and pruned ones."""
    if not snapshots:
        raise ValueError("no snapshots to draw")
    frames, sparsity, regrown_counts, picture = [], [], [], None
    ever_pruned: np.ndarray | None = None
    for snap in snapshots:
        kept = mask_matrix(snap.mask[layer]) > 0.5
        regrown = kept & ever_pruned if ever_pruned is not None else np.zeros_like(kept)
        ever_pruned = ~kept if ever_pruned is None else (ever_pruned | ~kept)
        picture, kept_share = layer_picture(layer, snap.mask[layer], max_side)
        regrown_share, _ = downsample(regrown.astype(np.float32), max_side)
        frames.append(np.where(regrown_share > 0, KEPT + regrown_share, kept_share))
        sparsity.append(float(1.0 - kept.mean()) if kept.size else 0.0)
        regrown_counts.append(int(regrown.sum()))
    return LayerFilm(picture=picture, steps=tuple(s.step for s in snapshots),
                     epochs=tuple(s.epoch for s in snapshots), frames=np.stack(frames),
                     sparsity=tuple(sparsity), regrown=tuple(regrown_counts))


def layer_sparsity_frame(snapshots: Iterable[Snapshot]) -> pd.DataFrame:
    """Long frame: step, epoch, layer, sparsity (fraction pruned) for every snapshot × layer."""
    rows = [{"step": s.step, "epoch": s.epoch, "layer": name, "sparsity": value}
            for s in snapshots for name, value in s.mask.layer_sparsity().items()]
    return pd.DataFrame(rows, columns=["step", "epoch", "layer", "sparsity"])


def churn_frame(snapshots: Sequence[Snapshot]) -> pd.DataFrame:
    """Per consecutive snapshot pair and layer: entries that flipped, split into pruned/regrown.

    Columns: step, epoch (of the later snapshot), layer, flips (``Mask.flips``), pruned
    (kept → pruned), regrown (pruned → kept), size, flip_fraction (flips / size).
    """
    rows = []
    for before, after in zip(snapshots, snapshots[1:]):
        flips = after.mask.flips(before.mask)
        for name, count in flips.items():
            old, new = before.mask[name], after.mask[name]
            regrown = int((new & ~old).sum())
            rows.append({"step": after.step, "epoch": after.epoch, "layer": name,
                         "flips": count, "pruned": count - regrown, "regrown": regrown,
                         "size": old.numel(), "flip_fraction": count / max(old.numel(), 1)})
    return pd.DataFrame(rows, columns=["step", "epoch", "layer", "flips", "pruned", "regrown",
                                       "size", "flip_fraction"])


# ---- which two runs to put side by side -----------------------------------------------------------
PAIR_SCHEDULES = ("one_cycle", "iterative")


def _pair_key(run: Run) -> tuple:
    c = run.config
    return (c.model, c.dataset, c.seed, c.method, c.sparsity, c.image_size, c.channels, c.width)


def pick_pair(runs: Sequence[Run], schedules: tuple[str, str] = PAIR_SCHEDULES,
              has_snapshots=None) -> tuple[Run, Run] | None:
    """The newest finished (one_cycle, iterative) pair with the same model, data, method, target
    and seed, so the only difference is the schedule; None when the store has no such pair.

    ``runs`` newest first (as ``RunStore.list_runs`` returns them); ``has_snapshots(run)`` may
    filter out runs without mask snapshots.
    """
    ok = [r for r in runs if r.status == "done" and (has_snapshots is None or has_snapshots(r))]
    first = [r for r in ok if r.config.schedule == schedules[0]]
    second = [r for r in ok if r.config.schedule == schedules[1]]
    best: tuple[Run, Run] | None = None
    for a in first:
        for b in second:
            if _pair_key(a) == _pair_key(b):
                newest = max(a.created, b.created)
                if best is None or newest > max(best[0].created, best[1].created):
                    best = (a, b)
    return best


def progress_alignment(epochs_a: Sequence[float], epochs_b: Sequence[float]) -> list[tuple[int, int]]:
    """Pairs of snapshot indices shown together when two films play side by side.

    Each frame of the longer film is paired with the other film's snapshot closest in training
    progress (epoch / last epoch), so runs with different lengths still line up by progress.
    """
    if not epochs_a or not epochs_b:
        return []

    def progress(epochs: Sequence[float]) -> np.ndarray:
        values = np.asarray(epochs, dtype=np.float64)
        return values / values[-1] if values[-1] > 0 else np.linspace(0, 1, len(values))

    pa, pb = progress(epochs_a), progress(epochs_b)
    if len(pa) >= len(pb):
        return [(i, int(np.argmin(np.abs(pb - p)))) for i, p in enumerate(pa)]
    return [(int(np.argmin(np.abs(pa - p))), j) for j, p in enumerate(pb)]
