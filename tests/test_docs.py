"""The documentation tells the truth about the code: config keys and defaults, cited files and tests, CLI flags."""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from segkit.cli import build_parser, main
from segkit.compare.spec import CompareRequest, resolve_comparison
from segkit.config import Config, load_config
from segkit.errors import ConfigError
from segkit.registry import ENCODERS, FUSIONS, LOSSES, UPSAMPLERS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "CONFIG.md"
README = ROOT / "README.md"
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
    actions = parser._option_string_actions
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


def test_debug_works_after_the_subcommand_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # README: "add --debug for a traceback"; the one-line error says "rerun with --debug": users append it to the
    # command they ran, which argparse refused (exit 2) while --debug was only an option before the subcommand
    assert main(["config", "show", "--config", str(tmp_path / "nope.yaml"), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert main(["config", "show", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--debug", "config", "show", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(("vary", "out"), [
    (("model.upsample=transposed,nearest",), "runs/compare-upsample"),
    (("model.upsample=transposed,nearest", "model.fusion=concat,add"), "runs/compare-upsample-fusion"),
    (("train.memory_format=auto,contiguous", "infer.memory_format=auto,contiguous"),
     "runs/compare-train.memory_format-infer.memory_format"),
])
def test_compare_without_out_has_a_default_folder(vary: tuple[str, ...], out: str) -> None:
    # README shows `segkit compare --config unet_resnet34.yaml --vary ... [--out DIR]`: --out is optional with a plain
    # training config too (it was refused: "--out DIR is required"), like train's default run_dir
    assert resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", vary=vary)).out == Path(out)
    spec = resolve_comparison(CompareRequest("compare/upsampling_demo.yaml"))
    assert spec.out == Path("runs/compare-demo")  # the spec's own out still wins


def _packaged_configs() -> list[str]:
    """Every packaged config by the bare name ``--config`` takes (``unet_resnet34``, ``compare/upsampling``)."""
    folder = ROOT / "configs"
    return sorted(str(path.relative_to(folder).with_suffix("")) for path in folder.rglob("*.yaml"))


def _names_in_backticks(text: str) -> set[str]:
    return {name.removesuffix(".yaml") for name in re.findall(r"`([\w/.-]+)`", text)}


def test_every_packaged_config_is_listed_and_loads() -> None:
    configs = _packaged_configs()
    assert "unet_resnet34" in configs and "compare/upsampling" in configs
    listed = {doc.name: _names_in_backticks(doc.read_text(encoding="utf-8"))
              for doc in (README, DOC, ROOT / "docs" / "COMPARE.md")}
    for name in configs:
        if name.startswith("compare/"):  # specs: listed in COMPARE.md, loaded as segkit compare loads them
            assert name in listed["COMPARE.md"], f"docs/COMPARE.md does not list the packaged spec {name}"
            assert resolve_comparison(CompareRequest(name)).vary
        else:
            unlisted = [doc for doc in ("README.md", "CONFIG.md") if name not in listed[doc]]
            assert not unlisted, f"packaged config {name} is not listed in {unlisted}"
            load_config(name)


def _yaml_blocks() -> list[tuple[str, str]]:
    return [(doc.name, block) for doc in DOCS
            for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)]


def test_the_yaml_examples_in_the_docs_load(tmp_path: Path) -> None:
    blocks = _yaml_blocks()
    assert {"README.md", "COMPARE.md"} <= {doc for doc, _ in blocks}
    for index, (doc, block) in enumerate(blocks):
        path = tmp_path / f"example{index}.yaml"  # base: and compare.config resolve among the packaged configs
        path.write_text(block, encoding="utf-8")
        if "compare" in yaml.safe_load(block):
            assert resolve_comparison(CompareRequest(str(path))).vary, doc
        else:
            load_config(path)


def _literal_values(annotation: Any) -> set[str] | None:
    """The allowed values of a key whose type is only a choice of literals (``Literal['msd', ...]``), as text."""
    while get_origin(annotation) is not None and get_origin(annotation) not in (Literal, Union):
        if len(get_args(annotation)) and get_origin(annotation).__name__ == "Annotated":
            annotation = get_args(annotation)[0]
        else:
            break
    if get_origin(annotation) is Literal:
        return {str(value) for value in get_args(annotation)}
    return None


def _field(key: str) -> Any:
    model: Any = Config
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[name]


def test_config_md_lists_exactly_the_allowed_values_of_each_choice() -> None:
    rows, checked, wrong = _table_rows(), 0, {}
    for key in _keys(Config):
        allowed = _literal_values(_field(key).annotation)
        if allowed is None:
            continue
        checked += 1
        documented = set(re.findall(r"`([^`]+)`", rows[key][0]))
        if documented != allowed:
            wrong[key] = (sorted(documented), sorted(allowed))
    assert checked >= 15  # data.format, model.norm, train.precision, ...
    assert not wrong, f"CONFIG.md's type column differs from the schema's choices (documented, allowed): {wrong}"


def test_config_md_names_exactly_the_registered_components() -> None:
    rows = _table_rows()
    encoders = rows["model.encoder"][2].split(" (")[0].split(", ")
    assert sorted(encoders) == sorted(ENCODERS.names()), "model.encoder's row does not list the registered encoders"
    for key, registry in (("model.upsample", UPSAMPLERS), ("model.fusion", FUSIONS), ("train.loss", LOSSES)):
        named = set(re.findall(r"`(\w+)`", rows[key][2]))
        assert named == set(registry.names()), f"{key}'s row names {sorted(named)}, registered: {registry.names()}"


def _albumentations_allowed() -> list[str]:
    """``segkit.data.albu.ALLOWED``, read from the source: importing albumentations takes seconds."""
    tree = ast.parse((ROOT / "segkit" / "data" / "albu.py").read_text(encoding="utf-8"))
    value = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(target, "id", "") == "ALLOWED" for target in node.targets))
    return list(ast.literal_eval(value))


