"""Swapping submodules in place, for the inference and GPU rewrites of a built model."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Swap, in place, each submodule of ``model`` for which ``replacement`` returns a module; the submodules of
    a returned module are not visited (returning the module itself leaves it, and what it holds, alone).
    Returns ``model``."""
    for name, child in list(model.named_children()):
        new = replacement(child)
        if new is None:
            replace_modules(child, replacement)
        elif new is not child:
            setattr(model, name, new)
    return model


def plain_sequentials(model: nn.Module) -> list[nn.Sequential]:
    """The ``nn.Sequential`` submodules of ``model`` whose forward is Sequential's own (children run in order)."""
    return [m for m in model.modules() if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward]
