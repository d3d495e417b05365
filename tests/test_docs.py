"""The documentation tells the truth about the code: config keys and defaults, cited files and tests, CLI flags."""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from segkit.cli import build_parser
from segkit.config import Config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "CONFIG.md"
DOCS = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _default(key: str) -> Any:
    """The schema's default of a dotted key, as YAML/JSON would write it (tuples as lists, paths as strings)."""
    value: Any = Config()
    for part in key.split("."):
        value = getattr(value, part)
    return json.loads(json.dumps(value, default=str))


def _documented_default(cell: str) -> Any:
    text = cell.strip().strip("`")
    value = yaml.safe_load(text)
    try:
        return float(value) if isinstance(value, str) else value  # YAML 1.1 reads `1e-5` as a string
    except ValueError:
        return value


def _table_rows() -> dict[str, list[str]]:
    """CONFIG.md's table rows by key: [type, default, meaning]."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([\w.]+)` \| (.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


def test_every_config_key_is_documented() -> None:
    rows = _table_rows()
    missing = [key for key in _keys(Config) if key not in rows]  # a row of its own, not a mention in passing
    assert not missing, f"undocumented config keys: {missing}"


def test_config_md_documents_no_key_the_schema_lacks() -> None:
    unknown = sorted(set(_table_rows()) - set(_keys(Config)) - {"base"})
    assert not unknown, f"CONFIG.md documents keys config.py does not have: {unknown}"


def test_config_md_defaults_are_the_schemas() -> None:
    rows = _table_rows()
    wrong = {key: (rows[key][1], _default(key)) for key in _keys(Config)
             if key in rows and _documented_default(rows[key][1]) != _default(key)}
    assert not wrong, f"CONFIG.md default differs from config.py (documented, actual): {wrong}"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _names_a_test(cited: str, path: Path) -> bool:
    names = _test_names(path)
    return any(name.startswith(cited[:-1]) for name in names) if cited.endswith("…") else cited in names


def _cited_files() -> list[tuple[str, str, str | None]]:
    """(doc, path, test name or None) for every repository file a doc cites in backticks; a test name cut short
    with an ellipsis (``test_a_resume_…``) ends in ``…``."""
    cited = []
    pattern = re.compile(r"`((?:segkit|pipelines|benchmarks|tests|configs)/[\w./-]+\.(?:py|yaml|sh)"
                         r"|test_corpus\.py|test_security\.py)(?:::(\w+…?))?")
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text(encoding="utf-8")):
            path = match.group(1)
            path = f"tests/robustness/{path}" if "/" not in path else path
            cited.append((doc.name, path, match.group(2)))
    return cited


def test_files_and_tests_the_docs_cite_exist() -> None:
    cited = _cited_files()
    assert len(cited) > 50  # the pattern still finds the citations
    missing = [(doc, path) for doc, path, _ in cited if not (ROOT / path).is_file()]
    assert not missing, f"docs cite files that do not exist: {missing}"
    no_test = [(doc, f"{path}::{test}") for doc, path, test in cited if test and not _names_a_test(test, ROOT / path)]
    assert not no_test, f"docs cite tests that do not exist: {no_test}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _shown_commands() -> list[tuple[str, list[str], str]]:
    """(doc, command words, the rest of the line) for every ``segkit ...`` command the docs show; a code block's
    indented continuation lines (starting with ``[`` or ``--``) belong to the command above them."""
    shown = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            for match in re.finditer(r"(?<![\w/.-])segkit ((?:[a-z]+ ?)+)(.*)", line):
                rest, j = match.group(2), i + 1
                while j < len(lines) and re.match(r"\s+(\[|--)", lines[j]):
                    rest, j = f"{rest} {lines[j]}", j + 1
                shown.append((doc.name, match.group(1).split(), rest.split("`")[0].split("#")[0]))
    return shown


def _flag_problems(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """Flags in ``text`` that ``parser`` lacks, and ``--flag a|b`` values outside the flag's choices."""
    actions = {**parser._option_string_actions, "--debug": None}
    problems = [flag for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text) if flag not in actions]
    for flag, values in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*) \[?([\w.-]+(?:\|[\w.-]+)+)", text):
        choices = getattr(actions.get(flag), "choices", None)
        problems += [f"{flag} {value}" for value in values.split("|") if choices and value not in map(str, choices)]
    return problems


def test_every_flag_the_docs_show_exists() -> None:
    parser, checked, wrong = build_parser(), 0, []
    for doc, words, rest in _shown_commands():
        command, used = parser, []
        while words and words[0] in _subcommands(command):
            command = _subcommands(command)[words[0]]
            used.append(words.pop(0))
        if used:
            checked += 1
            wrong += [(doc, " ".join(used), problem) for problem in _flag_problems(command, " ".join(words) + rest)]
    assert checked > 50  # the commands are still found
    assert not wrong, f"docs show flags or values the command line does not take: {wrong}"


@pytest.mark.parametrize("text", ["--format msd|onnx", "--no-such-flag"])
def test_the_flag_check_catches_a_wrong_flag(text: str) -> None:
    synth = _subcommands(_subcommands(build_parser())["data"])["synth"]
    assert _flag_problems(synth, text)