def test_the_albumentations_allow_list_is_documented_as_it_is() -> None:
    allowed = _albumentations_allowed()
    listed = re.search(r"Allowed names: ([\w, ]+);", _table_rows()["train.albumentations"][2]).group(1)
    assert listed.split(", ") == allowed
    security = (ROOT / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    assert f"allow-list of {len(allowed)} transforms" in security


PYTHON_NAMES = {"model.output_reductions", "model.onnx"}  # a built UNet's attribute, a file name: not config keys


def test_every_config_key_the_docs_name_exists() -> None:
    keys = set(_keys(Config))
    sections = {key.rsplit(".", 1)[0] for key in keys if "." in key}
    unknown, named = [], 0
    for doc in DOCS:
        if doc.name == "RELIABILITY.md":  # quotes the error messages of misspelt keys on purpose
            continue
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"(?<![\w./-])((?:data|model|train|infer)(?:\.[a-z_][a-z0-9_]*)+)(?![\w(])", text):
            named += 1
            if match.group(1) not in keys | sections | PYTHON_NAMES:
                unknown.append((doc.name, match.group(1)))
    assert named > 200  # the pattern still finds them
    assert not unknown, f"docs name config keys the schema does not have: {unknown}"


def test_defaults_in_every_key_table_are_the_schemas() -> None:
    """Tables headed ``| key | … default …`` in any doc (CONFIG.md, TRAINING.md's speed settings) state defaults."""
    keys, wrong, checked = set(_keys(Config)), [], 0
    for doc in DOCS:
        column = None
        for line in doc.read_text(encoding="utf-8").splitlines():
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not cells:
                column = None
            elif cells[0] == "key" and "default" in cells:
                column = cells.index("default")
            elif column is not None and (key := cells[0].strip("`")) in keys:
                checked += 1
                if _documented_default(cells[column]) != _default(key):
                    wrong.append((doc.name, key, cells[column], _default(key)))
    assert checked > len(keys)  # CONFIG.md's rows and at least one other table
    assert not wrong, f"documented defaults differ from config.py (doc, key, documented, actual): {wrong}"


