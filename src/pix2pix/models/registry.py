"""Registries of generators and discriminators, created by name with typed keyword arguments.

    G = create_generator("unet_256", in_channels=3, out_channels=3, ngf=64, norm="batch")
    D = create_discriminator("patchgan", in_channels=6, n_layers=3)

Each created network records how it was built in `net.arch` (name, channels and
keyword arguments), which the model card (`pix2pix.io.model_card`) saves so that
`from_pretrained` can rebuild it with no flags. The network modules of this package register
themselves with the decorators below; importing `pix2pix.models` (or `pix2pix.registry`)
imports them all, so the tables are full before anything is created.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError, did_you_mean
from ..nn import init_weights

F = TypeVar("F", bound=Callable[..., nn.Module])

GENERATORS: dict[str, Callable[..., nn.Module]] = {}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}


def _register(table: dict[str, Callable[..., nn.Module]], name: str) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
        if name in table:
            raise ValueError(f"'{name}' is registered twice")
        table[name] = fn
        return fn

    return decorator


def register_generator(name: str) -> Callable[[F], F]:
    """Decorator: register `fn(in_channels, out_channels, **kwargs) -> nn.Module` as generator `name`."""
    return _register(GENERATORS, name)


def register_discriminator(name: str) -> Callable[[F], F]:
    """Decorator: register `fn(in_channels, **kwargs) -> nn.Module` as discriminator `name`."""
    return _register(DISCRIMINATORS, name)


def _build(kind: str, table: dict[str, Callable[..., nn.Module]], name: str, args: dict[str, Any],
           kwargs: dict[str, Any]) -> nn.Module:
    if name not in table:
        raise ConfigError(
            f"unknown {kind} '{name}'; available: {', '.join(sorted(table))}." + did_you_mean(name, table)
        )
    fn = table[name]
    params = inspect.signature(fn).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = sorted(k for k in params if k not in args)
        raise ConfigError(
            f"{kind} '{name}' does not take {', '.join(repr(k) for k in unknown)}; its options are: "
            f"{', '.join(allowed)}." + did_you_mean(unknown[0], allowed)
        )
    net = fn(**args, **kwargs)
    net.arch = {"name": name, **args, "kwargs": dict(kwargs)}
    return net


def create_generator(name: str, in_channels: int = 3, out_channels: int = 3, *, init: str | None = "normal",
                     init_gain: float = 0.02, **kwargs: Any) -> nn.Module:
    """Build generator `name` mapping [B, in, H, W] to [B, out, H, W] in [-1, 1].

    `init=None` keeps PyTorch's default initialisation (e.g. before loading weights).
    """
    net = _build("generator", GENERATORS, name, {"in_channels": in_channels, "out_channels": out_channels}, kwargs)
    return init_weights(net, init, init_gain) if init else net


def create_discriminator(name: str, in_channels: int, *, init: str | None = "normal", init_gain: float = 0.02,
                         **kwargs: Any) -> nn.Module:
    """Build discriminator `name`; it returns a list per scale of [features..., logits]."""
    net = _build("discriminator", DISCRIMINATORS, name, {"in_channels": in_channels}, kwargs)
    return init_weights(net, init, init_gain) if init else net


def build_from_arch(arch: dict[str, Any], kind: str = "generator") -> nn.Module:
    """Rebuild a network from its recorded `arch` dict (weights are loaded separately; PyTorch's init)."""
    args = {k: v for k, v in arch.items() if k not in ("name", "kwargs")}
    if kind == "discriminator":
        return _build(kind, DISCRIMINATORS, arch["name"], args, dict(arch.get("kwargs", {})))
    # generators and the feature encoder (registered as a generator: images in, feature maps out)
    return _build("generator", GENERATORS, arch["name"], args, dict(arch.get("kwargs", {})))


def accepted_options(name: str, kind: str = "generator") -> set[str]:
    """The keyword arguments network `name` takes (empty when it is not registered)."""
    fn = (GENERATORS if kind == "generator" else DISCRIMINATORS).get(name)
    return set(inspect.signature(fn).parameters) if fn else set()


def list_generators() -> list[str]:
    return sorted(GENERATORS)


def list_discriminators() -> list[str]:
    return sorted(DISCRIMINATORS)
