"""Model files that load with ``torch.load(..., weights_only=True)``: no pickled code, ever.

A pickled ``nn.Module`` (``torch.save(model)``) runs whatever its file says when it is loaded, so
a tampered file would run code on export. Here a model is saved as plain data instead:

- ``state_dict``: the tensors;
- ``config``: the run's ``RunConfig`` as JSON, and ``shape``: ``[channels, image size, classes]``,
  from which the registry builds the original architecture;
- ``layers``: JSON describing every weight layer whose type or size differs from what the registry
  builds (i-SpaSP and physical removal shrink layers, SSC replaces convolutions, folding adds
  bias maps), each as one of the ``LAYERS`` below and its constructor arguments (ints, floats,
  bools, strings).

Loading builds the registry model, swaps in the described layers (only the allowlisted types,
built by their constructors), and loads the tensors with ``strict=True``, so a file that does not
fit its description is refused. ``weights_only=True`` lets torch unpickle only tensors and
primitive containers: a file that asks for anything else raises before any of its code runs.
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pruning.config import ConfigError, RunConfig

FORMAT = "pruning-model/2"


class ModelFileError(ConfigError):
    """A model file that is not ours, was saved by an unsafe older format, or is damaged."""


def _conv_args(m: nn.Module) -> dict[str, Any]:
    # sizes from the tensors: surgery (i-SpaSP) slices the weights and may not update every
    # attribute; the tensors are what load_state_dict must fit
    return {"in_channels": int(m.weight.shape[1]) * m.groups, "out_channels": int(m.weight.shape[0]),
            "kernel_size": list(m.kernel_size), "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _linear_args(m: nn.Module) -> dict[str, Any]:
    return {"in_features": int(m.weight.shape[1]), "out_features": int(m.weight.shape[0]),
            "bias": m.bias is not None}


def _norm_args(m: nn.Module) -> dict[str, Any]:
    size = m.running_mean if m.running_mean is not None else m.weight
    return {"num_features": int(size.shape[0]), "eps": m.eps, "momentum": m.momentum,
            "affine": m.affine, "track_running_stats": m.track_running_stats}


def _ssc_args(m: nn.Module) -> dict[str, Any]:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size), "stride": list(m.stride),
            "padding": list(m.padding), "dilation": list(m.dilation),
            "period_full": m.period_full, "period_pointwise": m.period_pointwise,
            "bias": m.bias is not None, "layout": m.layout}


def _layer_types() -> dict[str, tuple[type, Callable[[nn.Module], dict[str, Any]]]]:
    """The allowlist: name -> (class, its constructor arguments read from a built layer)."""
    from pruning.methods.ssc import SSCConv2d
    from pruning.physical import BiasMapConv1d, BiasMapConv2d, BiasMapConv3d

    return {
        "Conv1d": (nn.Conv1d, _conv_args), "Conv2d": (nn.Conv2d, _conv_args),
        "Conv3d": (nn.Conv3d, _conv_args),
        "BiasMapConv1d": (BiasMapConv1d, _conv_args), "BiasMapConv2d": (BiasMapConv2d, _conv_args),
        "BiasMapConv3d": (BiasMapConv3d, _conv_args),
        "Linear": (nn.Linear, _linear_args),
        "BatchNorm1d": (nn.BatchNorm1d, _norm_args), "BatchNorm2d": (nn.BatchNorm2d, _norm_args),
        "BatchNorm3d": (nn.BatchNorm3d, _norm_args),
        "SSCConv2d": (SSCConv2d, _ssc_args),
    }


def describe_layers(model: nn.Module, reference: nn.Module | None = None) -> dict[str, dict]:
    """``{module name: {"type", "args"}}`` for every allowlisted layer of ``model`` that differs
    from ``reference`` (the registry's build; None: describe every one)."""
    types = _layer_types()
    by_class = {cls: name for name, (cls, _) in types.items()}
    built = dict(reference.named_modules()) if reference is not None else {}
    layers = {}
    for name, module in model.named_modules():
        kind = by_class.get(type(module))
        if kind is None or not name:
            continue
        entry = {"type": kind, "args": types[kind][1](module)}
        original = built.get(name)
        if original is not None and type(original) is type(module) \
                and types[kind][1](original) == entry["args"]:
            continue
        layers[name] = entry
    return layers


def model_blob(model: nn.Module, config: RunConfig, shape: tuple[int, int, int]) -> dict:
    """What a model file holds: plain data only (see the module docstring)."""
    from pruning import models

    channels, size, classes = shape
    reference = models.build_model(config, channels, classes, size)
    return {"format": FORMAT, "config": config.to_json(), "shape": [channels, size, classes],
            "layers": json.dumps(describe_layers(model, reference)),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def to_bytes(model: nn.Module, config: RunConfig, shape: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    torch.save(model_blob(model, config, shape), buffer)
    return buffer.getvalue()


def read_blob(path: Path, what: str) -> dict:
    """``torch.load(path, weights_only=True)``, with one clear line for what it refuses."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        if "module" in str(exc).lower() or "GLOBAL" in str(exc):
            raise ModelFileError(
                f"{what} ({path}) asks to run code when loaded (a pickled object, the format "
                f"older versions used for changed architectures, or a tampered file); it is not "
                f"loaded: run the session again to save it in the safe format") from None
        raise ModelFileError(f"{what} ({path}) is damaged ({_first_line(exc)}); run the session "
                             f"again to save a new one") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ModelFileError(f"{what} ({path}) is damaged or truncated ({_first_line(exc)}); run "
                             f"the session again to save a new one") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise ModelFileError(f"{what} ({path}) is not a model file written by Pruning Explorer")
    return blob


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def rebuild(blob: dict, what: str, config: RunConfig | None = None,
            shape: tuple[int, int, int] | None = None) -> nn.Module:
    """The model a blob describes, in eval mode on the CPU. ``config``/``shape`` default to the
    blob's own (a run's store passes its decoded config)."""
    from pruning import models

    try:
        config = config or RunConfig.from_dict(json.loads(blob["config"]))
        channels, size, classes = shape or tuple(int(v) for v in blob["shape"])
        layers = json.loads(blob.get("layers") or "{}")
        model = models.build_model(config, channels, classes, size)
        types = _layer_types()
        state = blob["state_dict"]
        for name, entry in layers.items():
            cls = types[entry["type"]][0]  # KeyError for a type outside the allowlist
            kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["args"].items()}
            _check_size(cls, kwargs, name, state, what)
            layer = cls(**kwargs)
            for key, tensor in state.items():  # buffers added after construction (bias maps)
                local = key[len(name) + 1:]
                if key.startswith(name + ".") and "." not in local and local not in \
                        dict(layer.named_parameters(recurse=False)) and local not in \
                        dict(layer.named_buffers(recurse=False)):
                    layer.register_buffer(local, torch.empty_like(tensor))
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
        model.load_state_dict(state, strict=True)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ModelFileError(f"{what} does not fit its own description ({_first_line(exc)}); "
                             f"run the session again to save a new one") from None
    return model.eval()


#: an SSC layer's pattern is (out, in) bytes built before its weights: bound it (100 MB)
MAX_PATTERN_CELLS = 10 ** 8


def _check_size(cls: type, kwargs: dict[str, Any], name: str, state: dict, what: str) -> None:
    """Refuse a description whose layer would not hold the stored tensors, before building it
    for real: a tampered file must not make loading allocate what it likes."""
    if cls.__name__ == "SSCConv2d":
        cells = int(kwargs["in_channels"]) * int(kwargs["out_channels"])
        if cells > MAX_PATTERN_CELLS:
            raise ModelFileError(f"{what} describes an SSC layer {name} of {cells:,} channel "
                                 f"pairs, more than any model here; it is not loaded")
        return  # its weights' shapes are checked by load_state_dict
    with torch.device("meta"):  # shapes only, no memory
        probe = cls(**kwargs)
    for key, tensor in probe.state_dict().items():
        stored = state.get(f"{name}.{key}")
        if stored is None or tuple(stored.shape) != tuple(tensor.shape):
            raise ModelFileError(f"{what} describes layer {name} with {key} of shape "
                                 f"{tuple(tensor.shape)}, but holds "
                                 f"{None if stored is None else tuple(stored.shape)}; it is not "
                                 f"loaded: run the session again to save a new one")


def load_model_file(path: str | Path) -> nn.Module:
    """Load a model file written by ``RunStore.save_model`` or ``export`` (compact models
    included) with ``weights_only=True``; the architecture is rebuilt from its description."""
    path = Path(path)
    what = f"model file {path.name}"
    blob = read_blob(path, what)
    if blob.get("format") != FORMAT:
        raise ModelFileError(f"{path} holds only weights (a state_dict), no architecture; load it "
                             f"into the run's model: torch.load(path, weights_only=True)")
    return rebuild(blob, what)
