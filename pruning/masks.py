"""The Mask value object: which prunable weights are kept, per parameter name.

A Mask is an immutable mapping ``parameter name -> bool tensor`` (True = kept) in the shape of the
weight. Methods return new Masks and never modify the model; ``apply`` zeroes the pruned weights
in place. Masks serialise to packed bits (``np.packbits``) so ~20 snapshots per run stay small.

Prunable parameters: by default the weights of Linear and Conv layers except the first and the
last layer; biases and BatchNorm are never pruned (as in most papers, see METHODS.md §2).
"""
from __future__ import annotations

import io
import zipfile
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model: nn.Module, include_first_last: bool = False) -> dict[str, nn.Module]:
    """``{weight parameter name: layer}`` for the layers whose weights may be pruned, in order.

    First and last are taken in registration order, which for every registered model is the
    data-flow order (the stem first, the classifier last).
    """
    layers = [(name, module) for name, module in model.named_modules()
              if isinstance(module, PRUNABLE_TYPES) and getattr(module, "weight", None) is not None]
    if not include_first_last and len(layers) > 2:
        layers = layers[1:-1]
    return {f"{name}.weight" if name else "weight": module for name, module in layers}


def prunable_parameters(model: nn.Module, include_first_last: bool = False) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    return {name: params[name] for name in prunable_layers(model, include_first_last)}


class Mask(Mapping[str, torch.Tensor]):
    """Immutable ``name -> bool tensor`` mapping; True means the weight is kept."""

    __slots__ = ("_masks",)

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        frozen = {}
        for name, tensor in masks.items():
            tensor = torch.as_tensor(tensor).detach().to(torch.bool).clone()
            tensor.requires_grad_(False)
            frozen[name] = tensor
        object.__setattr__(self, "_masks", frozen)

    def __setattr__(self, key, value):
        raise AttributeError("Mask is immutable")

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        # A copy: torch has no read-only tensors, and handing out the stored one would let a
        # caller change the Mask in place (bool masks are small; the copy costs microseconds).
        return self._masks[name].clone()

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, sparsity={self.sparsity():.4f})"

    # Constructors
    @classmethod
    def ones_like(cls, model: nn.Module, include_first_last: bool = False) -> "Mask":
        return cls({name: torch.ones_like(p, dtype=torch.bool, device="cpu")
                    for name, p in prunable_parameters(model, include_first_last).items()})

    @classmethod
    def from_weights(cls, model: nn.Module, names: list[str] | None = None,
                     include_first_last: bool = False) -> "Mask":
        """The mask of nonzero weights (what is effectively pruned right now)."""
        params = dict(model.named_parameters())
        names = names or list(prunable_parameters(model, include_first_last))
        return cls({name: (params[name].detach() != 0).cpu() for name in names})

    # Statistics
    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self._masks.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def sparsity(self) -> float:
        total = self.total()
        return 0.0 if total == 0 else 1.0 - self.kept() / total

    def density(self) -> float:
        return 1.0 - self.sparsity()

    def layer_sparsity(self) -> dict[str, float]:
        return {name: 1.0 - float(m.sum()) / m.numel() for name, m in self._masks.items()}

    def layer_sizes(self) -> dict[str, int]:
        return {name: m.numel() for name, m in self._masks.items()}

    # Algebra
    def __and__(self, other: "Mask") -> "Mask":
        if set(self) != set(other):
            raise ValueError("masks cover different parameters")
        return Mask({name: self[name] & other[name] for name in self})

    def is_subset_of(self, other: "Mask") -> bool:
        """True when every weight kept here is also kept in ``other`` (monotone pruning)."""
        return all(not bool((self[name] & ~other[name]).any()) for name in self)

    def flips(self, other: "Mask") -> dict[str, int]:
        """Per layer, how many entries differ (mask churn between two snapshots)."""
        return {name: int((self[name] ^ other[name]).sum()) for name in self}

    def equals(self, other: "Mask") -> bool:
        return set(self) == set(other) and all(torch.equal(self[n], other[n]) for n in self)

    # Use
    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        params = dict(model.named_parameters())
        for name, keep in self._masks.items():
            param = params[name]
            param.mul_(keep.to(device=param.device, dtype=param.dtype))

    def to(self, device: torch.device | str,
           dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Copies as 1.0/0.0 in ``dtype`` on ``device``, for multiplying in a hot loop."""
        return {name: m.to(device=device, dtype=dtype) for name, m in self._masks.items()}

    # Serialisation: packed bits, one byte per 8 weights
    def to_bytes(self) -> bytes:
        """An ``.npz`` archive: per layer its packed bits and shape, plus the names in order.

        Written with zlib level 1 (``np.savez_compressed`` uses 6): packed mask bits compress
        as well either way, and a run writes ~20 snapshots while it trains.
        """
        arrays = {"names": np.asarray(list(self._masks), dtype=np.str_)}
        for i, (name, m) in enumerate(self._masks.items()):
            arrays[f"bits{i}"] = np.packbits(m.numpy().reshape(-1))
            arrays[f"shape{i}"] = np.asarray(m.shape, dtype=np.int64)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Mask":
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            names = [str(n) for n in arrays["names"]]
            masks = {}
            for i, name in enumerate(names):
                shape = tuple(int(s) for s in arrays[f"shape{i}"])
                count = int(np.prod(shape)) if shape else 1
                bits = np.unpackbits(arrays[f"bits{i}"])[:count].astype(bool)
                masks[name] = torch.from_numpy(bits.reshape(shape))
        return cls(masks)
