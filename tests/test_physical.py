"""Physical channel removal: same outputs as the masked model, fewer parameters, saves whole."""
import copy
import io

import pytest
import torch
from torch import nn

from pruning.masks import Mask, prunable_layers
from pruning.models import MODELS
from pruning.physical import BiasMapConv2d, compact_model


def channel_mask(model, fraction, seed=0):
    """Drop a random ``fraction`` of the output channels of every prunable layer."""
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for name, layer in prunable_layers(model).items():
        weight = layer.weight
        keep = torch.rand(weight.shape[0], generator=generator) >= fraction
        keep[0] = True
        masks[name] = keep.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).clone()
    return Mask(masks)


def trained_like_batchnorm(model, seed=1):
    """BatchNorm statistics and affine terms as after training: a zero filter then gives a
    nonzero constant channel, the case that needs folding."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.3)
    return model


def masked_copy(model, mask):
    masked = copy.deepcopy(model).eval()
    mask.apply(masked)
    return masked


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def assert_same_outputs(a, b, x):
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, atol=1e-5, rtol=1e-5), float((ya - yb).abs().max())


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_compacts_exactly_and_round_trips(name, tmp_path):
    size = max(8, MODELS.get(name).min_image_size)
    torch.manual_seed(0)
    model = trained_like_batchnorm(MODELS.get(name)(3, 10, size, 0.25)).eval()
    mask = channel_mask(model, 0.5)
    x = torch.randn(5, 3, size, size)

    compact = compact_model(model, mask, torch.zeros(1, 3, size, size))

    assert_same_outputs(compact, masked_copy(model, mask), x)
    assert n_params(compact) < n_params(model)
    assert n_params(model) == n_params(masked_copy(model, mask))  # the input model is untouched
    path = tmp_path / "compact.pt"
    torch.save(compact, path)
    loaded = torch.load(path, weights_only=False)
    assert_same_outputs(loaded, compact, x)


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))


def zero_filters(model, layer_index, channels):
    """Mask over the model's default prunable layers zeroing ``channels`` of one layer."""
    ones = Mask.ones_like(model)
    name = f"{layer_index}.weight"
    keep = ones[name].clone()
    keep[channels] = False
    return Mask({**{n: m for n, m in ones.items()}, name: keep})


def test_constant_channel_before_padded_conv_goes_to_a_bias_map():
    torch.manual_seed(0)
    model = trained_like_batchnorm(small_net()).eval()
    with torch.no_grad():
        model[4].bias[[1, 5]] = 1.0  # BN after conv 3 gives relu(1.0 - ...) > 0 for those
        model[4].running_mean.zero_()
    mask = zero_filters(model, 3, [1, 5])
    compact = compact_model(model, mask, torch.zeros(1, 3, 6, 6))
    assert compact[3].out_channels == 6 and compact[6].in_channels == 6
    # the constant reaches the 3x3 padded conv only partly at the borders: a per-position map
    assert isinstance(compact[6], BiasMapConv2d)
    assert compact[6].bias_map.shape == (6, 6, 6)
    x = torch.randn(4, 3, 6, 6)
    assert_same_outputs(compact, masked_copy(model, mask), x)
    # dropping the channels without folding would change the outputs
    naive = copy.deepcopy(compact)
    naive[6].bias_map.zero_()
    with torch.no_grad():
        assert not torch.allclose(naive(x), masked_copy(model, mask)(x), atol=1e-3)


def test_constant_neuron_folds_into_next_linear_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        model[2].bias.fill_(0.5)  # a zero row still outputs relu(0.5) = 0.5
    mask = zero_filters(model, 2, [0, 3])
    compact = compact_model(model, mask, torch.zeros(1, 5))
    assert compact[2].out_features == 4 and compact[4].in_features == 4
    assert type(compact[4]) is nn.Linear
    assert_same_outputs(compact, masked_copy(model, mask), torch.randn(7, 5))


