"""Criteria × scope × granularity (METHODS.md §2): exact targets, monotone masks, untouched models,
agreement with torch.nn.utils.prune, N:M and channel structure, and hand-computed scores."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from pruning.config import RunConfig
from pruning.masks import Mask, prunable_parameters
from pruning.methods.criteria import (CRITERIA, GraspConfig, Pruner, SynflowConfig, TaylorConfig)
from pruning.methods.granularity import keep_top, lowest_entries, prune_count, select
from pruning.models import build_model
from pruning.registry import build_config

SCOPES = ("global", "layerwise")
GRANULARITIES = ("unstructured", "nm", "channel")


class TinyNet(nn.Module):
    """conv-bn-relu ×3, dropout, two linears. Prunable by default: conv2 (10·6·3·3 = 540),
    conv3 (8·10·3·3 = 720), fc1 (12·32 = 384). conv2/conv3 have 6/10 input channels, so N:M
    groups of 4 end with a short group of 2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 10, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(10)
        self.conv3 = nn.Conv2d(10, 8, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(32, 12)
        self.fc2 = nn.Linear(12, 5)

    def forward(self, x):                                  # (B, 1, 8, 8)
        x = F.relu(self.bn1(self.conv1(x)))                 # (B, 6, 8, 8)
        x = F.relu(self.bn2(self.conv2(x)))                 # (B, 10, 8, 8)
        x = F.relu(self.bn3(self.conv3(x)))                 # (B, 8, 8, 8)
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)          # (B, 32)
        return self.fc2(F.relu(self.fc1(self.drop(x))))     # (B, 5)


def make_net(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


def make_batch(n=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 5


def fast_config(name):
    # SynFlow's 100 iterations are fine but 10 keep the parametrised sweep quick.
    return SynflowConfig(iterations=10) if name == "synflow" else None


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
            [m.training for m in model.modules()])


def assert_unchanged(model, before):
    state, grads, modes = before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    for k, p in model.named_parameters():
        same = (p.grad is None and grads[k] is None) or (
            p.grad is not None and grads[k] is not None and torch.equal(p.grad, grads[k]))
        assert same, f"grad of {k} changed"
    assert [m.training for m in model.modules()] == modes


def groups_nm(tensor, m):
    """Rows of M consecutive entries along the input axis (conv: at each kernel position)."""
    rows = tensor.movedim(1, -1).reshape(-1, tensor.shape[1])
    return [rows[:, i:i + m] for i in range(0, rows.shape[1], m)]


def check_target(pruner, mask, target):
    """Exact for unstructured; within one group for nm/channel (capped where N:M is full)."""
    units = [mask] if pruner.scope == "global" else [Mask({k: v}) for k, v in mask.items()]
    for unit in units:
        total, pruned = unit.total(), unit.total() - unit.kept()
        needed = prune_count(total, target)
        if pruner.granularity == "unstructured":
            assert pruned == needed
        elif pruner.granularity == "channel":
            widest = max(v[0].numel() for v in unit.values())
            assert needed <= pruned < needed + widest
        else:
            n, m = pruner.nm
            full = all(bool((g.sum(1) <= n).all()) for v in unit.values() for g in groups_nm(v, m))
            assert needed <= pruned < needed + (m - n) or (full and pruned <= needed)


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_every_combination_exact_monotone_and_model_untouched(criterion, scope, granularity):
    model, batch = make_net(), make_batch()
    F.cross_entropy(model(batch[0]), batch[1]).backward()  # grads present, as after a step
    before = snapshot(model)
    rng = torch.get_rng_state()
    pruner = Pruner(criterion, fast_config(criterion), scope=scope, granularity=granularity)
    mask = pruner.initial_mask(model)
    assert mask.sparsity() == 0.0 and set(mask) == {"conv2.weight", "conv3.weight", "fc1.weight"}
    for target in (0.2, 0.35, 0.7):
        new = pruner(model, mask, target, batch)
        assert new.is_subset_of(mask)
        check_target(pruner, new, target)
        mask = new
    assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng), "scoring drew from the global RNG"
    assert pruner.expensive == (criterion in ("snip", "grasp", "synflow", "taylor"))


