"""The speed lab's four forms and the CSR crossover: complete, consistent rows (no timing asserts)."""
import pytest
import torch
from torch import nn

from pruning.masks import Mask, prunable_layers
from pruning.metrics.flops import count_flops
from pruning.sparse import SparseConv2d, SparseLinear, _set_module, sparsify
from pruning.speedlab import (FORMS, _explain_physical, _interpolated_crossover, csr_crossover,
                              dense_forms, four_forms)


def net(channels=1):
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def channel_mask(model):
    masks = {}
    for name, layer in prunable_layers(model).items():
        keep = torch.ones(layer.weight.shape[0], dtype=torch.bool)
        keep[::2] = False
        masks[name] = keep.view(-1, 1, 1, 1).expand_as(layer.weight).clone()
    return Mask(masks)


def by_form(rows, batch_size):
    return {row["form"]: row for row in rows if row["batch_size"] == batch_size}


def test_four_forms_rows_are_complete_and_consistent():
    torch.manual_seed(0)
    model = net().eval()
    mask = channel_mask(model)
    rows = four_forms(model, mask, (1, 8, 8), "cpu", batch_sizes=(1, 4), max_seconds=0.5,
                      crossover={"crossover": 0.9})
    assert len(rows) == 8
    keys = {"form", "batch_size", "params", "flops", "median_ms", "p90_ms", "repeats", "device",
            "dtype", "threads", "memory_format", "theoretical_speedup", "measured_speedup",
            "explanation"}
    total = sum(p.numel() for p in model.parameters())
    dense_flops = count_flops(model, (1, 8, 8))
    for batch_size in (1, 4):
        forms = by_form(rows, batch_size)
        assert set(forms) == set(FORMS)
        for row in forms.values():
            assert set(row) == keys
            assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"]
            assert row["device"] == "cpu" and row["dtype"] == "float32"
            assert row["memory_format"] == "channels_first"  # PyTorch's default layout
            assert row["explanation"].endswith(".")
        assert forms["dense"]["params"] == total
        # half the filters of the two middle convs: 8 of (8 -> 16) and 8 of (16 -> 16)
        assert forms["masked"]["params"] == total - 8 * 8 * 9 - 8 * 16 * 9
        assert forms["sparse"]["params"] == forms["masked"]["params"]
        assert forms["physical"]["params"] < forms["masked"]["params"]
        assert forms["dense"]["flops"] == forms["masked"]["flops"] == dense_flops
        assert forms["physical"]["flops"] < dense_flops
        assert forms["dense"]["theoretical_speedup"] == forms["masked"]["theoretical_speedup"] == 1.0
        assert forms["physical"]["theoretical_speedup"] == pytest.approx(
            dense_flops / forms["physical"]["flops"])
        assert forms["dense"]["measured_speedup"] == 1.0
        assert "same FLOPs" in forms["masked"]["explanation"]
        assert "channels removed" in forms["physical"]["explanation"]


def test_unstructured_mask_explains_nothing_was_removed():
    torch.manual_seed(0)
    model = net().eval()
    mask = Mask({n: torch.rand(m.shape) > 0.5 for n, m in Mask.ones_like(model).items()})
    rows = four_forms(model, mask, (1, 8, 8), "cpu", batch_sizes=(2,), max_seconds=0.3,
                      crossover={"crossover": 0.9})
    forms = by_form(rows, 2)
    assert forms["physical"]["params"] == forms["dense"]["params"]
    assert "nothing could be removed" in forms["physical"]["explanation"]
    # 50 % sparse layers are too dense for CSR: the sparse form is masked dense again
    assert forms["sparse"]["flops"] == forms["dense"]["flops"]
    assert "90%" in forms["sparse"]["explanation"]


def test_csr_crossover_record():
    result = csr_crossover(64, 32, batch_size=8, sparsities=(0.5, 0.99), max_seconds=0.2)
    assert result["sparsities"] == [0.5, 0.99]
    assert len(result["dense_ms"]) == len(result["csr_ms"]) == len(result["speedup"]) == 2
    assert result["speedup"] == [d / c for d, c in zip(result["dense_ms"], result["csr_ms"])]
    assert result["crossover"] is None or 0.5 <= result["crossover"] <= 0.99
    assert result["device"] == "cpu" and result["threads"] == torch.get_num_threads()


