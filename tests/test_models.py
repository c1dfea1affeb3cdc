"""Models: every registered architecture on the dataset shapes (1x8x8, 1x28x28, 3x32x32), layer
order as prunable_layers sees it, compatibility checks, width multiplier and seeded init."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.config import ConfigError, RunConfig
from pruning.data import DATASETS, dataset_shape
from pruning.masks import PRUNABLE_TYPES, prunable_layers
from pruning.models import MODELS, build_model, check_compatible

# (channels, image size, classes): digits, MNIST-like, CIFAR-100-like
SHAPES = [(1, 8, 10), (1, 28, 10), (3, 32, 100)]


def build(name: str, channels: int, size: int, classes: int, **changes) -> nn.Module:
    return build_model(RunConfig(model=name, **changes), channels, classes, size)


def call_order(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Prunable layers in the order the forward pass runs them."""
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: order.append(m))
               for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:2])) + f"-{s[2]}")
@pytest.mark.parametrize("name", MODELS.names())
@torch.no_grad()
def test_forward_shape_and_layer_order(name, shape):
    channels, size, classes = shape
    model = build(name, channels, size, classes).eval()
    x = torch.randn(2, channels, size, size)
    order = call_order(model, x)
    logits = model(x)
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()

    inner = prunable_layers(model)
    every = list(prunable_layers(model, include_first_last=True).values())
    assert len(inner) >= 1 and len(every) == len(inner) + 2
    # registration order puts the stem first and the classifier last, as the data flows
    assert every[0] is order[0] and every[-1] is order[-1]
    stem, head = every[0], every[-1]
    assert (stem.in_channels if isinstance(stem, nn.Conv2d) else stem.in_features) == \
        (channels if isinstance(stem, nn.Conv2d) else channels * size * size)
    assert isinstance(head, nn.Linear) and head.out_features == classes


@pytest.mark.parametrize("name", MODELS.names())
@torch.no_grad()
def test_smallest_accepted_input_runs_and_smaller_is_refused(name):
    smallest = MODELS.get(name).min_image_size
    check_compatible(name, 1, smallest)
    assert build(name, 1, smallest, 3).eval()(torch.randn(2, 1, smallest, smallest)).shape == (2, 3)
    if smallest > 1:
        with pytest.raises(ConfigError, match=f"at least {smallest}x{smallest}.*--image-size"):
            check_compatible(name, 1, smallest - 1)


def test_every_model_accepts_every_dataset():
    for dataset in DATASETS.names():
        for size in (0, 16, 32):
            channels, image_size, _ = dataset_shape(RunConfig(dataset=dataset, image_size=size))
            for name in MODELS.names():
                check_compatible(name, channels, image_size)


def test_incompatible_pairs_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"resnet18 needs images of at least 8x8 px, got 4x4; "
                                          r"use --image-size 16"):
        check_compatible("resnet18", 3, 4)
    with pytest.raises(ConfigError, match="lenet5 .* at least 4x4"):
        build("lenet5", 1, 2, 10)
    with pytest.raises(ConfigError, match="unknown model 'alexnet'; choose one of: .*small_cnn"):
        check_compatible("alexnet", 1, 8)
    with pytest.raises(ConfigError, match="at least one input channel"):
        check_compatible("mlp", 0, 8)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_width_multiplier():
    assert n_params(build("mlp", 1, 8, 10, width=0.5)) == 64 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10
    half_vgg = build("vgg11", 3, 32, 10, width=0.5)
    assert [m.out_channels for m in half_vgg.modules() if isinstance(m, nn.Conv2d)] == \
        [32, 64, 128, 128, 256, 256, 256, 256]
    for name in ("small_cnn", "lenet5", "vgg16", "resnet20", "mobilenet_v2"):
        assert n_params(build(name, 1, 8, 10, width=0.5)) < n_params(build(name, 1, 8, 10))
    # torchvision's ResNet-18 has fixed widths: the multiplier does not apply
    assert n_params(build("resnet18", 1, 8, 10, width=0.5)) == n_params(build("resnet18", 1, 8, 10))


def test_small_inputs_keep_a_feature_map():
    # VGG leaves out the pools that would shrink an 8 px map below 1 px
    vgg = build("vgg16", 1, 8, 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in build("vgg16", 3, 32, 10).modules()) == 5
    # adapted torchvision models: 3x3 stride-1 stems, no max-pool
    resnet = build("resnet18", 3, 32, 10).eval()
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert isinstance(resnet.maxpool, nn.Identity)
    mobilenet = build("mobilenet_v2", 1, 8, 10).eval()
    assert mobilenet.features[0][0].stride == (1, 1) and mobilenet.features[0][0].in_channels == 1
    with torch.no_grad():  # 8x downsampling: 8 px ends at 1x1, 32 px at 4x4
        assert mobilenet.features(torch.randn(1, 1, 8, 8)).shape[-2:] == (1, 1)
        assert resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(
            torch.randn(1, 64, 32, 32))))).shape[-2:] == (4, 4)


def test_resnet_cifar_depths_and_projection_shortcuts():
    for name, depth in (("resnet20", 20), ("resnet56", 56)):
        model = build(name, 3, 32, 10)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        projections = [c for c in convs if c.kernel_size == (1, 1)]
        assert len(convs) - len(projections) + 1 == depth  # 3x3 convs + the classifier
        assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == \
            [(16, 32, (2, 2)), (32, 64, (2, 2))]


def test_build_model_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build("small_cnn", 1, 8, 10, seed=4)
    assert torch.equal(torch.rand(3), expected_next)
    b = build("small_cnn", 1, 8, 10, seed=4)
    c = build("small_cnn", 1, 8, 10, seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])


def test_small_cnn_gives_pruning_work():
    model = build("small_cnn", 1, 8, 10)
    inner = prunable_layers(model)
    assert len(inner) >= 3
    assert {type(m) for m in inner.values()} == {nn.Conv2d, nn.Linear}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4


@pytest.mark.slow
def test_small_cnn_reaches_97_percent_on_digits(digits):
    from pruning.training import MemoryRecorder, RunContext, fit

    config = RunConfig()  # Adam 3e-3, cosine, batch 64, 12 epochs
    model = build_model(config, digits.in_channels, digits.num_classes, digits.image_size)
    recorder = MemoryRecorder()
    ctx = RunContext(config=config, method_config=None, data=digits,
                     device=torch.device("cpu"), recorder=recorder, total_epochs=config.epochs)
    fit(model, ctx, epochs=config.epochs)
    assert len(recorder.epochs) == 12
    assert recorder.epochs[-1]["test_acc"] >= 0.97
