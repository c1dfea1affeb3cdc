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
from ui.charts import layers as layer_charts
from ui.charts import masks as mask_charts
from ui.charts import methods as method_charts
from ui.charts import speed as speed_charts
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
    kept = lambda frame: int(((frame >= mv.KEPT)).sum())  # regrown cells are kept too
    assert kept(film.frames[0]) == 8 and kept(film.frames[1]) == 6 and kept(film.frames[2]) == 6
    # tap (0,0) regrown (drawn apart from kept ones), tap (0,1) pruned
    assert film.frames[2][0].tolist() == [mv.REGROWN, mv.PRUNED, mv.KEPT, mv.KEPT]
    assert film.regrown == (0, 0, 1)
    assert film.sparsity == pytest.approx((0.0, 2 / 8, 2 / 8))
    assert film.opening() == 1  # the first snapshot at half the final sparsity or more

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
    fig = mask_charts.churn_figure(churn.assign(run="a"))
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
    fig = mask_charts.mask_film_figure([("one_cycle", film), ("iterative", film)],
                                  mv.progress_alignment(film.epochs, film.epochs))
    assert len(fig.frames) == 3 and len(fig.data) == 2
    # sent as whole percent in one byte per cell: 0 pruned, 100 kept, 200 regrown
    z = np.asarray(fig.frames[2].data[0].z)
    assert z.dtype == np.uint8
    assert np.array_equal(z, np.rint(film.frames[2] * 100))
    assert fig.layout.updatemenus[0].buttons[0].label.endswith("play")
    # three states on one scale, each named on the colour bar
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 200
    assert list(fig.layout.coloraxis.colorbar.ticktext) == ["pruned", "kept", "regrown"]
    colors = {c for _, c in fig.layout.coloraxis.colorscale}
    assert len({fig.layout.coloraxis.colorscale[0][1], fig.layout.coloraxis.colorscale[1][1],
                fig.layout.coloraxis.colorscale[-1][1]}) == 3 and len(colors) >= 3


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
    frame = layer_charts.aswl_frame(store.traces(run_id, "aswl"))
    assert len(frame) == 4
    row = frame[(frame.step == 50) & (frame.layer == "fc.weight")].iloc[0]
    assert row.attention == 0.9 and row.ratio == 0.1 and row.density == 0.6

    fig = layer_charts.aswl_lines_figure(frame, "ratio")
    assert [t.name for t in fig.data] == ["conv", "fc", "overall sparsity"]
    assert list(fig.data[-1].y) == pytest.approx([0.5, 0.4])
    assert fig.layout.yaxis.tickformat == ".0%"

    final = layer_charts.allocation_frame(store.traces(run_id, "aswl_final")[-1])
    assert len(final) == 6
    overall = layer_charts.overall_sparsity(final)
    assert overall["ASWL (learned)"] == pytest.approx((0.75 * 8 + 0.25 * 12) / 20)
    assert overall["uniform"] == pytest.approx(0.45)
    fig = layer_charts.allocation_figure(final)
    assert [t.name for t in fig.data] == ["ASWL (learned)", "uniform", "global magnitude"]