def test_zero_weights_without_mask_are_removed_too():
    torch.manual_seed(0)
    model = trained_like_batchnorm(small_net()).eval()
    mask = zero_filters(model, 3, [0, 2, 7])
    masked = masked_copy(model, mask)
    from_weights = compact_model(masked, None, torch.zeros(1, 3, 6, 6))
    from_mask = compact_model(model, mask, torch.zeros(1, 3, 6, 6))
    assert from_weights[3].out_channels == from_mask[3].out_channels == 5
    assert_same_outputs(from_weights, from_mask, torch.randn(3, 3, 6, 6))


def test_unstructured_mask_removes_nothing():
    torch.manual_seed(0)
    model = small_net().eval()
    ones = Mask.ones_like(model)
    mask = Mask({n: torch.rand(m.shape) > 0.9 for n, m in ones.items()})
    compact = compact_model(model, mask, torch.zeros(1, 3, 6, 6))
    assert n_params(compact) == n_params(model)
    assert_same_outputs(compact, masked_copy(model, mask), torch.randn(3, 3, 6, 6))


def test_output_layer_keeps_every_class():
    torch.manual_seed(0)
    model = small_net().eval()
    with torch.no_grad():
        model[11].weight[1] = 0
        model[11].bias[1] = 0
    compact = compact_model(model, None, torch.zeros(1, 3, 6, 6))
    assert compact[11].out_features == 4


def test_residual_channel_stays_unless_every_coupled_producer_is_zero():
    from pruning.models import resnet_cifar  # noqa: F401  (registers resnet20)
    torch.manual_seed(0)
    model = trained_like_batchnorm(MODELS.get("resnet20")(3, 10, 8, 0.25)).eval()
    layers = prunable_layers(model)
    # the last conv of one block writes to the residual stream shared with other blocks
    block_conv = [n for n in layers if n.endswith("conv2.weight")][0]
    ones = Mask.ones_like(model)
    keep = ones[block_conv].clone()
    keep[0] = False
    mask = Mask({**dict(ones.items()), block_conv: keep})
    compact = compact_model(model, mask, torch.zeros(1, 3, 8, 8))
    assert n_params(compact) == n_params(model)
    assert_same_outputs(compact, masked_copy(model, mask), torch.randn(3, 3, 8, 8))


class ConcatNet(nn.Module):
    """Two branches concatenated along channels (Inception/DenseNet-style coupling): the conv
    after the concatenation sees branch_a's channels first, then branch_b's."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch_a = nn.Sequential(nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10),
                                      nn.ReLU())
        self.merge = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.head = nn.Linear(12, 4)

    def forward(self, x):                                          # (B, 3, H, W)
        x = self.stem(x)                                           # (B, 8, H, W)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)     # (B, 6 + 10, H, W)
        x = self.merge(x).mean(dim=(2, 3))                         # (B, 12)
        return self.head(x)                                        # (B, 4)


def test_concatenated_branches_lose_their_own_channels_at_the_right_offsets():
    torch.manual_seed(0)
    model = trained_like_batchnorm(ConcatNet()).eval()
    ones = Mask.ones_like(model)
    masks = dict(ones.items())
    for name, dropped in (("branch_a.0.weight", [1, 4]), ("branch_b.0.weight", [0, 3, 9])):
        keep = masks[name].clone()
        keep[dropped] = False
        masks[name] = keep
    mask = Mask(masks)
    compact = compact_model(model, mask, torch.zeros(1, 3, 6, 6))

    assert compact.branch_a[0].out_channels == 4 and compact.branch_b[0].out_channels == 7
    # the merge conv lost exactly the input channels fed by the removed filters: 1, 4 of
    # branch_a and 6 + (0, 3, 9) of branch_b
    assert compact.merge[0].in_channels == 11
    assert_same_outputs(compact, masked_copy(model, mask), torch.randn(4, 3, 6, 6))
    assert n_params(compact) < n_params(model)
