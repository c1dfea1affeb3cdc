"""ASWL (He, Shi, Dong, arXiv 2111.02399; METHODS.md §3) and the allocation helpers."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pruning.config import RunConfig
from pruning.masks import prunable_layers
from pruning.methods import METHODS, build_method, method_config
from pruning.methods.allocation import global_magnitude_allocation, uniform_allocation
from pruning.methods.aswl import (ATTENTION_MAX, ATTENTION_MIN, MAX_RATIO, AswlConfig,
                                  AswlHooks, magnitude_keep, pruning_ratios)
from pruning.models import build_model
from pruning.training import MemoryRecorder, RunContext, fit

# The bounds as float32, the attentions' dtype.
LOW, HIGH = float(torch.tensor(ATTENTION_MIN)), float(torch.tensor(ATTENTION_MAX))
CAP = float(torch.tensor(MAX_RATIO))


def small(bundle, n_train=320, n_test=160):
    return dataclasses.replace(bundle, train_x=bundle.train_x[:n_train],
                               train_y=bundle.train_y[:n_train],
                               test_x=bundle.test_x[:n_test], test_y=bundle.test_y[:n_test])


def run_aswl(data, config: RunConfig | None = None, **method_params):
    """One ASWL run; by default the default session's settings with ASWL's default settings."""
    config = (config or RunConfig(method="aswl")).replace(method_params=method_params)
    model = build_model(config, 1, 10, 8)
    ctx = RunContext(config, method_config(config), data, torch.device("cpu"), MemoryRecorder())
    return config, ctx, build_method(config).run(model, ctx)


@pytest.fixture(scope="module")
def aswl_run(_digits_once):
    """The default run: small_cnn on digits, 12 epochs, 90 % target, ASWL at its defaults."""
    return run_aswl(_digits_once)


def test_ratio_rule_and_its_gradient():
    a = torch.tensor([0.01, 0.3, 0.5, 1.0], requires_grad=True)
    p = pruning_ratios(a, gamma=2.0)
    expected = torch.tensor([min(0.99 ** 2, 0.99), 0.7 ** 2, 0.25, 0.0])
    assert torch.allclose(p, expected)
    p[1].backward()
    assert a.grad[1].item() == pytest.approx(-2 * 0.7)  # dp/da = −γ(1 − a)^(γ−1)
    assert pruning_ratios(torch.tensor([0.001]), 1.0).item() == pytest.approx(0.99)  # capped


def test_magnitude_keep_prunes_exactly_the_smallest():
    w = torch.tensor([[0.5, -0.1, 0.3], [-0.7, 0.05, -0.2]])
    keep = magnitude_keep(w, 0.5)
    assert keep.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    assert torch.equal(magnitude_keep(w, 0.0), torch.ones_like(w))


def test_allocations_on_a_hand_example():
    assert uniform_allocation([10, 20, 30], 0.25) == [0.25, 0.25, 0.25]
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
        model[1].weight.copy_(torch.tensor([[-0.05, 1.0], [2.0, -0.15]]))
    # Sorted |w|: 0.05 (1), 0.1 (0), 0.15 (1), 0.2 (0), 0.3 (0), 0.4 (0), 1 (1), 2 (1).
    assert global_magnitude_allocation(model, ["0.weight", "1.weight"], 0.5) == [0.5, 0.5]
    assert global_magnitude_allocation(model, ["0.weight", "1.weight"], 0.75) == [1.0, 0.5]
    assert global_magnitude_allocation(model, ["0.weight", "1.weight"], 0.0) == [0.0, 0.0]


def test_registered_with_config_and_description():
    assert "aswl" in METHODS
    cfg = method_config(RunConfig(method="aswl", method_params={"lam": "5", "target_mode": "paper"}))
    assert cfg.lam == 5.0 and cfg.target_mode == "paper"
    with pytest.raises(ValueError):
        AswlConfig(target_mode="other")
    description = METHODS.entry("aswl").description
    assert "2111.02399" in description and "buggy" in description


def test_default_run_lands_on_target_with_conv_ratios_that_differ(aswl_run, _digits_once):
    config, ctx, result = aswl_run
    layers = list(result.summary["aswl_layer_ratio"])
    # Every conv and dense layer carries an attention, the first and the last included.
    assert layers == [f"{n}.weight" for n, m in result.model.named_modules()
                      if isinstance(m, (nn.Conv2d, nn.Linear))]
    # The mask covers every conv and dense weight: its sparsity is the whole network's.
    assert result.mask.sparsity() == pytest.approx(config.sparsity, abs=0.01)
    ratios = result.summary["aswl_layer_ratio"]
    convs = [ratios[n] for n in layers if n.startswith("conv")]  # conv2..conv4, same kind
    assert max(convs) - min(convs) >= 0.02
    assert ratios["stem.0.weight"] < min(convs) - 0.2  # the small stem is pulled least
    assert float(ctx.recorder.epochs[-1]["test_acc"]) > 0.9


def test_without_the_regulariser_nothing_pulls_towards_the_target(_digits_once):
    _, _, free = run_aswl(small(_digits_once, n_train=160),
                          RunConfig(method="aswl", epochs=2, width=0.5), lam=0.0)
    assert abs(free.mask.sparsity() - 0.9) > 0.1


def test_adam_for_the_attentions_would_erase_the_size_weighting():
    """The regulariser's gradient on a_l is proportional to n_l; one SGD step keeps that
    ratio between two layers of different size, while Adam's first step is the same size for
    both."""
    layers = {"a": nn.Linear(10, 10), "b": nn.Linear(10, 40)}
    hooks = AswlHooks(layers, AswlConfig(), 0.1, torch.device("cpu"))
    hooks.regulariser().backward()
    step = hooks.attention.grad.clone()
    assert float(step[1] / step[0]) == pytest.approx(4.0, rel=1e-4)
    before = hooks.attention.detach().clone()
    hooks.optimizer.step()
    moved = hooks.attention.detach() - before
    assert float(moved[1] / moved[0]) == pytest.approx(4.0, rel=1e-4)
    assert isinstance(hooks.optimizer, torch.optim.SGD)
    assert hooks.optimizer.defaults["momentum"] == 0.9


def test_final_model_holds_the_sparse_folded_weights(aswl_run):
    config, ctx, result = aswl_run
    layers = prunable_layers(result.model, include_first_last=True)
    assert list(result.mask) == list(layers)
    for name, module in layers.items():
        assert not hasattr(module, "parametrizations")  # the straight-through is gone
        assert not module._forward_hooks                 # and so is the attention hook
        w = module.weight.detach()
        assert bool((w[~result.mask[name]] == 0).all())
        assert bool((w[result.mask[name]] != 0).all())
    names = [name for name, _ in result.model.named_parameters()]
    assert all("parametrizations" not in name for name in names)


def test_traces_attentions_stay_clipped(aswl_run):
    config, ctx, result = aswl_run
    traces = [(step, p) for kind, step, p in ctx.recorder.traces if kind == "aswl"]
    steps_per_epoch = ctx.data.steps_per_epoch("train", config.batch_size)
    assert len(traces) >= config.epochs
    assert traces[0][1]["attention"] == [0.5] * len(traces[0][1]["layers"])
    for _, payload in traces:
        assert all(LOW <= a <= HIGH for a in payload["attention"])
        assert all(0.0 <= r <= CAP for r in payload["ratio"])
    assert traces[-1][0] == config.epochs * steps_per_epoch
    final = [p for kind, _, p in ctx.recorder.traces if kind == "aswl_final"]
    assert len(final) == 1
    final = final[0]
    sizes = final["sizes"]
    overall = result.mask.sparsity()
    for key in ("ratio_aswl", "ratio_global_magnitude", "ratio_uniform"):
        weighted = sum(r * n for r, n in zip(final[key], sizes)) / sum(sizes)
        assert weighted == pytest.approx(overall, abs=1e-4), key
    assert final["ratio_aswl"] == list(result.summary["aswl_layer_ratio"].values())
    assert "aswl_attention" in ctx.recorder.epochs[-1]


def train_watching(data, config: RunConfig, cfg: AswlConfig, target_density: float, watch):
    """Train ``config``'s model with AswlHooks; ``watch(hooks)`` runs after every step."""
    model = build_model(config, 1, 10, 8)
    hooks = AswlHooks(prunable_layers(model), cfg, target_density, torch.device("cpu"))
    hooks.attach()
    original = hooks.after_step

    def after_step(*args):
        original(*args)
        watch(hooks)

    hooks.after_step = after_step
    ctx = RunContext(config, None, data, torch.device("cpu"), MemoryRecorder())
    fit(model, ctx, epochs=config.epochs, hooks=hooks)
    return hooks