def _script_flags(script: Path) -> set[str]:
    """The option strings a benchmark script's argparse parser defines (read from its source, not run)."""
    flags = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags |= {arg.value for arg in node.args
                      if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")}
    return flags


def test_benchmark_commands_in_the_docs_use_flags_the_scripts_have() -> None:
    checked, wrong = 0, []
    for doc in [*DOCS, ROOT / "Makefile"]:
        for match in re.finditer(r"benchmarks/(\w+\.py)([^\n`#]*)", doc.read_text(encoding="utf-8")):
            flags = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", match.group(2)))
            if flags:
                checked += 1
                wrong += [(doc.name, match.group(1), flag) for flag in flags - _script_flags(ROOT / "benchmarks" /
                                                                                                match.group(1))]
    assert checked >= 15
    assert not wrong, f"docs run benchmark scripts with flags they do not define: {wrong}"


def test_make_targets_the_docs_name_exist() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    named = {(doc.name, target) for doc in DOCS
             for target in re.findall(r"(?:`|^\s*)make ([a-z][\w-]*)", doc.read_text(encoding="utf-8"), flags=re.M)}
    assert len(named) > 5
    missing = sorted(item for item in named if item[1] not in targets)
    assert not missing, f"docs name make targets the Makefile lacks: {missing}"


# torchvision's published ImageNet parameter counts, and its classifier (features × 1000 + 1000) that segkit leaves out
TORCHVISION_DENSENETS = {"densenet121": (7_978_856, 1024), "densenet169": (14_149_480, 1664),
                         "densenet201": (20_013_928, 1920), "densenet264": (33_337_704, 2688)}  # 264: MODELS.md


@pytest.mark.parametrize("name", sorted(TORCHVISION_DENSENETS))
def test_densenet_parameter_counts_are_torchvisions(name: str) -> None:
    # MODELS.md: in 2D with three input channels every encoder's count is torchvision's without the classifier
    import torch

    from segkit.models.encoders.base import EncoderArgs

    published, features = TORCHVISION_DENSENETS[name]
    with torch.device("meta"):
        encoder = ENCODERS.get(name)(EncoderArgs(spatial_dims=2, in_channels=3, norm="batch"))
    assert sum(p.numel() for p in encoder.parameters()) == published - (features * 1000 + 1000)


def _leaf_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    subcommands = _subcommands(parser)
    if not subcommands:
        return [(" ".join(("segkit", *words)), parser)]
    return [leaf for name, sub in subcommands.items() for leaf in _leaf_commands(sub, (*words, name))]


def test_readme_command_line_shows_every_command_and_flag() -> None:
    """The reverse of the flag check: README's command-line block names every subcommand and each of its options."""
    block = README.read_text(encoding="utf-8").split("## The command line", 1)[1].split("```text", 1)[1]
    block = block.split("```", 1)[0]
    missing = []
    for command, parser in _leaf_commands(build_parser()):
        shown = "\n".join(re.findall(rf"^{command}\b.*(?:\n(?!segkit ).*)*", block, flags=re.M))
        flags = {option for action in parser._actions if action.help != argparse.SUPPRESS
                 for option in action.option_strings if option.startswith("--")} - {"--help", "--debug"}
        missing += [command] if not shown else [f"{command} {flag}" for flag in sorted(flags)
                                                 if not re.search(rf"{flag}(?![\w-])", shown)]
    assert not missing, f"README's command line does not show: {missing}"


def test_gpu_session_stages_named_in_the_docs_and_makefile_exist() -> None:
    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text(encoding="utf-8")
    stages = set(re.findall(r"^\s+([a-z][\w-]*)\)", script, flags=re.M))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    named = re.search(r"^GPU_STAGES \?= (.*)$", makefile, flags=re.M).group(1).split()
    for doc in DOCS:
        if doc.name == "RELIABILITY.md":  # quotes a misspelt stage on purpose
            continue
        for match in re.finditer(r"gpu_session\.sh ([a-z][\w -]*)", doc.read_text(encoding="utf-8")):
            named += match.group(1).split()
    assert len(named) > 5 and {"predict", "tests"} <= stages
    assert not set(named) - stages, f"stages benchmarks/gpu_session.sh does not run: {sorted(set(named) - stages)}"


@pytest.mark.parametrize("override", ["seed=4", "run_dir=elsewhere"])
def test_compare_refuses_to_fix_the_keys_it_sets_itself(override: str) -> None:
    # COMPARE.md: "`seed` and `run_dir` are set by the comparison itself"; `--set seed=4` was accepted, ignored by
    # every run (seeds 0..N-1), and listed under the report's "Fixed overrides" as if the runs had used it
    request = CompareRequest("demo_unet_resnet34.yaml", vary=("model.upsample=transposed,nearest",),
                             overrides=(override,))
    with pytest.raises(ConfigError, match=f"--set {override}: the comparison sets"):
        resolve_comparison(request)
