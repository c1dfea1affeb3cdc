"""The speed lab's four forms and the CSR crossover: complete, consistent rows (no timing asserts)."""
import pytest
import torch
from torch import nn

from pruning.masks import Mask, prunable_layers
from pruning.metrics.flops import count_flops
from pruning.speedlab import FORMS, _interpolated_crossover, csr_crossover, four_forms


def net():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
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
            "dtype", "threads", "theoretical_speedup", "measured_speedup", "explanation"}
    total = sum(p.numel() for p in model.parameters())
    dense_flops = count_flops(model, (1, 8, 8))
    for batch_size in (1, 4):
        forms = by_form(rows, batch_size)
        assert set(forms) == set(FORMS)
        for row in forms.values():
            assert set(row) == keys
            assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"]
            assert row["device"] == "cpu" and row["dtype"] == "float32"
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