def test_crossover_interpolation():
    s = [0.5, 0.8, 0.9, 0.99]
    assert _interpolated_crossover(s, [0.2, 0.5, 1.5, 3.0]) == pytest.approx(0.85)
    assert _interpolated_crossover(s, [2.0, 2.0, 2.0, 2.0]) == 0.5
    assert _interpolated_crossover(s, [0.1, 0.2, 0.3, 0.9]) is None
    # a lucky win below a loss does not count: CSR must stay faster from the crossover up
    assert _interpolated_crossover(s, [1.2, 0.5, 2.0, 4.0]) == pytest.approx(0.8 + 0.5 / 1.5 * 0.1)


def test_benchmark_masks_and_paired_ratio():
    from pruning.bench import channel_mask, magnitude_mask, paired_ratio
    torch.manual_seed(0)
    model = net()
    mask = magnitude_mask(model, 0.75)
    assert mask.kept() == mask.total() - round(0.75 * mask.total())
    params = {n: p.detach() for n, p in model.named_parameters()}
    smallest_kept = min(float(params[n][m].abs().min()) for n, m in mask.items())
    largest_pruned = max(float(params[n][~m].abs().max()) for n, m in mask.items())
    assert largest_pruned <= smallest_kept
    channels = channel_mask(model, 0.5, include_first=True)
    assert list(channels) == ["0.weight", "3.weight", "6.weight"]  # never the classifier
    for name, keep in channels.items():
        per_filter = keep.reshape(keep.shape[0], -1)
        assert bool((per_filter.all(dim=1) | ~per_filter.any(dim=1)).all())  # whole filters
        assert int(per_filter.all(dim=1).sum()) == keep.shape[0] // 2
    assert paired_ratio({"a": [2.0, 3.0, 10.0], "b": [1.0, 3.0, 2.0]}, "a", "b") == 2.0


def test_channels_last_changes_only_the_layout_not_params_or_flops():
    torch.manual_seed(0)
    model = net().eval()
    mask = channel_mask(model)
    common = dict(batch_sizes=(2,), max_seconds=0.3, crossover={"crossover": 0.9})
    first = four_forms(model, mask, (1, 8, 8), "cpu", **common)
    last = four_forms(model, mask, (1, 8, 8), "cpu", memory_format="channels_last", **common)
    assert [r["memory_format"] for r in last] == ["channels_last"] * len(FORMS)
    assert [r["memory_format"] for r in first] == ["channels_first"] * len(FORMS)
    for a, b in zip(first, last):
        assert (a["form"], a["batch_size"]) == (b["form"], b["batch_size"])
        assert a["params"] == b["params"]
        if a["form"] == "sparse":  # its FLOPs follow which layers measured faster as CSR
            assert b["flops"] <= first[0]["flops"]
            continue
        assert a["flops"] == b["flops"]
        assert a["theoretical_speedup"] == b["theoretical_speedup"]
    # the caller's model is left in PyTorch's default layout
    assert model[3].weight.is_contiguous()
    with pytest.raises(ValueError, match="memory format"):
        four_forms(model, mask, (1, 8, 8), "cpu", memory_format="nhwc", **common)


def test_flat_input_has_no_layout():
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(),
                          nn.Linear(4, 2)).eval()
    rows = four_forms(model, None, (16,), "cpu", batch_sizes=(2,), max_seconds=0.2,
                      crossover={"crossover": 0.9}, memory_format="channels_last")
    assert [r["memory_format"] for r in rows] == [None] * len(FORMS)


