"""Reading config YAML: path/name resolution, ``base:`` chains, ``--set`` and error messages.

Kept apart from the schema in ``segkit.config`` so each file has one job.
``sources`` maps every dotted key to the file (or ``--set``) that gave it its
value, so an error can name where the bad key came from.
"""

from __future__ import annotations

import itertools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from segkit.errors import ConfigError
from segkit.registry import closest_match

BASE_KEY = "base"
Sources = dict[str, str]


def packaged_config_names() -> list[str]:
    """Names of the configs shipped inside the package (``segkit.configs``), sub-folders as ``compare/x.yaml``."""
    root = resources.files("segkit.configs")
    names = [p.name for p in root.iterdir() if p.name.endswith((".yaml", ".yml"))]
    for folder in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        names += [f"{folder.name}/{p.name}" for p in folder.iterdir() if p.name.endswith((".yaml", ".yml"))]
    return sorted(names)


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config path: an existing file (relative to ``relative_to`` or cwd) or a packaged name, ``.yaml`` optional."""
    if not str(name).strip():
        raise ConfigError("config name is empty; give a config file or a packaged name such as unet_resnet34.yaml")
    name = Path(name)
    candidates = [relative_to / name] if relative_to is not None else []
    candidates.append(name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if name.name and not name.is_absolute() and ".." not in name.parts:  # e.g. compare/upsampling_demo.yaml
        spellings = [name] if name.suffix in (".yaml", ".yml") else [name, name.with_name(name.name + ".yaml")]
        for spelling in spellings:  # `--config unet_resnet34` is the packaged unet_resnet34.yaml
            packaged = resources.files("segkit.configs").joinpath(*spelling.parts)
            if packaged.is_file():
                return Path(str(packaged))
    available = ", ".join(packaged_config_names())
    raise ConfigError(f"config '{name}' not found: not a file and not a packaged config ({available})")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a config is a YAML text file "
                          "— check the path") from None
    try:
        refuse_aliases(text, str(path))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{line} invalid YAML ({problem}); only plain YAML values are allowed") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    _refuse_repeated_keys(path, yaml.compose(text, Loader=yaml.SafeLoader))
    return data


def refuse_aliases(text: str, where: str) -> None:
    """Refuse YAML anchors' aliases (``*name``): nine nested aliases of ten items make a few hundred bytes that
    expand to 10⁹ values (a "billion laughs" bomb), and a config never needs them. Scans the parser's events,
    in time linear in the text."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{where}: line {event.start_mark.line + 1}: YAML alias *{event.anchor}; segkit "
                              "configs take no anchors and aliases (they can expand a small file without bound) "
                              "— write the values out")


def _refuse_repeated_keys(path: Path, node: yaml.Node | None, prefix: str = "") -> None:
    """PyYAML keeps the last of two equal keys in a mapping and drops the first without a word (a second
    ``train:`` block would silently replace the first): refuse that. Works on the composed node tree, which
    constructs no Python objects."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(path, item, prefix)
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise ConfigError(f"{path}: line {key_node.start_mark.line + 1}: key '{prefix}{key}' appears twice in "
                              "the same mapping; merge the two into one")
        seen.add(key)
        _refuse_repeated_keys(path, value_node, f"{prefix}{key}.")


def _flat_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, dotted + "."))
    return keys


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_tree(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], Sources]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{path}: 'base' chain loops ({cycle}); remove one of the 'base:' lines")
    tree = _read_yaml(path)
    base_name = tree.pop(BASE_KEY, None)
    raw: dict[str, Any] = {}
    sources: Sources = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise ConfigError(f"{path}: 'base' must be a file name, got {base_name!r}")
        try:
            base_path = resolve_config_path(base_name, relative_to=path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: base: {exc}") from None
        raw, sources = _load_tree(base_path, (*chain, resolved))
    raw = _merge(raw, tree)
    sources.update({key: str(path) for key in _flat_keys(tree)})
    return raw, sources


def parse_override(item: str) -> tuple[str, Any]:
    """``'a.b=value'`` → ``('a.b', yaml value)``."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=50")
    if not all(part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: key '{key}' has an empty part between its dots; write SECTION.KEY=VALUE, "
                          "e.g. --set train.epochs=50")
    key = ".".join(part.strip() for part in key.split("."))  # 'train. epochs' is train.epochs
    try:
        refuse_aliases(text, f"--set {key}")
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML; quote it or fix the brackets") from None
    return key, value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                raise ConfigError(f"--set {key}: '{'.'.join(parents[: i + 1])}' is not a section")
            child = node[part] = {}
        node = child
    current = node.get(leaf)
    # a section given whole (--set 'train={epochs: 5}') overrides the keys it names, as a file's section does
    node[leaf] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) else value


