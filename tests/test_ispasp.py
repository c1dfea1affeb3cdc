"""i-SpaSP (Wolfe & Kyrillidis, arXiv 2112.04905; METHODS.md §4): selection, blocks, surgery."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pruning.config import ConfigError, RunConfig
from pruning.data import load_dataset
from pruning.methods import METHODS, method_config
from pruning.methods.ispasp import (Block, IspaspConfig, _split_epochs, capture_hidden,
                                    dependency_graph, find_blocks, ispasp_select,
                                    prune_block)
from pruning.models import build_model
from pruning.metrics.flops import count_flops
from pruning.training import MemoryRecorder, RunContext


def _linear_block(c_in=12, hidden=16, c_out=24, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(c_in, hidden), nn.Linear(hidden, c_out)


def _hidden(layer1, x):
    return [torch.relu(layer1(chunk)).detach() for chunk in x.split(32)]


def test_residual_after_last_iteration_not_above_first_and_exactly_s_units():
    layer1, layer2 = _linear_block()
    x = torch.randn(96, 12)
    for keep in (2, 3, 5):
        result = ispasp_select(_hidden(layer1, x), layer2, 16, keep, iterations=10)
        assert len(result.residuals) == 10
        assert result.residuals[-1] <= result.residuals[0] + 1e-6
        assert len(result.kept) == keep == len(set(result.kept))
        assert result.kept == sorted(result.kept) and all(0 <= u < 16 for u in result.kept)


def test_residual_is_half_squared_error_of_the_kept_units():
    layer1, layer2 = _linear_block(seed=3)
    x = torch.randn(64, 12)
    hidden = _hidden(layer1, x)
    result = ispasp_select(hidden, layer2, 16, 4, iterations=3)
    h = torch.cat(hidden)
    mask = torch.zeros(16)
    mask[result.kept] = 1.0
    with torch.no_grad():
        expected = 0.5 * (layer2(h) - layer2(h * mask)).pow(2).sum()
        dense_norm = layer2(h).norm()
    assert result.residuals[-1] == pytest.approx(float(expected), rel=1e-5)
    assert result.dense_norm == pytest.approx(float(dense_norm), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_the_only_active_units(seed):
    """Only s of C hidden units are ever active (the rest have a large negative bias)."""
    channels, keep = 32, 4
    layer1, layer2 = _linear_block(c_in=10, hidden=channels, c_out=64, seed=seed)
    active = torch.randperm(channels, generator=torch.Generator().manual_seed(seed))[:keep]
    with torch.no_grad():
        inactive = torch.ones(channels, dtype=torch.bool)
        inactive[active] = False
        layer1.bias[inactive] = -100.0
        layer1.bias[active] = 3.0
    x = torch.randn(128, 10)
    hidden = _hidden(layer1, x)
    assert float(torch.cat(hidden)[:, inactive].abs().sum()) == 0.0
    result = ispasp_select(hidden, layer2, channels, keep, iterations=5)
    assert result.kept == sorted(active.tolist())
    assert result.residuals[-1] == pytest.approx(0.0, abs=1e-6)


class _ConvNet(nn.Module):
    """conv-BN-ReLU-pool-conv-BN-ReLU-flatten-Linear-ReLU-Linear: every kind of block boundary."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))   # (B, 8, 4, 4)
        x = torch.relu(self.bn2(self.conv2(x))).flatten(1)   # (B, 96)
        return self.fc2(torch.relu(self.fc1(x)))              # (B, 5)


def _randomise_bn(model):
    generator = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


def test_find_blocks_on_a_stand_in_cnn():
    blocks = find_blocks(_ConvNet(), torch.randn(2, 3, 8, 8))
    assert [(b.layer1, b.norms, b.layer2, b.norm2, b.channels, b.positions) for b in blocks] == [
        ("conv1", ("bn1",), "conv2", "bn2", 8, 1),
        ("conv2", ("bn2",), "fc1", None, 6, 16),
        ("fc1", (), "fc2", None, 10, 1)]


def _masked_reference(model, blocks_and_kept):
    """The dense model with the pruned hidden channels zeroed at layer2's input."""
    reference = copy.deepcopy(model)
    modules = dict(reference.named_modules())
    for block, kept in blocks_and_kept:
        keep = torch.zeros(block.channels)
        keep[kept] = 1.0

        def hook(module, args, keep=keep, positions=block.positions):
            h = args[0]
            if h.dim() == 2:
                return (h * keep.repeat_interleave(positions),)
            return (h * keep.view(1, -1, *([1] * (h.dim() - 2))),)

        modules[block.layer2].register_forward_pre_hook(hook)
    return reference