@pytest.mark.parametrize("include_first_last", [False, True])
@pytest.mark.parametrize("target", [0.1, 0.5, 0.93])
def test_global_magnitude_equals_torch_global_unstructured(target, include_first_last):
    model = make_net(3)
    reference = copy.deepcopy(model)
    layers = [m for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not include_first_last:
        layers = layers[1:-1]
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=target)
    expected = [m.weight_mask.bool() for m in layers]
    pruner = Pruner("magnitude", include_first_last=include_first_last)
    mask = pruner(model, pruner.initial_mask(model), target)
    assert len(mask) == len(expected)
    for got, want in zip(mask.values(), expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("target", [0.25, 0.6, 0.9])
def test_layerwise_magnitude_equals_torch_l1_unstructured(target):
    model = make_net(4)
    pruner = Pruner("magnitude", scope="layerwise")
    mask = pruner(model, pruner.initial_mask(model), target)
    for name, param in prunable_parameters(model).items():
        holder = nn.Module()
        holder.weight = nn.Parameter(param.detach().clone())
        prune.l1_unstructured(holder, "weight", amount=target)
        assert torch.equal(mask[name], holder.weight_mask.bool()), name


@pytest.mark.parametrize("scope", SCOPES)
def test_nm_full_target_gives_n_of_m_in_every_group(scope):
    model = make_net(5)
    pruner = Pruner("magnitude", scope=scope, granularity="nm", nm=(2, 4))
    mask = pruner(model, pruner.initial_mask(model), 0.9)  # beyond 1 − 2/4: capped at full N:M
    for name, keep in mask.items():
        weight = dict(model.named_parameters())[name].detach().abs()
        for g_keep, g_w in zip(groups_nm(keep, 4), groups_nm(weight, 4)):
            width = g_keep.shape[1]
            assert bool((g_keep.sum(1) == min(2, width)).all())  # short last group keeps min(N, r)
            # the kept ones are the two largest magnitudes of their group
            top = torch.topk(g_w, min(2, width), dim=1).indices
            assert bool(g_keep.gather(1, top).all())
    # conv2 (6 inputs: groups 4+2) keeps 4 of 6, conv3 (10: 4+4+2) 6 of 10, fc1 (32) half
    assert mask.layer_sparsity() == pytest.approx({"conv2.weight": 1 / 3, "conv3.weight": 0.4,
                                                   "fc1.weight": 0.5})


def test_nm_partial_target_converts_cheapest_groups_first():
    # One linear layer 2×8 -> four 2:4 groups. Scores chosen by hand; a group's cost is the mean
    # score of the two weights 2:4 would remove.
    scores = {"w": torch.tensor([[9., 8., 1., 2.,   9., 9., 5., 6.],      # costs 1.5, 5.5
                                 [3., 4., 7., 7.,   0.5, 0.7, 9., 9.]])}  # costs 3.5, 0.6
    alive = {"w": torch.ones(2, 8, dtype=torch.bool)}
    # 16 weights; target 0.25 -> prune 4 = two groups: the cheapest are costs 0.6 and 1.5.
    keep = select(scores, alive, 0.25, scope="global", granularity="nm", nm=(2, 4))["w"]
    expected = torch.tensor([[1, 1, 0, 0,  1, 1, 1, 1],
                             [1, 1, 1, 1,  0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(keep, expected)
    # target 0.2 -> prune round(3.2) = 3: still two groups (first cumulative count >= 3).
    assert torch.equal(select(scores, alive, 0.2, scope="global", granularity="nm")["w"], expected)
    # each group: all four kept or exactly two
    for g in groups_nm(keep, 4):
        assert set(g.sum(1).tolist()) <= {2, 4}


def test_nm_conv_groups_run_along_input_channels():
    # conv weight (out=1, in=4, 1, 2): the two kernel positions are separate groups of 4 channels.
    score = torch.tensor([1., 2., 3., 4., 40., 30., 20., 10.]).reshape(1, 2, 4).permute(0, 2, 1)
    score = score.reshape(1, 4, 1, 2)  # score[0, c, 0, k]: position 0 -> 1,2,3,4; 1 -> 40..10
    keep = select({"c": score}, {"c": torch.ones_like(score, dtype=torch.bool)}, 0.5,
                  scope="layerwise", granularity="nm", nm=(2, 4))["c"]
    assert keep[0, :, 0, 0].tolist() == [False, False, True, True]
    assert keep[0, :, 0, 1].tolist() == [True, True, False, False]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("criterion", ["magnitude", "snip", "grasp"])
def test_channel_masks_remove_whole_filters(criterion, scope):
    model, batch = make_net(6), make_batch()
    pruner = Pruner(criterion, scope=scope, granularity="channel")
    mask = pruner(model, pruner.initial_mask(model), 0.5, batch)
    removed = 0
    for keep in mask.values():
        rows = keep.reshape(keep.shape[0], -1)
        assert bool((rows.all(1) | ~rows.any(1)).all()), "a filter is partly pruned"
        removed += int((~rows.any(1)).sum())
    assert removed > 0


def test_channel_global_ranks_filters_within_their_layer():
    # Layer a: filter scores 1 and 2; layer b: 10 and 100 (4 weights each). Raw scores would cut
    # a's weak filter; normalised by each layer's RMS (a: 1.58 -> 0.63, 1.26; b: 71.1 -> 0.14,
    # 1.41) b's filter 0 is the weakest relative to its own layer, so it goes first.
    scores = {"a": torch.tensor([[1.0] * 4, [2.0] * 4]), "b": torch.tensor([[10.0] * 4, [100.0] * 4])}
    alive = {k: torch.ones_like(v, dtype=torch.bool) for k, v in scores.items()}
    keep = select(scores, alive, 0.25, scope="global", granularity="channel")  # prune 4 of 16
    assert keep["a"].all() and not keep["b"][0].any() and keep["b"][1].all()


def test_channel_signed_criterion_uses_mean_not_norm():
    scores = {"w": torch.tensor([[-5., -5.], [1., 1.], [2., 2.]])}
    alive = {"w": torch.ones(3, 2, dtype=torch.bool)}
    keep = select(scores, alive, 0.3, scope="global", granularity="channel", signed=True)["w"]
    assert keep.all(1).tolist() == [False, True, True]  # most negative mean goes first
    keep = select(scores, alive, 0.3, scope="global", granularity="channel")["w"]
    assert keep.all(1).tolist() == [True, False, True]  # by L2 the |−5| filter is the strongest


def test_synflow_scores_match_hand_computation():
    # 2 -> 2 -> 1, no biases. With |W|: h_i = Σ_j |W1_ij|, R = Σ_i |W2_i| h_i;
    # ∂R/∂W1_ij = |W2_i|  -> s1_ij = |W2_i||W1_ij|;  ∂R/∂W2_i = h_i -> s2_i = |W2_i| h_i.
    # W1 = [[4, −1], [0.5, −0.25]], W2 = [−0.5, 0.75]:
    # s1 = [[2, 0.5], [0.375, 0.1875]], s2 = [0.5·5, 0.75·0.75] = [2.5, 0.5625];
    # each layer's scores sum to R = 3.0625 (SynFlow's conservation). Scores come scaled by their
    # maximum (2.5).
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[4.0, -1.0], [0.5, -0.25]]))
        model[1].weight.copy_(torch.tensor([[-0.5, 0.75]]))
    batch = (torch.randn(3, 2), torch.zeros(3, dtype=torch.long))
    pruner = Pruner("synflow", SynflowConfig(iterations=1), include_first_last=True)
    scores = pruner.scores(model, batch=batch)
    assert scores["0.weight"].dtype == torch.float64  # computed in float64
    assert torch.allclose(scores["0.weight"],
                          torch.tensor([[2.0, 0.5], [0.375, 0.1875]], dtype=torch.float64) / 2.5,
                          atol=1e-12, rtol=0)
    assert torch.allclose(scores["1.weight"],
                          torch.tensor([[2.5, 0.5625]], dtype=torch.float64) / 2.5,
                          atol=1e-12, rtol=0)
    assert float(scores["0.weight"].sum()) == pytest.approx(float(scores["1.weight"].sum()))
    # Prune half (3 of 6). One shot removes the three smallest: 0.1875, 0.375, 0.5 — hidden unit
    # 1 loses both inputs while W2_1 (0.5625) survives, disconnected.
    one_shot = pruner(model, None, 0.5, batch)
    assert one_shot["0.weight"].tolist() == [[True, False], [False, False]]
    assert one_shot["1.weight"].tolist() == [[True, True]]
    # Two iterations: step 1 keeps 0.5^(1/2) -> prunes round(6·0.293) = 2 (0.1875, 0.375); then
    # h_1 = 0, so W2_1 scores 0 and goes next, while W1_01 (0.5) stays: no dead path is kept.
    iterative = Pruner("synflow", SynflowConfig(iterations=2), include_first_last=True)(
        model, None, 0.5, batch)
    assert iterative["0.weight"].tolist() == [[True, True], [False, False]]
    assert iterative["1.weight"].tolist() == [[True, False]]
    assert model[0].weight[0, 1].item() == -1.0  # signs untouched


def test_snip_equals_g_times_w_by_hand_on_the_masked_network():
    model, batch = make_net(7), make_batch()
    mask = Pruner("magnitude")(model, None, 0.5)
    reference = copy.deepcopy(model)
    reference.drop.eval()  # scoring switches dropout off
    mask.apply(reference)
    F.cross_entropy(reference(batch[0]), batch[1]).backward()
    scores = Pruner("snip").scores(model, mask, batch)
    for name, p in prunable_parameters(reference).items():
        expected = (p.grad * p).abs()
        keep = mask[name]
        assert torch.allclose(scores[name][keep], expected[keep], rtol=1e-5, atol=1e-8)
        assert bool((scores[name][~keep] == float("-inf")).all())
    assert model.training and model.drop.training


def test_taylor_sums_squared_g_times_w_over_mini_batches():
    """Molchanov et al. 2019: Σ_b (g_b ⊙ w)², one gradient per mini-batch."""
    model, batch = make_net(8), make_batch(16)
    reference = copy.deepcopy(model)
    reference.drop.eval()
    params = prunable_parameters(reference)
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for xb, yb in zip(batch[0].chunk(2), batch[1].chunk(2)):
        grads = torch.autograd.grad(F.cross_entropy(reference(xb), yb), list(params.values()))
        for (n, p), g in zip(params.items(), grads):
            expected[n] += (g * p) ** 2
    scores = Pruner("taylor", TaylorConfig(batches=2)).scores(model, batch=batch)
    for n in params:
        assert torch.allclose(scores[n], expected[n], rtol=1e-5, atol=1e-12)


def test_taylor_scores_the_last_training_batches(digits):
    """The scheduled pruner hands Taylor the step's batch and the ones before it, stacked."""
    from pruning.methods.scheduled import ScheduledHooks
    seen = []

    class Watching(Pruner):
        def __call__(self, model, mask, target, batch=None):
            seen.append(batch[0].clone())
            return super().__call__(model, mask, target, batch)

    pruner = Watching("taylor", TaylorConfig())
    assert pruner.batches == 4
    batches = [(digits.train_x[i * 8:(i + 1) * 8], digits.train_y[i * 8:(i + 1) * 8])
               for i in range(7)]
    schedule = lambda progress: 0.5 * progress  # noqa: E731  (grows at every step)
    schedule.final = 0.5
    hooks = ScheduledHooks(pruner, schedule, 1, batches[:4])
    model = build_model(RunConfig(width=0.25), 1, 10, 8)
    hooks.on_train_start(model, 3)
    for step, batch in enumerate(batches[4:], start=1):
        hooks.after_step(model, step, step / 3, batch)
    assert len(seen) == 3  # the start (target 0) scores nothing
    assert torch.equal(seen[-1], torch.cat([b[0] for b in batches[3:7]]))


def test_grasp_equals_w_times_explicit_hessian_gradient_product():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    picked = [0, 1, 3, 4, 5]  # samples_per_class=2: first two of each class, in batch order
    temperature = 5.0
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    b1, b2 = model[0].bias.detach(), model[2].bias.detach()

    def loss(flat):
        a, b = flat[:12].view(4, 3), flat[12:].view(3, 4)
        logits = torch.tanh(x[picked] @ a.T + b1) @ b.T + b2
        return F.cross_entropy(logits / temperature, y[picked])

    flat = torch.cat([w1.reshape(-1), w2.reshape(-1)])
    hessian = torch.autograd.functional.hessian(loss, flat)            # (24, 24)
    grad = torch.autograd.functional.jacobian(loss, flat)              # (24,)
    expected = flat * (hessian @ grad)  # keep score = −S = w ⊙ (H g)
    pruner = Pruner("grasp", GraspConfig(temperature=temperature, samples_per_class=2),
                    include_first_last=True)
    scores = pruner.scores(model, batch=(x, y))
    got = torch.cat([scores["0.weight"].reshape(-1), scores["2.weight"].reshape(-1)])
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-14)
    # GraSP removes the largest S = −w ⊙ Hg, i.e. the smallest keep scores
    mask = pruner(model, None, 0.25, (x, y))
    removed = torch.cat([(~mask[n]).reshape(-1) for n in ("0.weight", "2.weight")])
    assert set(torch.nonzero(removed).flatten().tolist()) == \
        set(torch.topk(-expected, 6).indices.tolist())


