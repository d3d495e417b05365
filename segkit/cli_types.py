"""Value converters for the ``segkit`` command line: argparse ``type=`` functions that refuse bad values as usage
errors, each with a message saying what the flag takes (``argument --workers: must be a positive integer, got
abc``) — never argparse's ``invalid <function name> value``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _integer(text: str, takes: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{takes}, got {text}") from None


def _number(text: str, takes: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{takes}, got {text}") from None


def nonempty(text: str) -> str:
    """A path as given, refusing an empty one: ``Path("")`` is the current folder, so ``--output "$UNSET"`` would
    write there."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path — give a file or folder name (is a shell variable unset?)")
    return text


def path(text: str) -> Path:
    """A non-empty path as a ``Path``."""
    return Path(nonempty(text))


def seed(text: str) -> int:
    """An integer of 0 or more."""
    value = _integer(text, "must be 0 or more")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive(text: str) -> int:
    """An integer of 1 or more."""
    value = _integer(text, "must be a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def overlap(text: str) -> float:
    """A sliding-window overlap in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in [0, 1)")
    return value


def sw_batch(text: str) -> int | str:
    """``auto`` or a positive integer."""
    return "auto" if text == "auto" else positive(text)


def unit(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, "must be between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _number(text, "must be a positive number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
