"""What a comparison varies: the base config, keys × values, fixed overrides, seeds, baseline and output folder.

A compare spec is a YAML file with one ``compare:`` section (``configs/compare/upsampling.yaml``)::

    compare:
      config: unet_resnet34.yaml        # base training config: a path next to this file, or a packaged name
      vary:                             # every combination of these values is one variant
        model.upsample: [transposed, nearest, linear, pixelshuffle]
      set:                              # fixed overrides for every run
        train.epochs: 100
      seeds: 5                          # seeds 0..4; each seed gives every variant the same split and samples
      baseline: transposed
      out: runs/compare-upsampling

Command-line flags override the spec: ``--vary KEY=...`` replaces that key's values (other keys stay; the
replacement is reported in :attr:`Comparison.notes`), ``--set`` applies after the spec's ``set`` (a key in both
keeps one value, the command line's, also reported in the notes; the fixed overrides hold one value per key), and
``--seeds``, ``--baseline``, ``--out`` replace theirs (with neither ``--out`` nor ``out``, the folder is
``runs/compare-<varied keys>``). One key given in two ``--vary`` flags is an error (the values would otherwise
silently be the last flag's only).
``--config`` may also be a plain training config, with everything else from the command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from segkit.config import Config
from segkit.config_loading import load_raw_config, parse_override, refuse_aliases, resolve_config_path, to_config
from segkit.errors import ConfigError
from segkit.registry import closest_match

RESERVED = {"seed": "--seeds", "run_dir": "--out"}  # keys the comparison sets itself
MAX_RUNS = 10_000  # variants × seeds; planning builds a config for each run before any starts
HELD_OUT_KEYS = ("data", "data.root", "data.format")  # keys that choose the held-out cases: the same for every variant


class CompareSpec(BaseModel):
    """The ``compare:`` section of a spec file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str
    vary: dict[str, list[Any]] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: PositiveInt = 3
    baseline: str | None = None
    out: Path | None = None


class _SpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    compare: CompareSpec


@dataclass(frozen=True)
class CompareRequest:
    """The command line's choices; None (or empty) where a flag was not given."""

    config: str
    vary: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    seeds: int | None = None
    out: Path | None = None
    baseline: str | None = None


@dataclass(frozen=True)
class Comparison:
    """A resolved comparison: the base config (a loadable path, and its name as written), varied keys with their
    values, fixed overrides, seeds, baseline, output folder, and the spec file's name as given (if any)."""

    config: str
    vary: dict[str, list[Any]]
    out: Path
    overrides: tuple[str, ...] = ()
    seeds: int = 3
    baseline: str | None = None
    config_name: str = ""
    spec_name: str | None = field(default=None, compare=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # key → where its values came from
    notes: tuple[str, ...] = field(default=(), compare=False)  # what the command line changed in the spec


def value_text(value: Any) -> str:
    """How a varied value is shown (labels, tables): strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix (whole dot-separated parts) that no other key ends with:
    ``train.memory_format`` and ``infer.memory_format`` stay whole, ``model.upsample`` alone is ``upsample``."""
    def shortest(key: str) -> str:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other == suffix or other.endswith("." + suffix) for other in keys if other != key):
                return suffix
        return key
    return {key: shortest(key) for key in keys}


def default_out(keys: list[str]) -> Path:
    """The output folder when neither ``--out`` nor the spec names one: ``runs/compare-<varied keys>`` (shortened as
    in the variant labels, e.g. ``runs/compare-upsample``), beside ``segkit train``'s ``runs/…``; the same command run
    again finds its finished runs there."""
    return Path("runs") / "-".join(["compare", *short_keys(keys).values()])  # schema keys: safe in a folder name


def schema_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config schema, sections included (``train``, ``train.augment.flip``, ...)."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += schema_keys(info.annotation, f"{prefix}{name}.")
    return keys


def check_vary_key(key: str, flag: str = "--vary") -> None:
    """A varied key must exist in the config schema and not be one that the comparison sets itself."""
    if key in RESERVED:
        raise ConfigError(f"{flag} {key}: the comparison sets '{key}' itself; use {RESERVED[key]} instead")
    if key in HELD_OUT_KEYS:
        raise ConfigError(f"{flag} {key}: it chooses the dataset, so the variants would be scored on different "
                          "held-out cases that cannot be paired; compare each dataset in a comparison of its own")
    keys = schema_keys()
    if key not in keys:
        close = closest_match(key, keys)
        hint = f"did you mean '{close}'?" if close else "see docs/CONFIG.md for the keys"
        raise ConfigError(f"{flag} {key}: unknown config key; {hint}")


