"""Encoder families. Importing this package imports every module in it, and each
module registers its encoders in ``segkit.registry.ENCODERS``: a new family is one
new file here and needs no edit elsewhere."""

import importlib
import pkgutil

from segkit.models.encoders.base import Encoder, FeatureInfo

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Encoder", "FeatureInfo"]
