"""The full factorial of variants × seeds: run folders named from sanitised values, configs, what is finished.

Run ``(variant, seed)`` lives in ``OUT/runs/<variant slug>/seed<seed>/`` and trains with the base config plus
the fixed overrides, the variant's values, ``seed: <seed>`` and ``run_dir: <run folder>/train``. The seed sets
the data split, the patch-sampling stream and the initialisation, so for one seed every variant sees the same
data in the same order. A run is finished when its ``result.json`` exists and was made with the same config.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.compare.spec import Comparison, short_keys, value_text
from segkit.config import Config, config_to_dict, load_config
from segkit.errors import ConfigError
from segkit.models import check_model_config

RESULT, RUN_SPEC, TRAIN_DIR, PREDICTIONS = "result.json", "run.json", "train", "predictions"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SLUG_PART = 40  # characters per key-value part of a folder name


def sanitise(text: str) -> str:
    """Letters, digits, ``_ . -`` only, no leading or trailing dots/dashes (never ``..`` or a path)."""
    return _UNSAFE.sub("-", text).strip("-.")[:_SLUG_PART].strip("-.") or "value"


@dataclass(frozen=True)
class Variant:
    """One combination of the varied values."""

    values: tuple[tuple[str, Any], ...]
    slug: str

    @property
    def label(self) -> str:
        """The value itself for one varied key, else ``key=value`` pairs, each key shortened to its shortest suffix
        that tells it from the other varied keys (``upsample``, but ``train.memory_format``)."""
        if len(self.values) == 1:
            return value_text(self.values[0][1])
        names = short_keys([key for key, _ in self.values])
        return ", ".join(f"{names[key]}={value_text(value)}" for key, value in self.values)

    @property
    def assignments(self) -> str:
        """``key=value`` for every varied key, keys in full (for error messages)."""
        return ", ".join(f"{key}={value_text(value)}" for key, value in self.values)

    def overrides(self) -> list[str]:
        """The variant's values as ``--set`` strings."""
        return [f"{key}={json.dumps(value, default=str)}" for key, value in self.values]


def make_variants(vary: dict[str, list[Any]]) -> list[Variant]:
    """Every combination of the values, in the order given; folder names made unique if sanitising collides."""
    combos = [tuple(zip(vary, values, strict=True)) for values in itertools.product(*vary.values())]
    slugs = ["_".join(f"{sanitise(key.rsplit('.', 1)[-1])}-{sanitise(value_text(v))}" for key, v in combo)
             for combo in combos]
    for i, slug in enumerate(slugs):
        if slugs.count(slug) > 1:
            digest = hashlib.sha1(json.dumps(combos[i], default=str).encode()).hexdigest()[:6]
            slugs[i] = f"{slug}-{digest}"
    return [Variant(combo, slug) for combo, slug in zip(combos, slugs, strict=True)]


