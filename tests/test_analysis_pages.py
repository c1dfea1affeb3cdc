"""Data shaping behind the analysis pages: mask heatmaps, churn, run pairing, trace frames.

Runs are written straight into a RunStore in tmp_path (traces and snapshots by hand), so these
tests need no training and check exact values.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from pruning.config import RunConfig
from pruning.masks import Mask
from pruning.store import RunStore
from ui import analysis_charts as charts
from ui import masks_view as mv


# ---- heatmaps ----------------------------------------------------------------------------------
def test_conv_mask_is_drawn_out_by_in_k_k_with_filters_as_rows():
    keep = torch.ones(4, 2, 3, 3, dtype=torch.bool)
    keep[1] = False                 # filter 1 removed entirely (structured pruning)
    keep[2, 1, 0, 0] = False        # one tap of filter 2, input channel 1
    matrix = mv.mask_matrix(keep)
    assert matrix.shape == (4, 18)
    assert matrix[1].sum() == 0 and matrix[0].sum() == 18
    assert matrix[2, 9] == 0 and matrix[2].sum() == 17  # channel 1's first tap is column 1·9 + 0
    assert mv.mask_matrix(torch.ones(5, dtype=torch.bool)).shape == (1, 5)


def test_downsample_averages_tiles_and_keeps_at_most_max_side():
    matrix = np.zeros((300, 784), dtype=np.float32)
    matrix[:, ::2] = 1.0            # every other column kept: density 0.5 everywhere
    small, tile = mv.downsample(matrix, max_side=128)
    assert tile == (3, 7)
    assert small.shape == (100, 112) and max(small.shape) <= 128
    # 784 = 112 · 7: each tile holds 3 or 4 of every-other kept columns out of 7.
    values = small.ravel().astype(np.float64)
    assert np.all(np.isclose(values, 3 / 7) | np.isclose(values, 4 / 7))
    assert small.mean() == pytest.approx(0.5, abs=0.01)


def test_downsample_partial_edge_tiles_average_only_real_cells():
    matrix = np.ones((5, 5), dtype=np.float32)
    small, tile = mv.downsample(matrix, max_side=2)
    assert tile == (3, 3) and small.shape == (2, 2)
    assert np.all(small == 1.0)     # padding is ignored, so a fully kept layer stays 100 %
    unchanged, tile = mv.downsample(matrix, max_side=128)
    assert tile == (1, 1) and np.array_equal(unchanged, matrix)


def test_layer_picture_says_when_and_how_it_was_downsampled():
    keep = torch.ones(256, 64, 3, 3, dtype=torch.bool)
    picture, matrix = mv.layer_picture("block.conv.weight", keep, max_side=128)
    assert picture.downsampled and picture.tile == (2, 5)
    assert matrix.shape == (128, 116)
    text = picture.describe()
    assert "256×64×3×3" in text and "256 × 576" in text and "downsampled to 128 × 116" in text
    x_title, y_title = picture.axis_titles()
    assert "5 per cell" in x_title and "2 per cell" in y_title
    small, _ = mv.layer_picture("fc.weight", torch.ones(10, 20, dtype=torch.bool))
    assert not small.downsampled and "downsampled" not in small.describe()


# ---- a tiny store with snapshots -----------------------------------------------------------------
def _masks():
    """Three snapshots of two layers: prune, then a weight regrows while another is pruned."""
    a0 = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    b0 = torch.ones(3, 4, dtype=torch.bool)
    a1 = a0.clone(); a1[0, 0, 0, 0] = False; a1[1, 0, 1, 1] = False
    b1 = b0.clone(); b1[0] = False
    a2 = a1.clone(); a2[0, 0, 0, 0] = True; a2[0, 0, 0, 1] = False   # one regrown, one pruned
    b2 = b1.clone()
    return [Mask({"conv.weight": a, "fc.weight": b}) for a, b in ((a0, b0), (a1, b1), (a2, b2))]


def _store_with_run(tmp_path, schedule="one_cycle", seed=0, status="done", masks=None):
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig(schedule=schedule, seed=seed, epochs=3), {})
    for i, mask in enumerate(masks if masks is not None else _masks()):
        store.add_snapshot(run_id, step=10 * (i + 1), epoch=float(i + 1), mask=mask)
    store.finish_run(run_id, status, {"test_acc": 0.9})
    return store, run_id


def test_snapshots_film_churn_and_layer_sparsity_from_the_store(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    snaps = mv.load_snapshots(store, run_id)
    assert [s.step for s in snaps] == [10, 20, 30] and [s.epoch for s in snaps] == [1.0, 2.0, 3.0]

    film = mv.layer_film(snaps, "conv.weight")
    assert film.frames.shape == (3, 2, 4)
    assert film.frames[0].sum() == 8 and film.frames[1].sum() == 6 and film.frames[2].sum() == 6
    assert film.frames[2][0].tolist() == [1, 0, 1, 1]   # tap (0,0) regrown, tap (0,1) pruned

    churn = mv.churn_frame(snaps)
    conv = churn[churn.layer == "conv.weight"].set_index("step")
    fc = churn[churn.layer == "fc.weight"].set_index("step")
    assert conv.loc[20, "flips"] == 2 and conv.loc[20, "regrown"] == 0 and conv.loc[20, "pruned"] == 2
    assert conv.loc[30, "flips"] == 2 and conv.loc[30, "regrown"] == 1 and conv.loc[30, "pruned"] == 1
    assert fc.loc[20, "flips"] == 4 and fc.loc[30, "flips"] == 0
    assert conv.loc[30, "flip_fraction"] == pytest.approx(2 / 8)
    # flips agree with Mask.flips between the same snapshots
    assert churn[churn.step == 30].set_index("layer")["flips"].to_dict() == snaps[2].mask.flips(snaps[1].mask)

    sparsity = mv.layer_sparsity_frame(snaps).set_index(["step", "layer"])["sparsity"]
    assert sparsity[(10, "fc.weight")] == 0.0
    assert sparsity[(20, "fc.weight")] == pytest.approx(4 / 12)
    assert sparsity[(30, "conv.weight")] == pytest.approx(2 / 8)


def test_churn_of_a_single_snapshot_is_empty_and_figures_say_so(tmp_path):
    store, run_id = _store_with_run(tmp_path, masks=_masks()[:1])
    churn = mv.churn_frame(mv.load_snapshots(store, run_id))
    assert churn.empty and list(churn.columns)[:4] == ["step", "epoch", "layer", "flips"]
    fig = charts.churn_figure(churn.assign(run="a"))
    assert "fewer than two snapshots" in fig.layout.annotations[0].text


def test_pick_pair_matches_model_data_method_target_and_seed(tmp_path):
    store = RunStore(tmp_path)
    ids = {}
    for key, cfg in {"oc0": RunConfig(schedule="one_cycle", seed=0),
                     "it1": RunConfig(schedule="iterative", seed=1),
                     "agp0": RunConfig(schedule="agp", seed=0),
                     "oc1": RunConfig(schedule="one_cycle", seed=1),
                     "it0_failed": RunConfig(schedule="iterative", seed=0)}.items():
        ids[key] = store.create_run(cfg, {})
        store.finish_run(ids[key], "failed" if "failed" in key else "done", {})
    a, b = mv.pick_pair(store.list_runs())
    assert (a.id, b.id) == (ids["oc1"], ids["it1"])
    # without a matching seed there is no pair
    store.delete_run(ids["it1"])
    assert mv.pick_pair(store.list_runs()) is None
    # the filter can demand snapshots
    pair_ids = {ids["oc0"]}
    assert mv.pick_pair(store.list_runs(), has_snapshots=lambda r: r.id in pair_ids) is None


def test_progress_alignment_pairs_frames_by_training_progress():
    assert mv.progress_alignment([1, 2, 3, 4], [1, 4]) == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert mv.progress_alignment([5, 10], [1, 2, 3]) == [(0, 0), (0, 1), (1, 2)]
    assert mv.progress_alignment([], [1]) == []


def test_mask_film_figure_has_one_frame_per_aligned_snapshot_and_a_play_button(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    snaps = mv.load_snapshots(store, run_id)
    film = mv.layer_film(snaps, "conv.weight")
    fig = charts.mask_film_figure([("one_cycle", film), ("iterative", film)],
                                  mv.progress_alignment(film.epochs, film.epochs))
    assert len(fig.frames) == 3 and len(fig.data) == 2
    assert np.array_equal(np.asarray(fig.frames[2].data[0].z), film.frames[2])
    assert fig.layout.updatemenus[0].buttons[0].label.endswith("play")
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1


# ---- ASWL traces --------------------------------------------------------------------------------
def test_aswl_frames_from_stored_traces(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    layers = ["conv.weight", "fc.weight"]
    store.add_trace(run_id, "aswl", 0, {"layers": layers, "attention": [0.5, 0.5],
                                        "ratio": [0.5, 0.5], "density": 0.5})
    store.add_trace(run_id, "aswl", 50, {"layers": layers, "attention": [0.2, 0.9],
                                         "ratio": [0.8, 0.1], "density": 0.6})
    store.add_trace(run_id, "aswl_final", 60, {
        "layers": layers, "ratio_aswl": [0.75, 0.25], "ratio_uniform": [0.45, 0.45],
        "ratio_global_magnitude": [0.9, 0.3], "sizes": [8, 12]})
    frame = charts.aswl_frame(store.traces(run_id, "aswl"))
    assert len(frame) == 4
    row = frame[(frame.step == 50) & (frame.layer == "fc.weight")].iloc[0]
    assert row.attention == 0.9 and row.ratio == 0.1 and row.density == 0.6

    fig = charts.aswl_lines_figure(frame, "ratio")
    assert [t.name for t in fig.data] == ["conv", "fc", "overall sparsity"]
    assert list(fig.data[-1].y) == pytest.approx([0.5, 0.4])
    assert fig.layout.yaxis.tickformat == ".0%"

    final = charts.allocation_frame(store.traces(run_id, "aswl_final")[-1])
    assert len(final) == 6
    overall = charts.overall_sparsity(final)
    assert overall["ASWL (learned)"] == pytest.approx((0.75 * 8 + 0.25 * 12) / 20)
    assert overall["uniform"] == pytest.approx(0.45)
    fig = charts.allocation_figure(final)
    assert [t.name for t in fig.data] == ["ASWL (learned)", "uniform", "global magnitude"]


def test_common_layers_keep_the_first_runs_order():
    assert mv.common_layers(["c1.weight", "c2.weight", "fc.weight"], ["fc.weight", "c1.weight"]) \
        == ["c1.weight", "fc.weight"]
    assert mv.common_layers(["a"]) == ["a"] and mv.common_layers() == []
