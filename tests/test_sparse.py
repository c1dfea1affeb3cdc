"""Sparse-kernel forms: CSR layers equal dense ones; sparsify keeps outputs and says why."""
import copy

import pytest
import torch
from torch import nn

from pruning import sparse
from pruning.masks import Mask
from pruning.physical import BiasMapConv2d
from pruning.sparse import SparseConv2d, SparseLinear, is_two_four, semi_structured_support, sparsify


def sparse_copy(layer, sparsity, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layer = copy.deepcopy(layer)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(layer.weight.shape, generator=generator) >= sparsity)
    return layer


@pytest.mark.parametrize("bias", [True, False])
def test_csr_linear_equals_dense(bias):
    torch.manual_seed(0)
    layer = sparse_copy(nn.Linear(40, 24, bias=bias), 0.9)
    csr = SparseLinear(layer, "csr")
    assert csr.weight.layout == torch.sparse_csr
    for x in (torch.randn(7, 40), torch.randn(3, 5, 40), torch.randn(1, 40)):
        with torch.no_grad():
            assert torch.allclose(csr(x), layer(x), atol=1e-4)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1, bias=False),
                                    dict(kernel_size=(3, 1), dilation=2, padding=(2, 0)),
                                    dict(kernel_size=1)])
def test_csr_conv_equals_dense(kwargs):
    torch.manual_seed(0)
    args = {"kernel_size": 3, **kwargs}
    layer = sparse_copy(nn.Conv2d(6, 10, **args), 0.8)
    csr = SparseConv2d(layer, "csr")
    x = torch.randn(3, 6, 9, 7)
    with torch.no_grad():
        assert torch.allclose(csr(x), layer(x), atol=1e-4)


def test_csr_conv_keeps_a_compact_models_bias_map():
    torch.manual_seed(0)
    layer = sparse_copy(nn.Conv2d(4, 5, 3, padding=1), 0.7)
    layer.__class__ = BiasMapConv2d
    layer.register_buffer("bias_map", torch.randn(5, 6, 6))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert torch.allclose(SparseConv2d(layer, "csr")(x), layer(x), atol=1e-4)


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 5))


def sparse_mask(model, sparsity):
    generator = torch.Generator().manual_seed(1)
    return Mask({name: torch.rand(m.shape, generator=generator) >= sparsity
                 for name, m in Mask.ones_like(model).items()})


def masked(model, mask):
    copy_ = copy.deepcopy(model).eval()
    mask.apply(copy_)
    return copy_


def test_sparsify_chooses_by_measured_time_and_keeps_outputs():
    torch.manual_seed(0)
    model = net()
    mask = sparse_mask(model, 0.95)
    result, info = sparsify(model, mask, "cpu", input_shape=(3, 8, 8), batch_size=8, repeats=5,
                            max_seconds_per_layer=0.1)
    rows = {row["name"]: row for row in info["layers"]}
    assert list(rows) == ["0", "2", "4", "7", "9"]
    assert info["batch_size"] == 8 and info["device"] == "cpu"
    # first and last layer are dense (not in the mask): not worth timing
    assert rows["0"]["chosen"] == rows["9"]["chosen"] == "dense"
    assert "too dense" in rows["0"]["reasons"]["csr"]
    assert "grouped" in rows["4"]["reasons"]["csr"]
    for name in ("2", "7"):
        row = rows[name]
        assert row["density"] == pytest.approx(float(mask[f"{name}.weight"].float().mean()))
        assert set(row["times_ms"]) == {"dense", "csr"}
        faster = row["times_ms"]["csr"] < (1 - sparse.MARGIN) * row["times_ms"]["dense"]
        assert row["chosen"] == ("csr" if faster else "dense")
        assert isinstance(result.get_submodule(name), SparseLinear if name == "7" else SparseConv2d) \
            == faster
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(result(x), masked(model, mask)(x), atol=1e-4)


def test_sparsified_model_equals_masked_when_every_layer_is_swapped(monkeypatch):
    monkeypatch.setattr(sparse, "MARGIN", -1e9)  # "faster" always: every possible layer swaps
    monkeypatch.setattr(sparse, "MAX_CSR_DENSITY", 1.0)
    torch.manual_seed(0)
    model = net()
    mask = sparse_mask(model, 0.6)
    result, info = sparsify(model, mask, "cpu", input_shape=(3, 8, 8), batch_size=2, repeats=1,
                            max_seconds_per_layer=0.0)
    assert [row["chosen"] for row in info["layers"]] == ["csr", "csr", "dense", "csr", "csr"]
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(result(x), masked(model, mask)(x), atol=1e-4)
    # an MLP needs no input shape: it is read from the first Linear
    mlp = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    result, info = sparsify(mlp, None, "cpu", batch_size=3, repeats=1, max_seconds_per_layer=0.0)
    assert all(row["chosen"] == "csr" for row in info["layers"])
    x = torch.randn(3, 12)
    with torch.no_grad():
        assert torch.allclose(result(x), mlp(x), atol=1e-4)


def test_two_four_pattern_check():
    keep = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3]])
    assert is_two_four(keep)
    assert not is_two_four(torch.tensor([[1.0, 1, 1, 0]]))
    assert not is_two_four(torch.ones(2, 6))  # not a multiple of 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_semi_structured_says_why_not_without_gpu():
    available, reason = semi_structured_support("cpu")
    assert not available and reason == sparse.NO_GPU
    _, info = sparsify(nn.Sequential(nn.Linear(8, 8)), None, "cpu", batch_size=2, repeats=1,
                       forms=("csr", "2:4"), max_seconds_per_layer=0.0)
    assert info["semi_structured"] == {"available": False, "reason": sparse.NO_GPU}
    assert info["layers"][0]["reasons"]["2:4"] == sparse.NO_GPU


@pytest.mark.skipif(not torch.cuda.is_available()
                    or torch.cuda.get_device_capability() < (8, 0),
                    reason="2:4 kernels need an NVIDIA GPU with compute capability >= 8.0")
def test_two_four_linear_on_gpu_equals_dense():
    available, reason = semi_structured_support("cuda")
    assert available, reason
    torch.manual_seed(0)
    layer = nn.Linear(128, 64).cuda().half()
    with torch.no_grad():
        pattern = torch.tensor([1.0, 0.0, 1.0, 0.0], device="cuda").repeat(64, 32).half()
        layer.weight.mul_(pattern)
    semi = SparseLinear(layer, "2:4")
    x = torch.randn(32, 128, device="cuda").half()
    with torch.no_grad():
        assert torch.allclose(semi(x).float(), layer(x).float(), atol=1e-2, rtol=1e-2)
