"""Micro-structured weight unification (Lin et al., arXiv 2106.08301; METHODS.md §6)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pruning.config import RunConfig
from pruning.methods import METHODS, build_method, method_config
from pruning.methods.unification import (BlockPartition, FinetuneHooks, UnificationConfig,
                                         freeze_structure, kept_mask, project, release_structure,
                                         signs, storage_report)
from pruning.models import build_model
from pruning.training import MemoryRecorder, RunContext, fit


def block_abs_values(partition: BlockPartition, weight: torch.Tensor) -> list[set[float]]:
    """The set of distinct |w| in every block."""
    values: list[set[float]] = [set() for _ in range(partition.n_blocks)]
    for block, value in zip(partition.flat_id.tolist(), weight.detach().abs().flatten().tolist()):
        values[block].add(value)
    return values


def test_partition_default_block_runs_along_input_channels_at_each_kernel_position():
    p = BlockPartition((3, 6, 2, 2), (1, 4))
    # 4 kernel positions × 3 output rows × 2 input blocks (4 + a ragged 2)
    assert p.n_blocks == 24
    assert sorted(set(p.sizes.tolist())) == [2, 4]
    assert int(p.sizes.sum()) == 3 * 6 * 2 * 2
    ids = p.block_id
    for o in range(3):
        for kh in range(2):
            for kw in range(2):
                assert len(set(ids[o, :4, kh, kw].tolist())) == 1  # one block
                assert len(set(ids[o, 4:, kh, kw].tolist())) == 1  # the ragged edge block
                assert ids[o, 0, kh, kw] != ids[o, 4, kh, kw]
    # Different output rows or kernel positions never share a block.
    assert ids[0, 0, 0, 0] != ids[1, 0, 0, 0] and ids[0, 0, 0, 0] != ids[0, 0, 0, 1]


def test_partition_two_by_two_blocks_and_rows_per_block():
    p = BlockPartition((5, 4), (2, 2))
    assert p.n_blocks == 3 * 2
    assert p.sizes.tolist() == [4, 4, 4, 4, 2, 2]
    assert p.rows.tolist() == [2, 2, 2, 2, 1, 1]
    assert p.block_id[0:2, 0:2].unique().numel() == 1


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_projection_unifies_blocks_and_prunes_fraction_q(scope):
    torch.manual_seed(0)
    weights = [torch.randn(16, 12, 3, 3), torch.randn(10, 30)]
    weights[1][0, :4] = 0.0  # an all-zero block and zeros inside blocks must not break unification
    weights[1][1, 1] = 0.0
    partitions = [BlockPartition(w.shape, (1, 4)) for w in weights]
    q = 0.7
    z, kept = project(weights, partitions, q, scope)
    total = sum(p.n_blocks for p in partitions)
    pruned = [int((~k).sum()) for k in kept]
    if scope == "layerwise":
        assert pruned == [round(q * p.n_blocks) for p in partitions]
    else:
        assert sum(pruned) == round(q * total)
    for w, zw, p, keep in zip(weights, z, partitions, kept):
        values = block_abs_values(p, zw)
        for block, vals in enumerate(values):
            assert len(vals) == 1  # exactly one absolute value per block
            if not keep[block]:
                assert vals == {0.0}
            else:
                assert next(iter(vals)) > 0.0
        # Unified blocks keep every weight's sign and take the mean |w| of the block.
        nonzero = zw != 0
        assert torch.equal(torch.sign(zw[nonzero]), signs(w)[nonzero])
        expected = p.expand(p.mean_abs(w))
        assert torch.allclose(zw.abs()[nonzero], expected[nonzero])
    # The pruned blocks are those with the smallest norms.
    if scope == "layerwise":
        norms = partitions[0].norms(weights[0])
        assert norms[~kept[0]].max() <= norms[kept[0]].min()


def test_storage_arithmetic_on_a_hand_example():
    # A 2x4 linear weight: two 1x4 blocks, one pruned, one unified.
    p = BlockPartition((2, 4), (1, 4))
    report = storage_report([p], [torch.tensor([False, True])], positions=[1])
    total = report["total"]
    assert total["dense_bits"] == 8 * 32
    assert total["unified_bits"] == 32 + 4 * 1
    assert total["compression"] == pytest.approx(256 / 36)
    assert total["dense_multiplies"] == 8 and total["unified_multiplies"] == 1
    # A conv with 2x2 blocks: each unified block needs one multiply per output row it spans.
    conv = BlockPartition((2, 2, 1, 1), (2, 2))
    report = storage_report([conv], [torch.tensor([True])], positions=[9])
    assert report["total"]["unified_bits"] == 32 + 4
    assert report["total"]["dense_multiplies"] == 4 * 9
    assert report["total"]["unified_multiplies"] == 2 * 9


def test_config_is_validated_and_read_from_cli_strings():
    config = RunConfig(method="unification", method_params={"block": "2x2", "scope": "global"})
    cfg = method_config(config)
    assert cfg.block == (2, 2) and cfg.scope == "global"
    with pytest.raises(ValueError):
        UnificationConfig(block=(0, 4))
    with pytest.raises(ValueError):
        UnificationConfig(scope="channel")
    assert "2106.08301" in METHODS.entry("unification").description


@pytest.fixture
def small_data(digits):
    return dataclasses.replace(digits, train_x=digits.train_x[:256], train_y=digits.train_y[:256],
                               test_x=digits.test_x[:128], test_y=digits.test_y[:128])


def test_finetune_keeps_signs_structure_and_one_value_per_block(small_data):
    config = RunConfig(epochs=2, width=0.5, seed=1)
    torch.manual_seed(0)
    model = build_model(config, 1, 10, 8)
    layers = {"conv3": model.conv3[0], "fc1": model.fc1}
    partitions = [BlockPartition(m.weight.shape, (1, 4)) for m in layers.values()]
    z, kept = project([m.weight.detach() for m in layers.values()], partitions, 0.5, "layerwise")
    fixed_signs = [signs(zw) for zw in z]
    mask = kept_mask(list(layers), partitions, kept)
    magnitudes = freeze_structure(list(layers.values()), partitions, z, kept)
    before = [m.detach().clone() for m in magnitudes]
    ctx = RunContext(config, None, small_data, torch.device("cpu"), MemoryRecorder())
    fit(model, ctx, epochs=2, hooks=FinetuneHooks(magnitudes, mask, 0.5), phase="finetune")
    assert any(not torch.equal(b, m.detach()) for b, m in zip(before, magnitudes))  # it trained
    release_structure(list(layers.values()))
    for module, p, keep, sign in zip(layers.values(), partitions, kept, fixed_signs):
        w = module.weight.detach()
        assert not parametrize_left(module)
        for block, vals in enumerate(block_abs_values(p, w)):
            assert len(vals) == 1
            if not keep[block]:
                assert vals == {0.0}
        # Each kept block keeps its sign pattern up to one common flip, and is not zero.
        flip = p.max_abs(((torch.sign(w) != sign) & (w != 0)).float())      # (n_blocks,)
        same = p.max_abs(((torch.sign(w) == sign) & (w != 0)).float())
        assert not bool((flip * same).any())
        assert bool((w[p.expand(keep)] != 0).all())
        assert bool((w[~p.expand(keep)] == 0).all())


def parametrize_left(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations")


@pytest.fixture(scope="module")
def unification_run(_digits_once):
    """The default run: small_cnn on digits, 12 epochs, q = 0.9, the method's defaults."""
    config = RunConfig(method="unification")
    model = build_model(config, 1, 10, 8)
    ctx = RunContext(config, method_config(config), _digits_once, torch.device("cpu"),
                     MemoryRecorder())
    result = build_method(config).run(model, ctx)
    return config, ctx, result