def test_every_form_gives_the_nchw_outputs_in_channels_last():
    torch.manual_seed(0)
    model = net(channels=3).eval()  # 3 channels: a 1-channel batch is contiguous in both layouts
    mask = channel_mask(model)
    x = torch.randn(3, 3, 8, 8)
    x_last = x.contiguous(memory_format=torch.channels_last)
    assert not x_last.is_contiguous()
    nchw, _ = dense_forms(model, mask, (3, 8, 8), "cpu")
    nhwc, not_removed = dense_forms(model, mask, (3, 8, 8), "cpu", memory_format="channels_last")
    assert not_removed is None
    assert nhwc["physical"][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not nhwc["physical"][0].weight.is_contiguous()
    with torch.inference_mode():
        for form in ("dense", "masked", "physical"):
            torch.testing.assert_close(nhwc[form](x_last), nchw[form](x), atol=1e-5, rtol=1e-5)
        # the sparse form with every layer swapped to CSR (as if each had measured faster)
        sparse = nhwc["masked"]
        for name, layer in list(sparse.named_modules()):
            if isinstance(layer, nn.Conv2d):
                _set_module(sparse, name, SparseConv2d(layer, "csr", channels_last=True))
            elif isinstance(layer, nn.Linear):
                _set_module(sparse, name, SparseLinear(layer, "csr"))
        out = sparse[0](x_last)
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        torch.testing.assert_close(sparse(x_last), nchw["masked"](x), atol=1e-5, rtol=1e-5)
        # and sparsify itself, whatever it chose, in channels_last
        chosen, info = sparsify(nchw["masked"], None, "cpu", input_shape=(3, 8, 8),
                                batch_size=3, repeats=2, max_seconds_per_layer=0.02,
                                memory_format="channels_last")
        assert info["memory_format"] == "channels_last"
        torch.testing.assert_close(chosen(x_last), nchw["masked"](x), atol=1e-5, rtol=1e-5)


def test_physical_explanation_names_the_layout_when_flops_are_not_realised():
    cpu = torch.device("cpu")
    nchw = _explain_physical(4.0, 1.8, 64, "channels_first", cpu)
    assert "memory-bound" in nchw and "pooling" in nchw and "channels_last" in nchw
    assert "45%" in nchw
    nhwc = _explain_physical(4.0, 1.8, 64, "channels_last", cpu)
    assert "memory-bound" in nhwc and "NCHW" not in nhwc
    assert "speed-up is real (channels_last layout)" in _explain_physical(
        4.0, 3.6, 64, "channels_last", cpu)


def test_bench_channel_figures_report_both_layouts():
    from pruning.bench import channel_figures
    result = channel_figures(torch.device("cpu"), repeats=1, max_seconds=0.1, batch_size=2,
                             model_name="vgg11", width=0.125)
    assert result["channel_memory_format"] == "channels_last"
    assert set(result["channel_speedup_vs_flops"]) == {"0.5", "0.75"}
    assert set(result["channel_speedup_vs_flops_channels_first"]) == {"0.5", "0.75"}
    details = result["details"]
    assert details["headline_memory_format"] == "channels_last"
    assert "pooling" in details["why_layouts_differ"]
    for layout in ("channels_last", "channels_first"):
        for fraction in ("0.5", "0.75"):
            d = details[layout][fraction]
            assert d["params_pruned"] < d["params_dense"]
            assert d["measured_speedup"] / d["flops_ratio"] == pytest.approx(
                details[layout]["ratio"][fraction])
    assert result["channel_speedup_vs_flops"] == details["channels_last"]["ratio"]
    # the layout changes neither the models nor their FLOPs
    for fraction in ("0.5", "0.75"):
        a, b = details["channels_last"][fraction], details["channels_first"][fraction]
        assert a["flops_ratio"] == b["flops_ratio"] and a["params_pruned"] == b["params_pruned"]


def test_bench_pruning_step_compares_the_two_paths_on_identical_masks():
    from pruning.bench import pruning_step
    from pruning.config import RunConfig

    result = pruning_step(torch.device("cpu"), RunConfig(epochs=2, max_train_samples=256))
    assert result["steps"] == 8  # 256 samples / batch 64, two epochs
    assert result["final_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert result["per_step_ms"] > 0 and result["full_ranking_ms"] > 0


def test_physical_explanation_of_an_unstructured_run_claims_no_speed_up():
    # nothing removed (FLOPs ratio 1.00): the "physical" form is the dense model
    text = _explain_physical(1.0, 1.04, 64, "channels_first", torch.device("cpu"))
    assert "speed-up is real" not in text and "fewer FLOPs" not in text
    assert "no whole channel" in text and "noise" in text


def test_bench_times_models_with_batchnorm_folded_and_unchanged_outputs():
    """The channel figures time the inference form: no BatchNorm left, the same logits."""
    from pruning.bench import fold_batchnorm
    from pruning.models import MODELS

    torch.manual_seed(0)
    model = MODELS.get("vgg11")(3, 10, 32, 0.25).eval()
    for module in model.modules():  # non-trivial statistics, so folding has work to do
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), expected, atol=1e-4)


def test_bench_masked_step_uses_the_trainers_mask_code_without_a_pruner():
    """The figure drives ScheduledHooks with no pruner (only its mask re-application): it must
    run and report both timings."""
    from pruning.bench import masked_step_ratio

    figure = masked_step_ratio(torch.device("cpu"), repeats=3, max_seconds=5.0)
    assert figure["ratio"] > 0 and figure["repeats"] >= 1
    assert figure["dense_ms"] > 0 and figure["masked_ms"] > 0 and figure["sparsity"] == 0.9
