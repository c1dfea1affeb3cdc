"""SSC (Verma et al., arXiv 2210.12818; METHODS.md §5): pattern, special cases, fast forward."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruning.config import RunConfig
from pruning.validation import validate
from pruning.masks import prunable_parameters
from pruning.metrics.flops import count_flops, layer_flops
from pruning.methods import METHODS, method_config
from pruning.methods.ssc import (FULL, POINTWISE, SSCConv2d, SscConfig, choose_periods,
                                 pattern_matrix, period_options, ssc_baseline_configs,
                                 ssc_forward_vs_masked, ssc_layers, to_ssc)
from pruning.models import build_model
from pruning.metrics.flops import count_flops
from pruning.training import MemoryRecorder, RunContext


def _dense_of_grouped(conv: nn.Conv2d) -> torch.Tensor:
    """The (C_out, C_in, kH, kW) dense equivalent of a grouped conv's weight."""
    out_c, per_group, kh, kw = conv.weight.shape
    dense = torch.zeros(out_c, conv.in_channels, kh, kw)
    out_per_group = out_c // conv.groups
    for g in range(conv.groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * per_group:(g + 1) * per_group] = conv.weight.detach()[rows]
    return dense


def _check_same_as(reference: nn.Conv2d, ssc: SSCConv2d, x: torch.Tensor) -> None:
    ssc.load_dense_weight(_dense_of_grouped(reference), reference.bias)
    with torch.no_grad():
        torch.testing.assert_close(ssc(x), reference(x), rtol=0, atol=1e-5)
    assert ssc.weight_params == reference.weight.numel()


def test_pattern_definition_shifted_and_blocked():
    pattern = pattern_matrix(8, 6, 4, 2, "shifted")
    for f, c in itertools.product(range(6), range(8)):
        if (c - f) % 4 == 0:
            assert pattern[f, c] == FULL
        elif (c - f) % 2 == 0:
            assert pattern[f, c] == POINTWISE
        else:
            assert pattern[f, c] == 0
    blocked = pattern_matrix(8, 4, 2, 0, "blocked")
    assert blocked.tolist() == [[2, 2, 2, 2, 0, 0, 0, 0]] * 2 + [[0, 0, 0, 0, 2, 2, 2, 2]] * 2
    assert (pattern_matrix(5, 7, 1, 3) == FULL).all()          # P_k = 1: dense
    assert (pattern_matrix(5, 7, 0, 1) == POINTWISE).all()     # P_k = 0, P_p = 1: pointwise


@pytest.mark.parametrize("layout", ["shifted", "blocked"])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_special_case(layout, stride):
    torch.manual_seed(0)
    reference = nn.Conv2d(8, 8, 3, stride=stride, padding=1, groups=8, bias=True)
    ssc = SSCConv2d(8, 8, 3, stride, 1, period_full=8, period_pointwise=0, layout=layout)
    assert ssc.kind == "depthwise"
    _check_same_as(reference, ssc, torch.randn(2, 8, 9, 9))


@pytest.mark.parametrize("c_in, c_out, groups", [(8, 12, 4), (6, 6, 2), (16, 8, 8)])
def test_group_convolution_special_case(c_in, c_out, groups):
    torch.manual_seed(1)
    reference = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, groups=groups, bias=True)
    ssc = SSCConv2d(c_in, c_out, 3, 2, 1, period_full=groups, period_pointwise=0,
                    layout="blocked")
    assert ssc.kind == "group"
    _check_same_as(reference, ssc, torch.randn(2, c_in, 10, 10))


def test_shifted_group_conv_is_a_group_conv_over_permuted_channels():
    """HetConv's shift: filter f reads channels c ≡ f (mod P) — a group conv after a permutation."""
    torch.manual_seed(2)
    c, p = 12, 3
    ssc = SSCConv2d(c, c, 3, 1, 1, period_full=p, period_pointwise=0)
    order = torch.cat([torch.arange(r, c, p) for r in range(p)])  # channels sorted by class
    reference = nn.Conv2d(c, c, 3, padding=1, groups=p)
    dense = _dense_of_grouped(reference)
    inverse = torch.argsort(order)
    ssc.load_dense_weight(dense[inverse][:, inverse], reference.bias[inverse])
    x = torch.randn(2, c, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(ssc(x)[:, order], reference(x[:, order]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0), (2, 0)])