# ---- i-SpaSP, SSC, unification, speed lab ------------------------------------------------------
def test_ispasp_frames_from_stored_traces(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    # conv1 as i-SpaSP records it now (‖Y_dense‖ = 8 through ``relative``, and each
    # iteration's own candidate); fc1 as older runs did (the residual only)
    for it, (loss, candidate) in enumerate(((8.0, 8.0), (2.0, 12.5), (2.0, 2.0)), start=1):
        store.add_trace(run_id, "ispasp_residual", 5, {
            "block": "conv1", "iteration": it, "residual": loss,
            "relative": (2 * loss) ** 0.5 / 8.0, "candidate": candidate})
    for it, loss in enumerate([0.5, 0.125, 0.125], start=1):
        store.add_trace(run_id, "ispasp_residual", 5, {"block": "fc1.weight", "iteration": it,
                                                       "residual": loss})
    store.add_trace(run_id, "ispasp_units", 5, {"block": "conv1", "channels": 4, "kept": 2,
                                                "chosen": [0, 3]})
    store.add_trace(run_id, "ispasp_units", 5, {"block": "fc1.weight", "channels": 6, "kept": 3,
                                                "chosen": [1, 2, 5]})
    frame = method_charts.ispasp_residual_frame(store.traces(run_id, "ispasp_residual"))
    conv = frame[frame.block == "conv1"]
    # iteration 0: the empty support, whose residual is the whole dense output
    assert conv["iteration"].tolist() == [0, 1, 2, 3]
    assert conv["norm"].tolist() == pytest.approx([8.0, 4.0, 2.0, 2.0])     # √(2L)
    assert conv["relative"].tolist() == pytest.approx([1.0, 0.5, 0.25, 0.25])
    assert conv["candidate_relative"].tolist() == pytest.approx([1.0, 0.5, 0.625, 0.25])
    fc = frame[frame.block == "fc1.weight"]  # no ‖Y_dense‖ recorded: no iteration 0
    assert fc["iteration"].tolist() == [1, 2, 3]
    assert fc["relative"].tolist() == pytest.approx([1.0, 0.5, 0.5])   # ÷ first norm
    fig = method_charts.ispasp_residual_figure(frame)
    assert [t.name for t in fig.data] == ["conv1 best", "conv1 candidate", "fc1 best"]
    assert fig.layout.yaxis.tickformat == ".0%"
    assert list(fig.data[1].y) == pytest.approx([1.0, 0.5, 0.625, 0.25])  # rises and falls

    blocks, matrix, kept = method_charts.ispasp_units_matrix(store.traces(run_id, "ispasp_units"))
    assert blocks == ["conv1", "fc1.weight"] and matrix.shape == (2, 6)
    assert matrix[0, :4].tolist() == [1, 0, 0, 1] and np.isnan(matrix[0, 4:]).all()
    assert matrix[1].tolist() == [0, 1, 1, 0, 0, 1]
    assert kept["kept_fraction"].tolist() == [0.5, 0.5]

    acc = method_charts.ispasp_accuracy_frame({"acc_dense": 0.9, "acc_pruned": 0.3, "acc_finetuned": 0.88})
    assert acc["accuracy"].tolist() == [0.9, 0.3, 0.88]


def test_ssc_layers_frame_and_special_cases_come_from_the_pattern_rule():
    frame = method_charts.ssc_layers_frame([{"layer": "conv2", "in": 8, "out": 8, "kernel": [3, 3],
                                      "period_full": 8, "period_pointwise": 0, "kind": "depthwise",
                                      "params": 72, "dense_params": 576, "pattern": [[2]]}])
    row = frame.iloc[0]
    assert row.kernel == "3×3" and row.params_fraction == pytest.approx(72 / 576)
    cases = {title: pattern for title, _, pattern in method_charts.ssc_special_cases()}
    assert (cases["dense"] == 2).all() and (cases["pointwise"] == 1).all()
    assert np.array_equal(cases["depthwise"], 2 * np.eye(8, dtype=cases["depthwise"].dtype))
    group = cases["group (2 groups)"]
    assert (group[:4, :4] == 2).all() and (group[:4, 4:] == 0).all() and (group[4:, 4:] == 2).all()
    fig = method_charts.ssc_cases_figure(method_charts.ssc_special_cases())
    assert len(fig.data) == 6 and sum(bool(t.showscale) for t in fig.data) == 1


def test_admm_and_storage_frames(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    for r, dist in enumerate([1.0, 0.1, 0.01]):
        store.add_trace(run_id, "admm", r, {"round": r, "w_minus_z": dist, "w_minus_z_rel": dist / 2,
                                            "pruned_fraction": 0.75, "unified_fraction": 0.25,
                                            "w_unified_fraction": r / 4})
    frame = method_charts.admm_frame(store.traces(run_id, "admm"))
    assert frame["round"].tolist() == [0, 1, 2] and frame["w_unified_fraction"].tolist() == [0, 0.25, 0.5]
    fig = method_charts.admm_distance_figure(frame)
    assert fig.layout.yaxis.type == "log"           # spans two decades
    assert list(fig.data[0].y) == pytest.approx([0.5, 0.05, 0.005])
    flat = method_charts.admm_distance_figure(frame.assign(w_minus_z_rel=[0.9, 1.2, 1.5]))
    assert flat.layout.yaxis.type == "linear"

    payload = {"layers": ["a.weight", "b.weight"], "weights": [8, 4], "blocks": [2, 1],
               "unified_blocks": [1, 1], "pruned_blocks": [1, 0], "dense_bits": [256, 128],
               "unified_bits": [36, 36], "dense_multiplies": [80, 4], "unified_multiplies": [10, 1],
               "total": {"weights": 12, "blocks": 3, "unified_blocks": 2, "pruned_blocks": 1,
                         "dense_bits": 384, "unified_bits": 72, "dense_multiplies": 84,
                         "unified_multiplies": 11, "compression": 384 / 72}}
    table = method_charts.storage_frame(payload)
    assert table["layer"].tolist() == ["a.weight", "b.weight", "total"]
    assert table.set_index("layer").loc["total", "compression"] == pytest.approx(384 / 72)
    assert table.set_index("layer").loc["a.weight", "multiply_reduction"] == pytest.approx(8.0)
    assert len(method_charts.storage_figure(table).data) == 4   # 2 panels × (dense, unified)


def _forms_rows():
    rows = []
    for batch, times in ((1, {"dense": 2.0, "masked": 2.0, "sparse": 4.0, "physical": 1.0}),
                         (8, {"dense": 8.0, "masked": 8.0, "sparse": 8.0, "physical": 4.0})):
        for form, ms in times.items():
            rows.append({"form": form, "batch_size": batch, "params": 10, "flops": 100,
                         "median_ms": ms, "p90_ms": ms * 1.1, "repeats": 5, "device": "cpu",
                         "dtype": "float32", "threads": 2, "theoretical_speedup": 2.0,
                         "measured_speedup": times["dense"] / ms, "explanation": f"{form} why"})
    return rows


def test_speed_lab_frames_and_figures():
    frame = speed_charts.forms_frame(_forms_rows())
    assert frame["label"].unique().tolist() == ["dense", "masked dense", "sparse kernels",
                                                "physically pruned"]
    assert frame.set_index(["form", "batch_size"]).loc[("physical", 8), "ms_per_image"] == 0.5
    table = speed_charts.forms_table(frame)
    assert list(table.columns)[:3] == ["form", "batch", "median (ms / batch)"] and len(table) == 8
    assert table["measured ×"].tolist()[:4] == [1.0, 1.0, 0.5, 2.0]
    fig = speed_charts.speedup_figure(frame)
    assert len(fig.data) == 6                          # 3 non-dense forms × (measured, theoretical)
    assert fig.layout.shapes[0].y0 == 1.0              # the "as fast as dense" line
    latency = speed_charts.latency_figure(frame)
    assert [t.name for t in latency.data] == ["dense", "masked dense", "sparse kernels",
                                              "physically pruned"]

    crossover = {"sparsities": [0.5, 0.9, 0.99], "dense_ms": [1.0, 1.0, 1.0],
                 "csr_ms": [4.0, 1.5, 0.5], "speedup": [0.25, 2 / 3, 2.0], "crossover": 0.95}
    fig = speed_charts.crossover_figure(crossover)
    assert len(fig.data) == 2 and fig.layout.shapes[0].x0 == 0.95
    assert speed_charts.crossover_frame(crossover)["speedup"].tolist() == pytest.approx([0.25, 2 / 3, 2.0])


def test_speedlab_inputs_load_the_final_model_mask_and_shape(tmp_path):
    from pruning import data, models

    store = RunStore(tmp_path)
    config = RunConfig(model="small_cnn", dataset="digits")
    channels, size, classes = data.dataset_shape(config)
    model = models.build_model(config, channels, classes, size)
    run_id = store.create_run(config, {})
    mask = Mask.ones_like(model)
    store.add_snapshot(run_id, 3, 1.0, mask)
    store.save_model(run_id, model, whole_module=False)
    store.finish_run(run_id, "done", {})
    loaded, loaded_mask, shape = speed_charts.speedlab_inputs(store, store.get_run(run_id))
    assert shape == (channels, size, size)
    assert loaded_mask.equals(mask)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values()))