# Outputs of the channel surgery on fixed channel choices, recorded from the hand-written
# surgery that preceded the Torch-Pruning one (tests/data/ispasp_surgery_reference.json): the
# dependency-graph surgery must give the same outputs and parameter shapes.
SURGERY_CASES = [("stand_in", 8, 1.0), ("lenet5", 8, 1.0), ("mlp", 8, 0.2),
                 ("resnet20", 8, 0.5), ("mobilenet_v2", 8, 0.25), ("small_cnn", 8, 0.5),
                 ("vgg11", 8, 0.25)]
SURGERY_REFERENCE = Path(__file__).parent / "data" / "ispasp_surgery_reference.json"


def surgery_case(name, size, width):
    """(model with randomised BatchNorms in eval mode, input, blocks, chosen units per block)."""
    torch.manual_seed(0)
    if name == "stand_in":
        model = _ConvNet()
    else:
        model = build_model(RunConfig(model=name, width=width), 3, 10, size)
    _randomise_bn(model)
    model.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    blocks = find_blocks(model, x)
    generator = torch.Generator().manual_seed(1)
    chosen = [sorted(torch.randperm(block.channels, generator=generator)
                     [:max(1, block.channels // 3)].tolist()) for block in blocks]
    return model, x, blocks, chosen


@pytest.mark.parametrize("name, size, width", SURGERY_CASES)
def test_surgery_equals_the_dense_block_restricted_to_s(name, size, width):
    model, x, blocks, units = surgery_case(name, size, width)
    chosen = list(zip(blocks, units))
    reference = _masked_reference(model, chosen)
    params_before = sum(p.numel() for p in model.parameters())
    graph = dependency_graph(model, x[:2])
    for block, kept in chosen:
        prune_block(model, block, kept, graph)
    modules = dict(model.named_modules())
    for block, kept in chosen:
        layer1 = modules[block.layer1]
        out = layer1.out_features if isinstance(layer1, nn.Linear) else layer1.out_channels
        assert out == len(kept) == layer1.weight.shape[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) < params_before


def test_blocks_of_the_registered_architectures():
    resnet = build_model(RunConfig(model="resnet20", width=0.5), 3, 10, 16)
    blocks = find_blocks(resnet, torch.randn(2, 3, 16, 16))
    assert [b.layer1 for b in blocks] == [f"layer{i}.{j}.conv1" for i in (1, 2, 3)
                                          for j in range(3)]
    assert all(b.layer2 == b.layer1.replace("conv1", "conv2") for b in blocks)
    mobilenet = build_model(RunConfig(model="mobilenet_v2", width=0.25), 3, 10, 16)
    blocks = find_blocks(mobilenet, torch.randn(2, 3, 16, 16))
    expanding = [b for b in blocks if b.layer1.endswith("conv.0.0")]
    assert len(expanding) == 16  # every inverted residual with expansion 6
    assert all(len(b.depthwise) == 1 and len(b.norms) == 2 for b in expanding)
    assert all(b.layer2 == b.layer1.replace("conv.0.0", "conv.2") for b in expanding)
    # linear bottlenecks (project conv -> BN -> next conv, no activation) are not blocks
    assert not any(b.layer1.endswith("conv.2") or b.layer1.endswith("conv.1") for b in blocks)
    mlp = build_model(RunConfig(model="mlp"), 1, 10, 8)
    assert [(b.layer1, b.layer2) for b in find_blocks(mlp, torch.randn(2, 1, 8, 8))] == [
        ("fc1", "fc2"), ("fc2", "fc3")]


def test_capture_hidden_sees_the_pruned_upstream_network():
    model = _ConvNet().eval()
    x = [torch.randn(3, 3, 8, 8)]
    blocks = find_blocks(model, x[0])
    prune_block(model, blocks[0], [0, 2, 5], dependency_graph(model, x[0]))
    (hidden,) = capture_hidden(model, model.fc1, x)
    assert hidden.shape == (3, 6 * 16)
    (hidden,) = capture_hidden(model, model.conv2, x)
    assert hidden.shape == (3, 3, 4, 4)


def test_config_validation_and_epoch_split():
    with pytest.raises(ValueError, match="at most 1"):
        IspaspConfig(pretrain_fraction=0.8, finetune_fraction=0.4)
    with pytest.raises(ValueError, match="keep_ratio"):
        IspaspConfig(keep_ratio=0.0)
    cfg = method_config(RunConfig(method="ispasp", method_params={"keep_ratio": "0.3",
                                                                  "iterations": "7"}))
    assert (cfg.keep_ratio, cfg.iterations) == (0.3, 7)
    assert _split_epochs(12, IspaspConfig()) == (7, 5)
    assert _split_epochs(1, IspaspConfig()) == (1, 0)
    assert _split_epochs(10, IspaspConfig(pretrain_fraction=0.0, finetune_fraction=0.5)) == (0, 5)
    assert METHODS.get("ispasp").changes_architecture


def _run(model_name, width=1.0, size=16, channels=3, **params):
    config = RunConfig(model=model_name, method="ispasp", width=width, image_size=size,
                       channels=channels, epochs=2, batch_size=32, max_train_samples=32,
                       method_params={"iterations": 3, "pruning_batches": 1,
                                      "pretrain_fraction": 0.5, "finetune_fraction": 0.5,
                                      **params})
    data = load_dataset(config)
    data.test_x, data.test_y = data.test_x[:32], data.test_y[:32]  # keep evaluation cheap
    model = build_model(config, data.in_channels, data.num_classes, data.image_size)
    recorder = MemoryRecorder()
    ctx = RunContext(config, method_config(config), data, torch.device("cpu"), recorder)
    result = METHODS.get("ispasp")(config, method_config(config)).run(model, ctx)
    return result, recorder, ctx, data


@pytest.mark.parametrize("model_name, width", [("resnet20", 0.5), ("mobilenet_v2", 0.25)])
def test_run_on_upsampled_digits(model_name, width):
    result, recorder, ctx, data = _run(model_name, width, keep_ratio=0.25)
    summary = result.summary  # i-SpaSP's extras; parameters and FLOPs are the session's
    dense = build_model(ctx.config, 3, 10, 16)
    params_dense = sum(p.numel() for p in dense.parameters())
    flops_dense = count_flops(dense, (3, 16, 16))
    params = sum(p.numel() for p in result.model.parameters())
    assert result.mask is None
    assert params < params_dense
    assert count_flops(result.model, (3, 16, 16)) < flops_dense
    assert ctx.total_epochs == 2
    assert [row["phase"] for row in recorder.epochs] == ["pretrain", "finetune"]
    units = [p for kind, _, p in recorder.traces if kind == "ispasp_units"]
    residuals = [p for kind, _, p in recorder.traces if kind == "ispasp_residual"]
    assert len(units) == summary["blocks"] and len(residuals) == 3 * len(units)
    for payload in units:
        assert payload["kept"] == len(payload["chosen"]) == max(
            1, math.floor(0.25 * payload["channels"]))
    for block in {p["block"] for p in residuals}:
        rows = [p for p in residuals if p["block"] == block]
        assert [p["iteration"] for p in rows] == [1, 2, 3]
        assert all(p["residual"] >= 0 and 0 <= p["relative"] for p in rows)
    with torch.no_grad():
        assert result.model(data.test_x[:2]).shape == (2, 10)
    assert units[-1]["params_after"] == params


def test_run_with_per_block_finetune_counts_its_steps():
    result, recorder, ctx, data = _run("mlp", width=0.2, size=8, channels=1,
                                       finetune_per_block_steps=2)
    steps_per_epoch = data.steps_per_epoch("train", 32)
    assert ctx.steps_done == 2 * steps_per_epoch + 2 * result.summary["blocks"]
    assert result.summary["channels_kept"] == math.floor(0.3 * 60) + math.floor(0.3 * 20)


def test_model_without_a_hidden_layer_is_refused(digits):
    class Branchy(nn.Module):
        """Data-dependent control flow (fine for the autograd-traced graph), no hidden layer."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = x.flatten(1)  # (B, 64)
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    assert find_blocks(Branchy(), torch.randn(2, 1, 8, 8)) == []
    config = RunConfig(method="ispasp", epochs=1)
    ctx = RunContext(config, method_config(config), digits, torch.device("cpu"), MemoryRecorder())
    with pytest.raises(ConfigError, match="no prunable block"):
        METHODS.get("ispasp")(config, method_config(config)).run(Branchy(), ctx)


def test_block_name_is_layer1():
    assert Block("a.conv1", (), (), "a.conv2", None, 4).name == "a.conv1"


def surgery_outcome(name, size, width):
    model, x, blocks, chosen = surgery_case(name, size, width)
    graph = dependency_graph(model, x)
    for block, kept in zip(blocks, chosen):
        prune_block(model, block, kept, graph)
    with torch.no_grad():
        out = model(x)
    return {"blocks": [b.layer1 for b in blocks], "output": out.tolist(),
            "shapes": {n: list(p.shape) for n, p in model.state_dict().items()}}


@pytest.mark.parametrize("name, size, width", SURGERY_CASES)
def test_surgery_outputs_equal_the_recorded_ones(name, size, width):
    recorded = json.loads(SURGERY_REFERENCE.read_text())[name]
    outcome = surgery_outcome(name, size, width)
    assert outcome["blocks"] == recorded["blocks"]
    assert outcome["shapes"] == recorded["shapes"]
    torch.testing.assert_close(torch.tensor(outcome["output"]), torch.tensor(recorded["output"]),
                               rtol=1e-4, atol=1e-5)


def test_default_keep_ratio_leaves_the_search_a_choice_on_every_registered_model():
    """2s < C in every block, so Ω (2s units) never holds every unit."""
    from pruning.models import MODELS
    keep_ratio = IspaspConfig().keep_ratio
    for name in MODELS.names():
        size = max(8, MODELS.get(name).min_image_size)
        model = build_model(RunConfig(model=name), 3, 10, size)
        blocks = find_blocks(model, torch.randn(2, 3, size, size))
        assert blocks, name
        for block in blocks:
            s = max(1, math.floor(keep_ratio * block.channels))
            assert 2 * s < block.channels, (name, block.layer1, block.channels)


def test_selection_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone(digits):
    config = RunConfig(method="ispasp", width=0.5, batch_size=32,
                       method_params={"iterations": 3, "pruning_batches": 2})
    model = build_model(config, 1, 10, 8)
    _randomise_bn(model)
    model.train()
    norms = {name: (m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
             for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    recorder = MemoryRecorder()
    ctx = RunContext(config, method_config(config), digits, torch.device("cpu"), recorder)
    method = METHODS.get("ispasp")(config, method_config(config))
    blocks = find_blocks(model, digits.train_x[:2])
    method.prune(model, ctx, blocks)
    assert model.training  # restored afterwards
    chosen = {p["block"]: p["chosen"] for kind, _, p in recorder.traces if kind == "ispasp_units"}
    modules = dict(model.named_modules())
    for block in blocks:
        for name in block.norms:  # pruned with the block: the kept channels' statistics
            mean, var, tracked = norms.pop(name)
            kept = torch.tensor(chosen[block.layer1])
            assert torch.equal(modules[name].running_mean, mean[kept])
            assert torch.equal(modules[name].running_var, var[kept])
            assert int(modules[name].num_batches_tracked) == tracked
    for name, (mean, var, tracked) in norms.items():  # not pruned (none left in small_cnn)
        assert torch.equal(modules[name].running_mean, mean)
        assert int(modules[name].num_batches_tracked) == tracked


def test_default_run_keeps_the_best_support_and_its_residual_falls(digits):
    """The default session (small_cnn on digits, the method's defaults): in every block the
    recorded residual never rises and ends at the smallest proposal; the search moves in some."""
    config = RunConfig(method="ispasp")
    recorder = MemoryRecorder()
    model = build_model(config, 1, 10, 8)
    ctx = RunContext(config, method_config(config), digits, torch.device("cpu"), recorder)
    METHODS.get("ispasp")(config, method_config(config)).run(model, ctx)
    rows = [p for kind, _, p in recorder.traces if kind == "ispasp_residual"]
    blocks = list(dict.fromkeys(p["block"] for p in rows))
    assert len(blocks) == 5
    moved = 0
    for block in blocks:
        mine = [p for p in rows if p["block"] == block]
        residual = [p["residual"] for p in mine]
        candidate = [p["candidate"] for p in mine]
        assert len(mine) == IspaspConfig().iterations
        assert all(b <= a for a, b in zip(residual, residual[1:])), block
        assert residual == [min(candidate[:t + 1]) for t in range(len(candidate))], block
        moved += residual[-1] < residual[0]
    assert moved >= 1