def test_random_is_seed_reproducible_and_independent_of_global_rng():
    model = make_net()
    a = Pruner("random", seed=3)(model, None, 0.6)
    torch.manual_seed(123)
    torch.rand(10)
    b = Pruner("random", seed=3)(model, None, 0.6)
    c = Pruner("random", seed=4)(model, None, 0.6)
    assert a.equals(b) and not a.equals(c)
    # re-pruning from a random mask keeps the same order: 0.3 then 0.6 == 0.6 directly
    p = Pruner("random", seed=3)
    assert p(model, p(model, None, 0.3), 0.6).equals(a)


def test_target_below_current_sparsity_keeps_the_mask():
    model = make_net()
    pruner = Pruner("snip")
    mask = Pruner("magnitude")(model, None, 0.5)
    # no batch needed: nothing to prune, so nothing is scored
    assert pruner(model, mask, 0.3, None) is mask
    assert pruner(model, mask, 0.5, None) is mask


def test_keep_top_is_exact_and_breaks_ties_by_position():
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    assert keep_top(scores, 3).tolist() == [False, True, True, True, False, False, False]
    assert keep_top(scores, 6).tolist() == [True, True, True, True, True, False, True]
    assert keep_top(scores, 0).sum() == 0 and keep_top(scores, 7).all()
    many = torch.zeros(1000)
    assert keep_top(many, 400).tolist() == [True] * 400 + [False] * 600