def parse_vary(item: str) -> tuple[str, list[Any]]:
    """``'model.upsample=transposed,nearest'`` → ``('model.upsample', ['transposed', 'nearest'])``; values are
    read as one YAML flow list, so ``train.patch_size=[64,64],[96,96]`` gives two lists."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise ConfigError(f"--vary {item!r}: expected KEY=VALUE1,VALUE2,... "
                          "e.g. --vary model.upsample=transposed,nearest")
    if text.rstrip().endswith(","):  # YAML's flow list drops a trailing empty item; a leading one is an error
        raise ConfigError(f"--vary {item!r}: ends with a comma, an empty value; list every value, e.g. "
                          f"{key}=transposed,nearest")
    try:
        refuse_aliases(f"[{text}]", f"--vary {key}")
        values = yaml.safe_load(f"[{text}]")
    except yaml.YAMLError:
        raise ConfigError(f"--vary {key}: {text!r} is not a comma-separated list of YAML values; quote values that "
                          "hold commas, colons or brackets") from None
    return key, values


def check_values(key: str, values: Any, flag: str = "--vary") -> list[Any]:
    """A non-empty list without repeats."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{flag} {key}: give a non-empty list of values, e.g. [transposed, nearest]")
    texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
    repeated = next((values[i] for i, t in enumerate(texts) if texts.index(t) != i), None)
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{flag} {key}: value {repeated!r} is listed twice; list each value once")
    shown = [value_text(v) for v in values]  # the report groups runs by these labels
    twin = next((i for i, t in enumerate(shown) if shown.index(t) != i), None)
    if twin is not None:
        first = values[shown.index(shown[twin])]
        raise ConfigError(f"{flag} {key}: values {json.dumps(first)} and {json.dumps(values[twin])} are both shown as "
                          f"{shown[twin]!r}, and the report groups runs by that label; list values that read "
                          "differently")
    return values


def _override(key: str, value: Any) -> str:
    """A ``--set`` string whose value reads back as ``value`` (JSON is YAML)."""
    return f"{key}={json.dumps(value, default=str)}"


def _spec_from_file(name: str) -> tuple[CompareSpec | None, Path]:
    """The ``compare:`` section when ``name`` is a compare spec (None for a plain training config)."""
    path = resolve_config_path(name)
    raw, sources = load_raw_config(path, ())
    if "compare" not in raw:
        return None, path
    return to_config(_SpecFile, raw, sources).compare, path


def _merge_vary(spec: CompareSpec | None, path: Path,
                request: CompareRequest) -> tuple[dict[str, list[Any]], dict[str, str], list[str]]:
    """The varied keys and values (the spec's, then each ``--vary`` flag replacing its key's), where each key's
    values came from, and a note for each spec key the command line replaced; a key in two flags is an error."""
    vary, sources, notes, given = {}, {}, [], {}
    for key, values in (spec.vary if spec else {}).items():
        sources[key] = f"{path}: compare.vary:"
        vary[key] = check_values(key, values, sources[key])
    for item in request.vary:
        key, values = parse_vary(item)
        text = item.partition("=")[2].strip()
        if key in given:
            raise ConfigError(f"--vary {key} is given twice ({given[key]!r} and {text!r}); give all its values in one "
                              f"flag, e.g. --vary {key}={given[key]},{text}")
        given[key] = text
        if key in vary:
            notes.append(f"--vary {key} replaces the spec's values {vary[key]} with {values}")
        sources[key] = "--vary"
        vary[key] = check_values(key, values)
    return vary, sources, notes


