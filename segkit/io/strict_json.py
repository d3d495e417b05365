"""Strict JSON for logs and manifests: non-finite floats become null, numpy/torch values plain numbers."""

from __future__ import annotations

import math
import numbers
from typing import Any


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursing into dicts and lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist())
    return value