def test_admm_residual_falls_over_rounds(unification_run):
    _, ctx, result = unification_run
    rounds = [payload for kind, _, payload in ctx.recorder.traces if kind == "admm"]
    assert [r["round"] for r in rounds] == list(range(len(rounds)))
    assert len(rounds) >= 4
    residuals = [r["w_minus_z"] for r in rounds]
    assert residuals == result.summary["admm_w_minus_z"]
    # A fast fall, then a floor set by the optimizer's noise (Adam steps of about lr each).
    assert min(residuals[1:]) < 0.35 * residuals[0]
    assert residuals[-1] < 0.6 * residuals[0]
    assert all(r["pruned_fraction"] == pytest.approx(result.summary[
        "unification_pruned_block_fraction"]) for r in rounds)


def test_final_model_is_unified_and_pruned_at_q(unification_run):
    config, ctx, result = unification_run
    phases = [row["phase"] for row in ctx.recorder.epochs]
    assert phases == ["admm"] * 8 + ["finetune"] * 4
    params = dict(result.model.named_parameters())
    from pruning.masks import prunable_layers
    names = list(prunable_layers(result.model))
    assert list(result.mask) == names
    pruned_blocks, blocks = 0, 0
    for name in names:
        w = params[name].detach()
        p = BlockPartition(w.shape, (1, 4))
        keep_w = result.mask[name]
        assert bool((w[~keep_w] == 0).all())
        assert bool((w[keep_w] != 0).all())  # fine-tuning never zeroes a kept block
        kept_blocks = p.max_abs(keep_w.float()) > 0
        pruned = int((~kept_blocks).sum())
        assert pruned == round(config.sparsity * p.n_blocks)  # layerwise: exact per layer
        pruned_blocks += pruned
        blocks += p.n_blocks
        assert all(len(v) == 1 for v in block_abs_values(p, w))
    assert result.summary["unification_pruned_block_fraction"] == pytest.approx(pruned_blocks / blocks)
    storage = [payload for kind, _, payload in ctx.recorder.traces if kind == "unification_storage"]
    assert len(storage) == 1
    total = storage[0]["total"]
    assert total == result.summary["unification_storage"]
    assert total["compression"] > 1 / (1 - config.sparsity)  # beats pruning alone at 32 bits
    # 1x4 blocks: one multiply per unified block and output position, one per weight when dense.
    for layer in range(len(names)):
        positions = storage[0]["dense_multiplies"][layer] // storage[0]["weights"][layer]
        assert storage[0]["unified_multiplies"][layer] == \
            storage[0]["unified_blocks"][layer] * positions
