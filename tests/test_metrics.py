"""FLOPs against hand formulas, masked FLOPs against density, latency records, parameter counts."""
import pytest
import torch
from torch import nn

from pruning.masks import Mask
from pruning.metrics import count_flops, masked_flops, measure_latency, param_counts, sparsity_report
from pruning.metrics.latency import summarise
from pruning.models import MODELS


def conv_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))


def test_flops_of_linear_and_conv_match_hand_formulas():
    assert count_flops(nn.Linear(20, 7), (20,)) == 2 * 20 * 7
    # conv: 2 × C_in × k × k × C_out × H_out × W_out
    assert count_flops(nn.Conv2d(3, 5, 3, padding=1), (3, 6, 6)) == 2 * 3 * 9 * 5 * 6 * 6
    assert count_flops(nn.Conv2d(4, 6, 3, stride=2), (4, 9, 9)) == 2 * 4 * 9 * 6 * 4 * 4
    # depthwise: each output channel sees one input channel
    assert count_flops(nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 5, 5)) == 2 * 9 * 8 * 5 * 5
    expected = 2 * (3 * 9 * 8 * 64 + 8 * 9 * 16 * 16 + 256 * 32 + 32 * 10)
    assert count_flops(conv_net(), (3, 8, 8)) == expected


def test_count_flops_restores_training_mode():
    model = conv_net().train()
    count_flops(model, (3, 8, 8))
    assert model.training
    model.eval()
    masked_flops(model, None, (3, 8, 8))
    assert not model.training


def test_masked_flops_scale_with_each_layers_density():
    model = conv_net()
    dense = count_flops(model, (3, 8, 8))
    ones = Mask.ones_like(model)  # the two middle layers: conv 8->16 and linear 256->32
    assert masked_flops(model, ones, (3, 8, 8)) == dense
    assert masked_flops(model, None, (3, 8, 8)) == dense
    conv_flops, linear_flops = 2 * 8 * 9 * 16 * 16, 2 * 256 * 32
    for keep_conv, keep_linear in [(0.5, 0.25), (0.0, 1.0), (0.125, 0.0)]:
        masks = {}
        for (name, m), keep in zip(ones.items(), [keep_conv, keep_linear]):
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[:int(round(keep * m.numel()))] = True
            masks[name] = flat.reshape(m.shape)
        expected = dense - conv_flops * (1 - keep_conv) - linear_flops * (1 - keep_linear)
        assert masked_flops(model, Mask(masks), (3, 8, 8)) == pytest.approx(expected, abs=1)


def test_masked_flops_without_mask_reads_zero_weights():
    model = conv_net()
    with torch.no_grad():
        model[6].weight[:, :128] = 0  # half of linear 256->32
    dense = count_flops(model, (3, 8, 8))
    assert masked_flops(model, None, (3, 8, 8)) == dense - 256 * 32


def test_latency_record_has_all_fields():
    model = conv_net().train()
    result = measure_latency(model, (3, 8, 8), "cpu", batch_size=4, warmup=1, repeats=5)
    assert set(result) == {"median_ms", "p90_ms", "mean_ms", "repeats", "batch_size", "device",
                           "dtype", "threads"}
    assert result["median_ms"] > 0 and result["p90_ms"] >= result["median_ms"]
    assert result["repeats"] == 5 and result["batch_size"] == 4
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["threads"] == torch.get_num_threads()
    assert model.training  # mode restored


def test_latency_time_cap_limits_repeats():
    result = measure_latency(conv_net(), (3, 8, 8), "cpu", batch_size=2, warmup=0,
                             repeats=10_000, max_seconds=0.0)
    assert result["repeats"] == 3


def test_latency_other_dtype_leaves_model_untouched():
    model = conv_net()
    result = measure_latency(model, (3, 8, 8), "cpu", batch_size=2, warmup=0, repeats=3,
                             dtype=torch.float64)
    assert result["dtype"] == "float64"
    assert next(model.parameters()).dtype == torch.float32


def test_summarise_median_and_p90():
    stats = summarise([float(i) for i in range(1, 11)])
    assert stats["median_ms"] == 5.5 and stats["p90_ms"] == 9.0 and stats["mean_ms"] == 5.5


def test_param_counts_and_three_sparsities():
    model = conv_net()
    ones = Mask.ones_like(model)
    counts = param_counts(model, ones)
    total = sum(p.numel() for p in model.parameters())
    assert counts["params"] == total
    assert counts["prunable_params"] == 8 * 16 * 9 + 256 * 32
    assert counts["prunable_nonzero"] == counts["prunable_params"]
    half = Mask({name: torch.arange(m.numel()).reshape(m.shape) % 2 == 0
                 for name, m in ones.items()})
    counts = param_counts(model, half)
    assert counts["prunable_nonzero"] == counts["prunable_params"] // 2
    zero_bn_bias = 8  # BatchNorm's bias starts at exactly zero
    assert counts["params_nonzero"] == total - counts["prunable_params"] // 2 - zero_bn_bias
    assert param_counts(model, None)["prunable_params"] == counts["prunable_params"]

    report = sparsity_report(0.5, half, dense_params=1000, compact_params=800)
    assert report == {"target_sparsity": 0.5, "mask_sparsity": pytest.approx(0.5),
                      "effective_sparsity": pytest.approx(0.2)}
    assert sparsity_report(None, None, 10, 10) == {"target_sparsity": 0.0, "mask_sparsity": 0.0,
                                                   "effective_sparsity": 0.0}


@pytest.mark.parametrize("name", MODELS.names())
def test_hook_counts_equal_flop_counter_mode_on_every_registered_model(name):
    """The fast path (forward hooks) gives FlopCounterMode's totals and per-layer figures, on the
    dense model and on its physically compacted form."""
    from pruning.metrics.flops import count_with_counter_mode, hooks_suffice, layer_flops
    from pruning.models import MODELS
    from pruning.physical import compact_model

    torch.manual_seed(0)
    model = MODELS.get(name)(3, 10, 32, 0.5)
    assert hooks_suffice(model)
    assert layer_flops(model, (3, 32, 32)) == count_with_counter_mode(model, (3, 32, 32))
    example = torch.zeros(1, 3, 32, 32)
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 4}
    mask = Mask({n: (torch.arange(p.shape[0]) % 2 == 0).view(-1, 1, 1, 1).expand_as(p).clone()
                 for n, p in list(weights.items())[1:-1]})
    compact = compact_model(model, mask, example)
    assert layer_flops(compact, (3, 32, 32)) == count_with_counter_mode(compact, (3, 32, 32))


def test_layers_the_hooks_cannot_see_go_through_the_counter():
    """A leaf with its own forward (a matmul) is not a Conv/Linear: FlopCounterMode counts it."""
    from pruning.metrics.flops import hooks_suffice

    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 3))

        def forward(self, x):  # (B, 4) -> (B, 3)
            return x @ self.w

    model = nn.Sequential(nn.Linear(5, 4), Bilinear())
    assert not hooks_suffice(model)
    assert count_flops(model, (5,)) == 2 * 5 * 4 + 2 * 4 * 3
    assert hooks_suffice(nn.Sequential(nn.Linear(5, 4), nn.ReLU()))
