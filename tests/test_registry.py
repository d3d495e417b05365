"""The registry: lookup, duplicate protection and helpful unknown-name errors."""

from __future__ import annotations

import pytest

from segkit.errors import UnknownNameError
from segkit.registry import ENCODERS, FUSIONS, LOSSES, UPSAMPLERS, Registry


def test_registries_hold_the_expected_names() -> None:
    assert {"resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2"} <= set(ENCODERS.names())
    assert set(UPSAMPLERS.names()) == {"transposed", "nearest", "linear", "pixelshuffle"}
    assert set(FUSIONS.names()) == {"concat", "add"}
    assert "dice_ce" in LOSSES


def test_unknown_name_suggests_nearest_and_lists_valid() -> None:
    with pytest.raises(UnknownNameError) as info:
        UPSAMPLERS.get("transpose")
    message = str(info.value)
    assert "did you mean 'transposed'" in message
    assert "linear, nearest, pixelshuffle, transposed" in message


def test_duplicate_registration_is_refused() -> None:
    registry = Registry("thing")
    registry.add("a", dict)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", list)
    assert registry.get("a") is dict