def _pieces(key: str, value: Any) -> list[tuple[str, Any]]:
    """A section given whole (``train={epochs: 5, lr: 0.1}``) as the keys it names (``train.epochs``, ``train.lr``):
    the same assignments, as a section given whole overrides only the keys it names; anything else as it is."""
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) and k and "." not in k for k in value):
        return [(key, value)]
    return [piece for sub, inner in value.items() for piece in _pieces(f"{key}.{sub}", inner)]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def merge_fixed(items: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The fixed overrides (``(flag, KEY=VALUE)``, the spec's ``set`` first, then ``--set``) as one effective value
    per key: a later value of a key replaces the earlier one in its place (a key set to a plain value also replaces
    the earlier keys inside it), so the list names only values the runs use and loads to the same config. Returns
    the ``KEY=VALUE`` strings and a note for each spec value that ``--set`` replaced with another."""
    entries: list[tuple[str, Any, str, str]] = []  # (key, value, flag, KEY=VALUE text)
    dropped: list[tuple[str, Any]] = []  # the spec's (key, value) that a later item replaced
    for flag, item in items:
        key, value = parse_override(item)
        pieces = _pieces(key, value)
        for piece_key, piece_value in pieces:
            text = item if len(pieces) == 1 and piece_key == key else _override(piece_key, piece_value)
            section_kept = isinstance(piece_value, dict)  # {} merges into the section: the keys inside it stay
            replaced = [i for i, (k, *_) in enumerate(entries)
                        if k == piece_key or (not section_kept and k.startswith(piece_key + "."))]
            dropped += [(entries[i][0], entries[i][1]) for i in replaced if entries[i][2] != "--set"]
            at = replaced[0] if replaced else len(entries)
            entries = [e for i, e in enumerate(entries) if i not in replaced]
            entries.insert(at, (piece_key, piece_value, flag, text))
    notes = []
    final = {k: (v, flag) for k, v, flag, _ in entries}
    for old_key, old_value in dropped:  # each named against the value that holds in the end, when --set gave it
        if old_key in final:
            value, flag = final[old_key]
            if flag == "--set" and not _same(value, old_value):
                notes.append(f"--set {old_key} replaces the spec's {value_text(old_value)} with {value_text(value)}")
            continue
        over = next((k for k in final if old_key.startswith(k + ".") and final[k][1] == "--set"), None)
        if over is not None:
            notes.append(f"--set {over}={value_text(final[over][0])} replaces the spec's "
                         f"{old_key}={value_text(old_value)}")
    return [text for *_, text in entries], notes


def _overlaps(a: str, b: str) -> bool:
    """Whether dotted keys ``a`` and ``b`` are the same key or one is a section holding the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def check_fixed_not_varied(fixed: list[tuple[str, str]], vary: dict[str, list[Any]], sources: dict[str, str]) -> None:
    """Refuse a fixed override (``(flag, KEY=VALUE)``) of a key that is also varied, or that the comparison sets
    itself (``seed``, ``run_dir``): every run would take the variant's (or the comparison's) value, while the report
    would list the fixed one."""
    for flag, item in fixed:
        key = item.partition("=")[0].strip()
        if key in RESERVED:
            raise ConfigError(f"{flag} {item}: the comparison sets '{key}' itself (seeds 0..N-1 for every variant, "
                              f"each run in its own folder under --out), so no run would use this value; drop it and "
                              f"use {RESERVED[key]} instead")
        varied = next((k for k in vary if _overlaps(key, k)), None)
        if varied is not None:
            raise ConfigError(f"{flag} {item} and {sources[varied]} {varied}: the key is both fixed and varied, and "
                              f"each variant's value would replace the fixed one; drop {key} from "
                              f"{flag.rstrip(':')}, or list its value among the --vary values")


def check_run_count(vary: dict[str, list[Any]], seeds: int, flag: str = "--seeds") -> None:
    """Refuse a full factorial of more than ``MAX_RUNS`` runs before it is planned (``--seeds 99999999999`` would
    spend hours and all the memory building run configs)."""
    variants = 1
    for values in vary.values():
        variants *= len(values)
    if variants * seeds > MAX_RUNS:
        raise ConfigError(f"{flag} {seeds}: {variants} variant(s) × {seeds} seed(s) = {variants * seeds} training "
                          f"runs, over the limit of {MAX_RUNS}; choose fewer seeds or values")


def resolve_comparison(request: CompareRequest) -> Comparison:
    """Merge a spec file (when ``--config`` is one) with the command line, and check the varied keys."""
    spec, path = _spec_from_file(request.config)
    base = str(resolve_config_path(spec.config, relative_to=path.parent)) if spec is not None else request.config
    vary, sources, notes = _merge_vary(spec, path, request)
    if not vary:
        raise ConfigError("nothing to compare: pass --vary KEY=VALUE1,VALUE2 (e.g. model.upsample=transposed,nearest) "
                          "or a compare spec with a 'vary' section")
    for key in vary:
        check_vary_key(key, sources[key])
    out = request.out or (spec.out if spec else None) or default_out(list(vary))
    from_spec = [(f"{path}: compare.set:", _override(k, v)) for k, v in (spec.set if spec else {}).items()]
    check_fixed_not_varied([*from_spec, *(("--set", item) for item in request.overrides)], vary, sources)
    fixed, replaced = merge_fixed([*from_spec, *(("--set", item) for item in request.overrides)])
    seeds = request.seeds or (spec.seeds if spec else 3)
    check_run_count(vary, seeds, "--seeds" if request.seeds else f"{path}: compare.seeds:")
    baseline = request.baseline or (spec.baseline if spec else None)
    spec_name = request.config if spec is not None else None
    return Comparison(base, vary, Path(out), tuple(fixed), seeds, baseline, spec.config if spec else request.config,
                      spec_name, sources, (*notes, *replaced))