def test_attentions_are_clipped_after_every_step(digits):
    seen = []
    # A huge attention LR overshoots both bounds; clipping must hold them.
    train_watching(small(digits, n_train=96), RunConfig(epochs=1, width=0.25, batch_size=16),
                   AswlConfig(attention_lr=5.0), 0.1,
                   lambda hooks: seen.append(hooks.attention.detach().clone()))
    values = torch.stack(seen)
    assert float(values.min()) >= LOW and float(values.max()) <= HIGH
    assert float(values.min()) == LOW


def test_pruned_weights_regrow_and_dense_copy_keeps_moving(digits):
    masks, dense = [], []

    def watch(hooks):
        layers = range(len(hooks.names))
        masks.append(torch.cat([hooks._keep(i).flatten() for i in layers]).clone())
        dense.append(torch.cat([hooks._dense(i).detach().flatten() for i in layers]).clone())

    train_watching(small(digits, n_train=256), RunConfig(epochs=3, width=0.5, batch_size=32),
                   AswlConfig(attention_lr=0.02), 0.2, watch)
    masks, dense = torch.stack(masks).bool(), torch.stack(dense)  # (steps, weights)
    # A weight pruned at some step is kept at a later one.
    pruned_then_kept = (~masks[:-1]).cumsum(0).bool() & masks[1:]
    assert int(pruned_then_kept.any(0).sum()) > 0
    # The dense copies of weights that stayed pruned throughout still move (straight-through).
    always_pruned = (~masks[1:]).all(0)
    assert int(always_pruned.sum()) > 0
    moved = (dense[-1] - dense[0]).abs()[always_pruned]
    assert float(moved.max()) > 0 and float((moved > 0).float().mean()) > 0.5


def test_folding_preserves_outputs_in_eval_mode(digits):
    torch.manual_seed(0)
    model = build_model(RunConfig(width=0.5), 1, 10, 8)
    layers = prunable_layers(model)
    hooks = AswlHooks(layers, AswlConfig(), 0.1, torch.device("cpu"))
    with torch.no_grad():
        hooks.attention.copy_(torch.tensor([0.05, 0.3, 0.7, 0.2]))
    hooks.attach()
    hooks.update_masks()
    # Train-mode passes so that the BatchNorm statistics follow the scaled conv outputs.
    model.train()
    with torch.no_grad():
        for x, _ in data_batches(digits):
            model(x)
    model.eval()
    x = digits.test_x[:64]
    with torch.no_grad():
        before = model(x)
    mask = hooks.mask()
    hooks.fold(model)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-4)
    for name, module in layers.items():
        assert torch.equal(module.weight.detach() != 0, mask[name])


def data_batches(bundle, n=4, batch_size=64):
    for i, batch in enumerate(bundle.batches("train", batch_size)):
        if i == n:
            return
        yield batch