def test_nan_scores_never_revive_pruned_weights():
    scores = {"w": torch.tensor([float("nan"), 1.0, 2.0, 3.0])}
    alive = {"w": torch.tensor([True, True, False, True])}
    keep = select(scores, alive, 0.0, scope="global", granularity="unstructured")["w"]
    assert keep.tolist() == [True, True, False, True]
    keep = select(scores, alive, 0.5, scope="global", granularity="unstructured")["w"]
    assert keep.tolist() == [False, True, False, True]


def test_configs_and_arguments_are_validated():
    assert CRITERIA.config_class("magnitude") is None
    assert build_config(GraspConfig, {"temperature": "100", "samples_per_class": "5"},
                        "grasp") == GraspConfig(100.0, 5)
    with pytest.raises(ValueError, match="iterations"):
        build_config(SynflowConfig, {"iterations": "0"}, "synflow")
    with pytest.raises(ValueError, match="scope"):
        Pruner("magnitude", scope="local")
    with pytest.raises(ValueError, match="N:M"):
        Pruner("magnitude", granularity="nm", nm=(4, 4))
    with pytest.raises(ValueError, match="SynflowConfig"):
        Pruner("synflow", GraspConfig())
    with pytest.raises(ValueError, match="criterion"):
        Pruner("nope")
    model = make_net()
    with pytest.raises(ValueError, match="needs a batch"):
        Pruner("snip")(model, None, 0.5)
    with pytest.raises(ValueError, match="does not cover"):
        other_layers = Pruner("magnitude").initial_mask(model)
        Pruner("magnitude", include_first_last=True)(model, other_layers, 0.5)
    for name in CRITERIA.names():
        description = CRITERIA.entry(name).description
        assert len(description) > 150 and ("arXiv" in description), name