def load_raw_config(path_or_name: str | Path, overrides: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], Sources]:
    """Resolve the file, follow ``base:`` and apply ``--set``; returns the raw tree and sources."""
    raw, sources = _load_tree(resolve_config_path(path_or_name), ())
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(raw, key, value)
        parts = key.split(".")
        for n in range(1, len(parts)):  # sections the override brings in (train.foo of train.foo.bar) are its own
            sources.setdefault(".".join(parts[:n]), "--set")
        sources[key] = "--set"
        if isinstance(value, dict):
            sources.update({f"{key}.{sub}": "--set" for sub in _flat_keys(value)})
    return raw, sources


NAMED_KEY = re.compile(r"\b(?:data|model|train|infer)\.[a-z_]+(?:\.[a-z_]+)*")  # a dotted key inside a message


def source_of(sources: Sources, key: str) -> str:
    """The file (or ``--set``) that gave ``key`` (or its closest enclosing section) its value."""
    parts = key.split(".")
    for n in range(len(parts), -1, -1):
        hit = sources.get(".".join(parts[:n]))
        if hit is not None:
            return hit
    return "defaults"


def _section_fields(schema: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: Any = schema
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _describe(schema: type[BaseModel], error: dict[str, Any], sources: Sources) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    source = source_of(sources, key)  # a YAML key that is a number (``{1: 2}``) is recorded as its text
    if error["type"] == "extra_forbidden" and loc == ("compare",):  # a compare spec given to train or config show
        return (f"{source}: a compare spec (it has a top-level 'compare' section), not a training config — run "
                f"segkit compare --config {source}")
    if error["type"] == "extra_forbidden":
        valid = _section_fields(schema, loc[:-1])
        close = closest_match(str(loc[-1]), valid)
        nearest = ".".join([*map(str, loc[:-1]), close]) if close else ""
        hint = f"did you mean '{nearest}'?" if close else f"valid keys: {', '.join(valid)}"
        return f"{source}: unknown key '{key}': {hint}"
    message = error["msg"].removeprefix("Value error, ")
    named = [match.group(0) for match in NAMED_KEY.finditer(message)] if error["type"] == "value_error" else []
    if named:  # a check across keys (a model validator): blame where the keys it names were set, not the section
        given = [source_of(sources, name) for name in named]
        return f"{next((g for g in given if g != 'defaults'), source)}: {message}"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or error["type"] == "value_error" else f" (got {got!r})"
    return f"{source}: {key}: {message}{shown}"


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_NAMES = {"int", "float", "str", "bool", "none"}
# errors that only say the value is of another kind: in a union, another branch's error says more
_WRONG_KIND = {"literal_error", "tuple_type", "list_type", "int_type", "float_type", "string_type", "bool_type",
               "dict_type", "model_type", "int_parsing", "float_parsing", "none_required"}


def _is_branch(part: Any) -> bool:
    """Whether a location part names a branch of a union (``tuple[constrained-float, …]``, ``literal['auto']``,
    ``constrained-int``) rather than a key."""
    return isinstance(part, str) and (not _IDENTIFIER.fullmatch(part) or part in _TYPE_NAMES)


def _field_of(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(itertools.takewhile(lambda part: not _is_branch(part), loc))


def _first_problem(errors: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The first field's most telling error, with union branches left out of its location (pydantic reports one
    error per branch of a union), and how many fields have errors."""
    fields = list(dict.fromkeys(_field_of(tuple(e["loc"])) for e in errors))
    mine = [e for e in errors if _field_of(tuple(e["loc"])) == fields[0]]
    telling = [e for e in mine if e["type"] not in _WRONG_KIND] or mine
    best = dict(max(telling, key=lambda e: len(e["loc"])))  # the union branch that got furthest into the value
    siblings = [e for e in mine if tuple(e["loc"][:-1]) == tuple(best["loc"][:-1])]
    best["loc"] = tuple(part for part in best["loc"] if not _is_branch(part))
    given = best.get("input")
    if best["type"] == "missing" and best["loc"] and isinstance(best["loc"][-1], int) and isinstance(given, list):
        needed = len(given) + sum(e["type"] == "missing" for e in siblings)  # one error per missing item
        best.update(loc=best["loc"][:-1], type="value_count", msg=f"has {len(given)} value(s) but needs {needed}")
    best["msg"] = re.sub(r"Tuple should have at most (\d+) items after validation", r"should have at most \1 values",
                         best["msg"].replace("a valid tuple", "a list"))
    others = [e["msg"].removeprefix("Input should be ") for e in mine if e["type"] == "literal_error"]
    if best["type"] != "literal_error" and others:
        best["msg"] += f"; or it may be {' or '.join(others)}"
    return best, len(fields)


def to_config(schema: type[BaseModel], raw: dict[str, Any], sources: Sources) -> Any:
    """Validate ``raw`` against ``schema``; the first problem becomes a one-line ConfigError."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        error, fields = _first_problem(exc.errors())
        more = f" (and {fields - 1} more problem(s))" if fields > 1 else ""
        raise ConfigError(_describe(schema, error, sources) + more) from None