def find_variant(variants: list[Variant], name: str | None) -> Variant:
    """The variant called ``name`` (its label or folder name); the first variant when ``name`` is None."""
    if name is None:
        return variants[0]
    for variant in variants:
        if name in (variant.label, variant.slug):
            return variant
    labels = ", ".join(v.label for v in variants)
    raise ConfigError(f"--baseline {name}: not one of the variants ({labels}); pick one of them")


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the comparison."""

    variant: Variant
    seed: int
    folder: Path
    config: Config

    @property
    def name(self) -> str:
        """``<variant slug>/seed<k>``."""
        return f"{self.variant.slug}/seed{self.seed}"


def run_folder(out: Path, variant: Variant, seed: int) -> Path:
    """``OUT/runs/<slug>/seed<k>``, checked to stay inside ``OUT``."""
    folder = Path(out) / "runs" / variant.slug / f"seed{int(seed)}"
    if not folder.resolve().is_relative_to(Path(out).resolve()):
        raise ConfigError(f"variant {variant.label!r}: its run folder would leave --out {out}")
    return folder


def _run_config(comparison: Comparison, variant: Variant, seed: int, folder: Path) -> Config:
    own = [f"seed={int(seed)}", f"run_dir={json.dumps(str(folder / TRAIN_DIR))}"]
    try:
        return load_config(comparison.config, [*comparison.overrides, *variant.overrides(), *own])
    except ConfigError as exc:
        raise ConfigError(f"--vary {variant.assignments}: {str(exc).removeprefix('--set: ')}") from None


def plan_runs(comparison: Comparison) -> tuple[list[Variant], list[PlannedRun]]:
    """The variants and every (variant, seed) run, seed by seed (all variants of seed 0 come first); two variants
    that would be the same run (values equal once validated) are an error."""
    load_config(comparison.config, list(comparison.overrides))  # errors in the fixed part name --set, not a variant
    variants = make_variants(comparison.vary)
    runs = []
    for seed in range(comparison.seeds):
        for variant in variants:
            folder = run_folder(comparison.out, variant, seed)
            runs.append(PlannedRun(variant, seed, folder, _run_config(comparison, variant, seed, folder)))
    check_distinct(comparison, runs[: len(variants)])
    for run in runs[: len(variants)]:  # seeds share the model; a model the encoder can't build fails here, not mid-way
        try:
            check_model_config(run.config.model)
        except ConfigError as exc:
            raise ConfigError(f"--vary {run.variant.assignments}: {exc}") from None
    return variants, runs


def _typed_value(cfg: Config, key: str) -> Any:
    """The value of dotted ``key`` in the validated config, as plain data."""
    value: Any = config_to_dict(cfg)
    for part in key.split("."):
        value = value[part]
    return value


def check_distinct(comparison: Comparison, runs: list[PlannedRun]) -> None:
    """Refuse two values of one varied key that the config schema reads as the same value (``0.01`` and ``1e-2``,
    which YAML reads as a float and a string), and any two variants with equal configs: they would be one run
    twice. ``runs``: one run per variant, all with the same seed."""
    for key in comparison.vary:
        written_as: dict[str, Any] = {}  # each validated value (as JSON) → the first value written for it
        for run in runs:
            written = dict(run.variant.values)[key]
            value = json.dumps(_typed_value(run.config, key), default=str)
            earlier = written_as.setdefault(value, written)
            first, second = (json.dumps(v, default=str) for v in (earlier, written))
            if first != second:  # the full factorial repeats each written value once per other key's value
                raise ConfigError(f"{comparison.sources.get(key, '--vary')} {key}: {first} and {second} are the same "
                                  f"value once validated ({value}), so two variants would be the same run; list each "
                                  "value once")
    seen: dict[str, Variant] = {}
    for run in runs:
        twin = seen.setdefault(config_digest(run.config), run.variant)
        if twin is not run.variant:
            raise ConfigError(f"--vary: variants {twin.label!r} and {run.variant.label!r} give the same config, so "
                              "they would be the same run; vary values that change the config")


def comparable_config(cfg: Config) -> dict[str, Any]:
    """The config as plain data without ``run_dir`` (moving the output folder does not change a run)."""
    return {k: v for k, v in config_to_dict(cfg).items() if k != "run_dir"}


def config_digest(cfg: Config) -> str:
    """A short hash of :func:`comparable_config`."""
    return hashlib.sha256(json.dumps(comparable_config(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _flat(tree: Any, key: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {key: tree}
    return {k: v for name, sub in tree.items() for k, v in _flat(sub, f"{key}.{name}" if key else name).items()}


def _first_difference(old: dict, new: dict, names: tuple[str, str] = ("then", "now")) -> str:
    before, after = _flat(old), _flat(new)
    key = next((k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)), "?")
    return f"{key}: {before.get(key)!r} {names[0]}, {after.get(key)!r} {names[1]}"


def is_finished(run: PlannedRun, held_out: list[str]) -> bool:
    """Whether the run's ``result.json`` exists with this config and the ``held_out`` case ids; a result made with
    another config or on other held-out cases is an error (its numbers would be mixed into the report)."""
    path = run.folder / RESULT
    if not path.is_file():
        return False
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # unreadable: run it again
    if stored.get("config_digest") == config_digest(run.config):
        if sorted(stored.get("cases") or []) != sorted(held_out):
            raise ConfigError(f"{run.folder}: finished on other held-out cases ({len(stored.get('cases') or [])} then, "
                              f"{len(held_out)} now: the dataset's test cases changed); delete that folder to redo it, "
                              "or choose another --out")
        return True
    change = _first_difference(stored.get("config") or {}, comparable_config(run.config))
    raise ConfigError(f"{run.folder}: finished with a different config ({change}); delete that folder to redo it, "
                      "or choose another --out")


def plan_record(comparison: Comparison, variants: list[Variant], runs: list[PlannedRun], baseline: Variant) -> dict:
    """``OUT/compare.json``: what the report needs to find and label the runs (folders relative to ``OUT``)."""
    return {"format": 2, "config": comparison.config_name, "spec": comparison.spec_name, "vary": comparison.vary,
            "overrides": list(comparison.overrides), "seeds": comparison.seeds, "baseline": baseline.label,
            "variants": [{"label": v.label, "slug": v.slug, "values": dict(v.values)} for v in variants],
            "runs": [{"label": r.variant.label, "seed": r.seed, "folder": str(r.folder.relative_to(comparison.out)),
                      "config_digest": config_digest(r.config), "config": comparable_config(r.config)} for r in runs]}


def check_planned(folder: Path, entry: dict, stored: dict) -> None:
    """Refuse a stored result whose config is not the one the plan (``compare.json``) records for its run (a plan
    written by a later command with other settings): the report would describe a config no run used. Plans
    written before format 2 record no config and are not checked."""
    planned = entry.get("config_digest")
    if planned is None or stored.get("config_digest") == planned:
        return
    change = _first_difference(stored.get("config") or {}, entry.get("config") or {}, ("in the result", "in the plan"))
    raise ConfigError(f"{folder / RESULT}: made with another config than compare.json plans for it ({change}); "
                      f"rerun segkit compare with the settings it was made with, or delete that folder")