@pytest.mark.parametrize("scope", SCOPES)
def test_full_nm_mask_is_not_rescored(scope):
    model, batch = make_net(), make_batch()
    pruner = Pruner("snip", scope=scope, granularity="nm")
    full = pruner(model, None, 0.9, batch)  # every group converted (capped below 0.9)
    # Nothing left for N:M to remove: returned as is, without scoring (no batch needed).
    assert pruner(model, full, 0.95, None) is full


def test_channel_pruning_never_empties_a_layer():
    """Global channel pruning at a high target keeps at least one filter in every layer."""
    import torch
    from torch import nn

    from pruning.masks import prunable_parameters
    from pruning.methods.criteria import Pruner

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3),
                          nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 1, 12, 12))
    with torch.no_grad():  # a layer of tiny weights is the one global ranking would wipe out
        model[2].weight.mul_(1e-3)
    pruner = Pruner(criterion="magnitude", criterion_config=None, scope="global",
                    granularity="channel")
    mask = pruner(model, pruner.initial_mask(model), 0.8, None)
    assert set(mask) == set(prunable_parameters(model))
    for name, keep in mask.items():
        assert keep.reshape(keep.shape[0], -1).all(1).sum() >= 1, name


@pytest.mark.parametrize("count", [1, 7, 150, 2000, 9000])
def test_lowest_entries_is_the_complement_of_keep_top(count):
    g = torch.Generator().manual_seed(count)
    scores = torch.randint(0, 300, (20000,), generator=g).float()  # many ties
    scores[torch.rand(20000, generator=g) < 0.6] = float("inf")      # pruned entries
    expected = (~keep_top(scores, scores.numel() - count)).nonzero().squeeze(1)
    got = lowest_entries(scores, count)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("layout", ["too_few_under_bound", "too_many_under_bound"])