def test_pointwise_special_case(stride, padding):
    """Centre taps only of a 3x3 conv = PyTorch's 1x1 conv on the centred input."""
    torch.manual_seed(3)
    reference = nn.Conv2d(6, 10, 1, stride=stride, bias=True)
    ssc = SSCConv2d(6, 10, 3, stride, padding, period_full=0, period_pointwise=1)
    assert ssc.kind == "pointwise" and ssc.weight_params == 60
    dense = torch.zeros(10, 6, 3, 3)
    dense[:, :, 1, 1] = reference.weight.detach()[:, :, 0, 0]
    ssc.load_dense_weight(dense, reference.bias)
    x = torch.randn(2, 6, 9, 9)
    crop = 1 - padding  # the 3x3 window's centre never visits an unpadded border
    with torch.no_grad():
        expected = reference(x[:, :, crop:9 - crop, crop:9 - crop])
        torch.testing.assert_close(ssc(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(ssc.masked_forward(x), expected, rtol=0, atol=1e-5)


def test_dense_special_case():
    torch.manual_seed(4)
    reference = nn.Conv2d(5, 7, 3, stride=2, padding=1, bias=False)
    ssc = SSCConv2d(5, 7, 3, 2, 1, period_full=1, period_pointwise=1, bias=False)
    assert ssc.kind == "dense"
    _check_same_as(reference, ssc, torch.randn(2, 5, 8, 8))


CASES = [case for case in itertools.product(
    # C_in, C_out, k, stride; 4 -> 8 leaves filters without any kernel of a part at P = 8
    [(6, 4, 3, 1), (8, 12, 3, 2), (8, 12, 1, 1), (16, 16, 3, 1), (4, 8, 3, 1)],
    [0, 1, 3, 4, 8], [0, 1, 2], ["shifted", "blocked"]) if case[1] or case[2]]


def test_fast_forward_equals_masked_dense_conv():
    """Outputs and gradients of the grouped forward = the masked dense conv, for every kind of
    pattern: even and uneven classes, empty classes, fused and separate pointwise parts."""
    torch.manual_seed(5)
    for (c_in, c_out, k, stride), pk, pp, layout in CASES:
        case = f"C_in={c_in} C_out={c_out} k={k} stride={stride} P_k={pk} P_p={pp} {layout}"
        layer = SSCConv2d(c_in, c_out, k, stride, k // 2, pk, pp, layout=layout)
        x = torch.randn(2, c_in, 7, 7, requires_grad=True)
        inputs = [x, layer.weight_full, layer.weight_pointwise, layer.bias]
        fast = layer(x)
        grads_fast = torch.autograd.grad(fast.square().sum(), inputs, allow_unused=True)
        masked = layer.masked_forward(x)
        grads_masked = torch.autograd.grad(masked.square().sum(), inputs, allow_unused=True)
        torch.testing.assert_close(fast, masked, rtol=1e-4, atol=1e-5, msg=case)
        for tensor, a, b in zip(inputs, grads_fast, grads_masked):
            if tensor.numel():  # an empty part (no full or no pointwise kernels): no gradient
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=case)
        pattern = pattern_matrix(c_in, c_out, pk, pp, layout)
        assert (layer.dense_equivalent_weight()[pattern == 0] == 0).all(), case
        assert layer.weight_params == (int((pattern == FULL).sum()) * k * k
                                       + int((pattern == POINTWISE).sum())), case


def test_forward_runs_grouped_convs_not_a_masked_dense_one(monkeypatch):
    calls = []
    original = F.conv2d

    def spy(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((tuple(weight.shape), groups))
        return original(x, weight, bias, stride, padding, dilation, groups)

    layer = SSCConv2d(16, 16, 3, 1, 1, period_full=4, period_pointwise=1)
    monkeypatch.setattr(F, "conv2d", spy)
    layer(torch.randn(1, 16, 6, 6))
    # a 4-group 3x3 conv and one 1x1 conv over the same permuted channels, nothing dense 3x3
    assert calls == [((16, 4, 3, 3), 4), ((16, 16, 1, 1), 1)]
    assert layer.weight_params == 16 * 4 * 9 + 16 * 12


def test_flops_are_the_multiply_adds_of_the_stored_weights():
    """2 · stored weights · H' · W' for every kind of pattern, whatever the fast form
    dispatches (the fused 1×1 part holds zeros under full kernels; uneven classes are padded)."""
    for (c_in, c_out, k, stride), pk, pp, layout in CASES:
        case = f"C_in={c_in} C_out={c_out} k={k} stride={stride} P_k={pk} P_p={pp} {layout}"
        layer = SSCConv2d(c_in, c_out, k, stride, k // 2, pk, pp, layout=layout, bias=False)
        h = (7 + 2 * (k // 2) - k) // stride + 1
        assert count_flops(layer, (c_in, 7, 7)) == 2 * layer.weight_params * h * h, case
    # Inside a model, the other layers keep the counter's own figures.
    config = RunConfig(method="ssc", sparsity=0.7)
    model = build_model(config, 1, 10, 8)
    stem = count_flops(model.stem[0], (1, 8, 8))  # the stem is not replaced
    to_ssc(model, 0.3, period_full=4, period_pointwise=1)
    kinds = {layer.kind for _, layer in ssc_layers(model)}
    assert kinds == {"mixed"}
    total, _ = layer_flops(model, (1, 8, 8))
    assert total == count_flops(model, (1, 8, 8))
    sizes = {"conv2.0": 4, "conv3.0": 4, "conv4.0": 2}  # output sides of small_cnn on 8x8
    ssc_part = sum(2 * layer.weight_params * sizes[name] ** 2 for name, layer in ssc_layers(model))
    rest = stem + 2 * (model.fc1.weight.numel() + model.fc2.weight.numel())
    assert total == ssc_part + rest


def test_uneven_classes_pad_and_stay_exact():
    layer = SSCConv2d(10, 7, 3, 1, 1, period_full=4, period_pointwise=0)
    assert layer.full_plan.groups == 4 and layer.full_plan.n_in == 3
    x = torch.randn(2, 10, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.masked_forward(x), rtol=1e-5, atol=1e-6)


def test_period_options_and_choice():
    options = period_options(16, 32, (3, 3))
    assert options[0].period_full == 1 and options[0].density == 1.0
    assert {(o.period_full, o.period_pointwise) for o in options} >= {(16, 0), (4, 1), (0, 1)}
    het4 = next(o for o in options if (o.period_full, o.period_pointwise) == (4, 1))
    assert het4.params == 16 * 32 // 4 * 9 + 16 * 32 * 3 // 4
    # 1x1 layers: no separate pointwise kernels
    assert all(o.period_pointwise == 0 for o in period_options(8, 8, (1, 1)))
    layers = [(16, 16, (3, 3)), (16, 32, (3, 3)), (32, 32, (1, 1))]
    dense = 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32
    for density in (0.9, 0.5, 0.3, 0.1):
        picked = choose_periods(layers, int(density * dense))
        assert sum(o.params for o in picked) <= density * dense
    # a common density leaves budget over (0.556 each); the greedy fill makes one layer dense
    two = [(16, 16, (3, 3))] * 2
    picked = choose_periods(two, int(0.8 * 2 * 16 * 16 * 9))
    assert sorted((o.period_full, o.period_pointwise) for o in picked) == [(1, 0), (2, 1)]


def test_to_ssc_replaces_prunable_convs_within_budget():
    model = build_model(RunConfig(model="resnet20", width=0.5), 3, 10, 8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    dense = sum(m.weight.numel() for m in convs[1:])
    to_ssc(model, 0.3, generator=torch.Generator().manual_seed(0))
    layers = ssc_layers(model)
    assert isinstance(model.conv1, nn.Conv2d) and not isinstance(model.conv1, SSCConv2d)
    assert len(layers) == len(convs) - 1  # every conv but the stem (the classifier is a Linear)
    kept = sum(layer.weight_params for _, layer in layers)
    assert 0.2 * dense < kept <= 0.3 * dense
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    small = build_model(RunConfig(), 1, 10, 8)
    to_ssc(small, period_full=4, period_pointwise=1)
    assert [name for name, _ in ssc_layers(small)] == ["conv2.0", "conv3.0", "conv4.0"]
    assert all(layer.kind == "mixed" for _, layer in ssc_layers(small))


def test_ssc_run_records_patterns_and_trains(digits):
    config = RunConfig(method="ssc", epochs=1, batch_size=64, sparsity=0.8)
    digits.train_x, digits.train_y = digits.train_x[:128], digits.train_y[:128]
    model = build_model(config, 1, 10, 8)
    params_dense, flops_dense = _params(model), count_flops(model, (1, 8, 8))
    recorder = MemoryRecorder()
    ctx = RunContext(config, method_config(config), digits, torch.device("cpu"), recorder)
    result = METHODS.get("ssc")(config, method_config(config)).run(model, ctx)
    assert result.mask is None and METHODS.get("ssc").changes_architecture
    summary = result.summary  # SSC's extras; parameters and FLOPs are the session's
    assert _params(result.model) < params_dense
    assert count_flops(result.model, (1, 8, 8)) < flops_dense
    assert summary["conv_params"] < summary["conv_params_dense"]
    assert summary["density"] <= 0.2 and summary["layers"] == 3
    patterns = [p for kind, _, p in recorder.traces if kind == "ssc_pattern"]
    assert [p["layer"] for p in patterns] == ["conv2.0", "conv3.0", "conv4.0"]
    for p in patterns:
        assert set(p) >= {"layer", "in", "out", "kernel", "period_full", "period_pointwise",
                          "kind", "params", "dense_params", "pattern"}
        assert len(p["pattern"]) == min(32, p["out"]) and len(p["pattern"][0]) == min(32, p["in"])
        assert {v for row in p["pattern"] for v in row} <= {0, 1, 2}
    assert [row["phase"] for row in recorder.epochs] == ["train"]


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_ssc_config_validation():
    with pytest.raises(ValueError, match="layout"):
        SscConfig(layout="diagonal")
    with pytest.raises(ValueError, match="empty"):
        SscConfig(period_full=0, period_pointwise=0)
    cfg = method_config(RunConfig(method="ssc", method_params={"density": "0.25"}))
    assert cfg.density == 0.25


def test_baseline_configs_match_the_ssc_parameter_count():
    base = RunConfig(model="small_cnn", sparsity=0.75, epochs=3)
    configs = ssc_baseline_configs(base)
    assert [c.method for c in configs] == ["ssc", "random", "snip", "grasp", "synflow"]
    model = build_model(base, 1, 10, 8)
    dense_total = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    to_ssc(model, 0.25)
    ssc_total = sum(p.numel() for p in model.parameters())
    for c in configs[1:]:
        validate(c)
        assert (c.schedule, c.window_start, c.window_end) == ("one_shot", 0.0, 0.0)
        assert (c.model, c.epochs, c.seed) == ("small_cnn", 3, 0)
        assert dense_total - c.sparsity * prunable == pytest.approx(ssc_total, abs=0.5)


def test_forward_vs_masked_timing_reports_both():
    result = ssc_forward_vs_masked(in_channels=16, out_channels=16, image_size=8,
                                   batch_size=2, density=0.5, repeats=2)
    assert result["ssc_ms"] > 0 and result["masked_ms"] > 0
    assert result["ratio"] == pytest.approx(result["ssc_ms"] / result["masked_ms"])
    assert (result["period_full"], result["period_pointwise"], result["density"]) == (2, 0, 0.5)
