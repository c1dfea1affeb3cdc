"""The Mask value object and prunable-layer discovery (pruning/masks.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning.masks import Mask, prunable_layers, prunable_parameters


def random_mask(shapes, seed=0, p=0.4):
    g = torch.Generator().manual_seed(seed)
    return Mask({name: torch.rand(shape, generator=g) > p for name, shape in shapes.items()})


ODD_SHAPES = {
    "features.0.weight": (3, 5, 7),
    "a": (1,),
    "b.weight": (13,),
    "c": (2, 3, 1, 1),
    "d": (9, 17),
    "scalar": (),
    "empty": (0, 4),
}


def test_pack_unpack_round_trip_for_odd_shapes():
    mask = random_mask(ODD_SHAPES)
    blob = mask.to_bytes()
    back = Mask.from_bytes(blob)
    assert list(back) == list(mask)  # names and their order survive
    for name in mask:
        assert back[name].shape == mask[name].shape
        assert back[name].dtype == torch.bool
        assert torch.equal(back[name], mask[name])
    assert back.equals(mask)


def test_packed_bits_are_small():
    mask = Mask({"w": torch.rand(256, 1024) > 0.5})
    assert len(mask.to_bytes()) < 256 * 1024 / 8 * 1.1 + 1024  # ~1 bit per weight
    assert Mask({"w": torch.zeros(256, 1024, dtype=torch.bool)}).to_bytes().__len__() < 2048


def test_empty_mask_round_trip():
    back = Mask.from_bytes(Mask({}).to_bytes())
    assert len(back) == 0 and back.sparsity() == 0.0


def test_mask_is_immutable():
    source = torch.tensor([True, False, True])
    mask = Mask({"w": source})
    source[0] = False  # the caller's tensor is not shared
    assert mask["w"].tolist() == [True, False, True]
    mask["w"][1] = True  # nor is the tensor handed out
    assert mask["w"].tolist() == [True, False, True]
    with pytest.raises(AttributeError):
        mask.extra = 1
    with pytest.raises(AttributeError):
        mask._masks = {}
    with pytest.raises(TypeError):
        mask["w"] = torch.ones(3, dtype=torch.bool)
    assert not mask["w"].requires_grad


def test_values_are_bool_whatever_came_in():
    mask = Mask({"w": torch.tensor([1.0, 0.0, 2.5]), "v": [[0, 1]]})
    assert mask["w"].dtype == torch.bool and mask["w"].tolist() == [True, False, True]
    assert mask["v"].tolist() == [[False, True]]


def test_sparsity_statistics():
    mask = Mask({"a": torch.tensor([[True, False], [False, False]]),  # 1 of 4 kept
                 "b": torch.ones(6, dtype=torch.bool)})                # 6 of 6 kept
    assert mask.kept() == 7 and mask.total() == 10
    assert mask.sparsity() == pytest.approx(0.3)
    assert mask.density() == pytest.approx(0.7)
    assert mask.layer_sparsity() == pytest.approx({"a": 0.75, "b": 0.0})
    assert mask.layer_sizes() == {"a": 4, "b": 6}
    assert "sparsity=0.3000" in repr(mask)


def test_subset_flips_equality_and_intersection():
    old = Mask({"a": torch.tensor([True, True, False, True])})
    new = Mask({"a": torch.tensor([True, False, False, True])})
    assert new.is_subset_of(old) and not old.is_subset_of(new)
    assert new.flips(old) == {"a": 1}
    assert (old & new).equals(new)
    assert not old.equals(new) and old.equals(Mask({"a": old["a"]}))
    with pytest.raises(ValueError):
        old & Mask({"b": torch.ones(4, dtype=torch.bool)})


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 1))
        self.head = nn.Linear(6, 3)


def test_prunable_layers_exclude_first_and_last_by_default():
    net = Net()
    assert list(prunable_layers(net)) == ["body.0.weight", "body.2.weight"]
    assert list(prunable_layers(net, include_first_last=True)) == [
        "stem.weight", "body.0.weight", "body.2.weight", "head.weight"]
    params = prunable_parameters(net)
    assert params["body.0.weight"] is net.body[0].weight
    # with two layers or fewer nothing would be left, so both stay prunable
    assert list(prunable_layers(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)))) == [
        "0.weight", "1.weight"]


def test_apply_zeroes_exactly_the_masked_entries():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.sign(p) * 0.1 + (p == 0) * 0.1)  # no weight is zero to begin with
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mask = random_mask({n: p.shape for n, p in prunable_parameters(net).items()}, seed=3)
    mask.apply(net)
    state = net.state_dict()
    for name, value in state.items():
        if name in mask:
            keep = mask[name]
            assert bool((value[~keep] == 0).all())
            assert torch.equal(value[keep], before[name][keep])
        else:  # biases, BatchNorm, first and last layer untouched
            assert torch.equal(value, before[name])
    assert Mask.from_weights(net).equals(mask)


def test_ones_like_and_float_copies():
    net = Net()
    ones = Mask.ones_like(net)
    assert ones.sparsity() == 0.0 and set(ones) == {"body.0.weight", "body.2.weight"}
    assert all(m.device.type == "cpu" for m in ones.values())
    floats = ones.to("cpu")
    assert floats["body.0.weight"].dtype == torch.float32
    floats["body.0.weight"].zero_()
    assert ones["body.0.weight"].all()


def test_snapshots_written_by_savez_compressed_still_load():
    # Stores from before the level-1 writer hold np.savez_compressed archives of the same layout.
    import io

    import numpy as np
    keep = torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) > 0.5
    buffer = io.BytesIO()
    np.savez_compressed(buffer, bits0=np.packbits(keep.numpy().reshape(-1)),
                        shape0=np.asarray(keep.shape, dtype=np.int64),
                        names=np.asarray(["fc.weight"], dtype=np.str_))
    back = Mask.from_bytes(buffer.getvalue())
    assert list(back) == ["fc.weight"] and torch.equal(back["fc.weight"], keep)