def test_lowest_entries_is_exact_when_the_sample_misleads(layout):
    # Values laid out against the strided sample (every 4th entry of 20000): its bound leaves
    # fewer candidates than asked for, or nearly everything; the full ranking must take over.
    n, stride = 20000, 20000 // 4096
    sampled = torch.arange(n) % stride == 0
    if layout == "too_few_under_bound":
        scores = torch.full((n,), 1e4)
        scores[sampled] = torch.arange(int(sampled.sum())).float()
        count = 1000
    else:
        scores = torch.full((n,), 5.0)
        scores[(~sampled).nonzero().squeeze(1)[:500]] = 1.0
        count = 300
    expected = (~keep_top(scores, n - count)).nonzero().squeeze(1)
    assert torch.equal(lowest_entries(scores, count), expected)


@pytest.mark.parametrize("criterion", ["magnitude", "random"])
def test_per_step_pruning_equals_selection_from_scratch(criterion):
    # Global unstructured pruning with a cheap criterion takes a faster path (only the few
    # weights a step removes are searched for, and the last mask's flat form is reused); along a
    # schedule it must give exactly the masks that ranking every weight gives.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 10))
    pruner = Pruner(criterion, seed=3)
    mask = pruner.initial_mask(model)
    for step in range(1, 41):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-2)
        target = 0.95 * (1 - (1 - step / 40) ** 3)
        if step == 20:  # an equal but new Mask object: the flat form is rebuilt from it
            mask = Mask(dict(mask.items()))
        params = prunable_parameters(model)
        scores = pruner.criterion.score(type("R", (), {"params": params, "seed": 3})())
        expected = select(scores, dict(mask.items()), target, scope="global",
                          granularity="unstructured")
        new = pruner(model, mask, target)
        assert all(torch.equal(new[k], expected[k]) for k in new), f"step {step}"
        assert new.is_subset_of(mask)
        check_target(pruner, new, target)
        mask = new


def test_a_model_without_prunable_layers_is_left_alone():
    # Only BatchNorm: parameters, but no Conv/Linear weight to prune.
    model = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    pruner = Pruner("magnitude")
    mask = pruner.initial_mask(model)
    assert len(mask) == 0
    assert len(pruner(model, mask, 0.5)) == 0