def test_ssc_comparison_rows_hold_the_parameter_budget(tmp_path):
    store = RunStore(tmp_path)
    for method, nonzero in (("ssc", 400), ("snip", 400)):
        run_id = store.create_run(RunConfig(method=method), {})
        store.finish_run(run_id, "done", {"params_nonzero": nonzero, "params_dense": 1000,
                                          "test_acc": 0.9, "mask_sparsity": 0.0})
    table = method_charts.ssc_comparison_frame(store.list_runs())
    assert sorted(table["method"]) == ["snip", "ssc"]
    assert table["params_removed"].tolist() == pytest.approx([0.6, 0.6])


def test_overlapping_layers_names_lines_drawn_on_top_of_each_other():
    frame = pd.DataFrame({"step": [0, 1] * 3, "layer": ["a", "a", "b", "b", "c", "c"],
                          "attention": [0.5, 0.4, 0.5, 0.3, 0.5, 0.4]})
    assert layer_charts.overlapping_layers(frame, "attention") == [["a", "c"]]
    assert layer_charts.overlapping_layers(frame[frame.layer != "c"], "attention") == []


def test_churn_figure_sums_layers_per_run_in_the_given_order(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    churn = mv.churn_frame(mv.load_snapshots(store, run_id))
    both = pd.concat([churn.assign(run="z-left"), churn.assign(run="a-right")], ignore_index=True)
    fig = mask_charts.churn_figure(both)
    assert [t.name for t in fig.data] == ["z-left", "a-right"]
    assert list(fig.data[0].y) == [6, 2]        # step 20: 2 + 4 flips, step 30: 2 + 0


def test_noisy_share_counts_measurements_with_a_wide_spread():
    frame = speed_charts.forms_frame(_forms_rows())
    assert speed_charts.noisy_share(frame) == 0.0              # p90 = 1.1 × median everywhere
    frame.loc[frame.index[:2], "p90_ms"] = frame["median_ms"].iloc[:2] * 3
    assert speed_charts.noisy_share(frame) == pytest.approx(2 / 8)
