"""Config loading: base chains, --set typing, and errors that name key, file and nearest key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segkit.cli import build_parser
from segkit.config import load_config
from segkit.errors import ConfigError
from tests.cli_run import run_cli
from tests.conftest import write_yaml


def test_packaged_recipe_loads_by_bare_name() -> None:
    cfg = load_config("unet_resnet34.yaml")
    assert cfg.model.encoder == "resnet34"
    assert cfg.train.patch_size == (128, 128, 128)
    assert cfg.train.batch_size == 2


def test_a_packaged_name_may_leave_out_yaml() -> None:
    assert load_config("unet_resnet34") == load_config("unet_resnet34.yaml")


def test_demo_config_overrides_its_base() -> None:
    base, demo = load_config("unet_resnet34.yaml"), load_config("demo_unet_resnet34.yaml")
    assert demo.train.patch_size == (64, 64, 32)
    assert demo.train.loss == base.train.loss  # inherited
    assert demo.data.spacing == base.data.spacing


def test_set_values_are_read_as_yaml_and_typed_by_the_schema() -> None:
    cfg = load_config("unet_resnet34.yaml", ["train.patch_size=[96,96,64]", "train.lr=3e-4", "seed=5"])
    assert cfg.train.patch_size == (96, 96, 64)
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.seed == 5


def test_unknown_key_names_file_key_and_nearest_valid_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml", {"base": "unet_resnet34.yaml", "train": {"patch_sise": [64, 64, 64]}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "train.patch_sise" in message and "train.patch_size" in message


def test_unknown_key_from_set_names_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set: unknown key 'model.encodr'.*model.encoder"):
        load_config("unet_resnet34.yaml", ["model.encodr=resnet18"])


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml", {"train": {"epochs": "many"}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "train.epochs" in str(info.value) and "many" in str(info.value) and str(path) in str(info.value)


def test_a_check_across_keys_blames_where_the_keys_were_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("unet_resnet34.yaml", ["train.patch_size=[64,64]"])
    assert str(info.value) == "--set: train.patch_size has 2 values but model.spatial_dims is 3"
    path = write_yaml(tmp_path / "w.yaml", {"base": "demo_unet_resnet34.yaml", "data": {"window": [300, -200]}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: data.window must be [lower, upper] with lower < upper"


@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_patch_size_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"train.patch_size.1"):
        load_config("unet_resnet34.yaml", [f"train.patch_size=[64,{value},64]"])


def test_missing_base_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "child.yaml", {"base": "no_such_base.yaml"})
    with pytest.raises(ConfigError, match=r"child.yaml: base: config 'no_such_base.yaml' not found"):
        load_config(path)


def test_base_cycle_is_detected(tmp_path: Path) -> None:
    write_yaml(tmp_path / "a.yaml", {"base": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="'base' chain loops"):
        load_config(tmp_path / "a.yaml")


def test_base_resolves_next_to_the_including_file(tmp_path: Path) -> None:
    write_yaml(tmp_path / "parent.yaml", {"seed": 11, "train": {"epochs": 3}})
    child = write_yaml(tmp_path / "child.yaml", {"base": "parent.yaml", "train": {"steps_per_epoch": 7}})
    cfg = load_config(child)
    assert (cfg.seed, cfg.train.epochs, cfg.train.steps_per_epoch) == (11, 3, 7)


def test_python_tags_are_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.yaml"
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {sentinel}']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    assert not sentinel.exists()


def test_unknown_encoder_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"model.encoder: unknown encoder 'resnet35': did you mean 'resnet34'"):
        load_config("unet_resnet34.yaml", ["model.encoder=resnet35"])


def test_unknown_config_name_lists_packaged_configs() -> None:
    with pytest.raises(ConfigError, match=r"config 'nope.yaml' not found.*unet_resnet34.yaml"):
        load_config("nope.yaml")


def test_bare_name_resolves_from_another_working_directory(tmp_path: Path) -> None:
    result = run_cli("config", "show", "--config", "unet_resnet34.yaml", "--set", "train.epochs=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["model"]["encoder"] == "resnet34" and shown["train"]["epochs"] == 3


@pytest.mark.parametrize(("override", "message"), [
    ("model.decoder_channels=[64,32]", "model.decoder_channels: encoder 'resnet34' has 5 stages, so give 5 values"),
    ("model.strides=[2,2]", "model.strides:"),
])
def test_config_show_refuses_a_model_train_could_not_build(override: str, message: str, tmp_path: Path) -> None:
    result = run_cli("config", "show", "--config", "unet_resnet34", "--set", override, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_config_error_via_cli_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "segkit", "config", "show", "--config", "unet_resnet34.yaml",
                             "--set", "train.epoch=3"], cwd=tmp_path, capture_output=True, encoding="utf-8",
                            env={**os.environ, "COLUMNS": "300"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.epochs" in lines[0]


def test_set_takes_several_overrides_at_once_and_repeatedly() -> None:
    args = build_parser().parse_args(["config", "show", "--config", "demo_unet_resnet34.yaml", "--set",
                                      "train.epochs=3", "train.lr=0.1", "--set", "seed=4"])
    assert args.overrides == ["train.epochs=3", "train.lr=0.1", "seed=4"]
    cfg = load_config("demo_unet_resnet34.yaml", args.overrides)
    assert (cfg.train.epochs, cfg.train.lr, cfg.seed) == (3, 0.1, 4)


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=.inf", "train.lr: Input should be a finite number (got inf)"),
    ("data.window=[-.inf, 100]", "data.window.0: Input should be a finite number (got -inf)"),
    ("train.weight_decay=.nan", "train.weight_decay: Input should be a finite number (got nan)"),
    ("seed=-1", "seed: Input should be greater than or equal to 0 (got -1)"),
    ("seed=4294967296", "seed: Input should be less than 4294967296"),
    ("train.patch_size=[100000,100000,1000]", "train.patch_size [100000, 100000, 1000] is over the limit of 2**31 "
                                              "voxels or 10000 per axis"),
    ("infer.roi_size=[20000,8,8]", "infer.roi_size [20000, 8, 8] is over the limit"),
    ("train.albumentations=[{name: HorizontalFlip}]", "train.albumentations is for 2D models"),
    ("train={patch_size: [64, 32, 32], augment: {rot90: 0.5}}", "train.augment.rot90 turns the patch's first two "
                                                               "axes, which differ in train.patch_size (64 and 32)"),
    ("model.num_classes=300", "model.num_classes: Input should be less than or equal to 256 (got 300)"),
    ("train.epochs=true", "train.epochs: must be a number, not true/false"),
    ("train.lr=yes", "train.lr: must be a number, not true/false"),
    ("data.slice_axis=true", "data.slice_axis: must be a number, not true/false"),
    ("infer.tta_axes=[0, false]", "infer.tta_axes.1: must be a number, not true/false"),
    ("train.device=gpu", "train.device: must be auto, cpu, cuda or cuda:N, not 'gpu'"),
    ("train.device=cuda:x", "train.device: must be auto, cpu, cuda or cuda:N, not 'cuda:x'"),
    ("infer.tta_axes=[0, 0]", "infer.tta_axes: lists an axis twice ([0, 0]); give each axis once, e.g. [0, 1, 2]"),
])
def test_values_no_run_can_use_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("demo_unet_resnet34.yaml", [override])
    assert str(error.value).startswith("--set: ") and message in str(error.value)


def test_elastic_augmentation_of_a_2d_model_is_refused_naming_the_2d_way() -> None:
    """Only the 3D chain has an elastic transform: a 2D model's setting would be ignored without a word."""
    planar = ["model.spatial_dims=2", "train.patch_size=[64,64]", "infer.roi_size=[64,64]"]
    with pytest.raises(ConfigError, match=r"^--set: train.augment.elastic is for 3D models; for 2D models use "
                                          r"train.albumentations, e.g. \[\{name: ElasticTransform, p: 0.2\}\]"):
        load_config("demo_unet_resnet34.yaml", [*planar, "train.augment.elastic=0.2"])
    assert load_config("demo_unet_resnet34.yaml", ["train.augment.elastic=0.2"]).train.augment.elastic == 0.2


def test_the_largest_seed_and_a_2d_albumentations_pipeline_are_accepted() -> None:
    assert load_config("demo_unet_resnet34.yaml", ["seed=4294967295"]).seed == 2**32 - 1
    cfg = load_config("demo_unet_resnet34.yaml", ["model.spatial_dims=2", "train.patch_size=[64,64]",
                                                  "infer.roi_size=[64,64]", "train.albumentations=[{name: CLAHE}]"])
    assert cfg.train.albumentations[0].name == "CLAHE"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:3"])
def test_train_device_takes_the_documented_names(device: str) -> None:
    assert load_config("demo_unet_resnet34.yaml", [f"train.device={device}"]).train.device == device


def test_a_section_given_whole_in_set_overrides_only_the_keys_it_names() -> None:
    demo = load_config("demo_unet_resnet34.yaml")
    cfg = load_config("demo_unet_resnet34.yaml", ["train={epochs: 3, augment: {flip: 0.1}}"])
    assert cfg.train.epochs == 3 and cfg.train.augment.flip == 0.1
    assert cfg.train.patch_size == demo.train.patch_size and cfg.train.lr == demo.train.lr  # kept from the file
    assert cfg.train.augment.affine == demo.train.augment.affine == 0.0


def test_a_binary_file_as_config_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xd0\xfe\x80")
    with pytest.raises(ConfigError, match=r"model.pt: not a text file \(byte 10 is not UTF-8\); a config is a YAML"):
        load_config(binary)


@pytest.mark.parametrize(("override", "message"), [
    ("data.spacing=[1,1]", "data.spacing: has 2 value(s) but needs 3; or it may be 'auto' (got [1, 1])"),
    ("data.spacing=[1,1,1,1]", "data.spacing: should have at most 3 values, not 4; or it may be 'auto' "
                               "(got [1, 1, 1, 1])"),
    ("data.spacing=x", "data.spacing: Input should be a list; or it may be 'auto' (got 'x')"),
    ("data.spacing=[0,1,1]", "data.spacing.0: Input should be greater than 0; or it may be 'auto' (got 0)"),
    ("model.strides=[[2,0],2,2,2,2]", "model.strides.0.1: Input should be greater than 0 (got 0)"),
    ("data.window=[1]", "data.window: has 1 value(s) but needs 2 (got [1])"),
    ("data.ct_stats=[1,2]", "data.ct_stats: has 2 value(s) but needs 4 (got [1, 2])"),
    ("data.ct_stats=[[1,2,3,4],[1,2,3]]", "data.ct_stats.1: has 3 value(s) but needs 4 (got [1, 2, 3])"),
])
def test_errors_in_a_union_name_the_key_without_the_schemas_type_names(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("demo_unet_resnet34.yaml", [override])
    assert str(error.value) == f"--set: {message}"


def test_yaml_aliases_are_refused_before_they_can_expand(tmp_path: Path) -> None:
    """Nine nested aliases of ten items: a few hundred bytes that expand to 10⁹ values ("billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bomb.yaml: line 2: YAML alias \*a0; segkit configs take no anchors"):
        load_config(bomb)
    with pytest.raises(ConfigError, match=r"--set train.patch_size: line 1: YAML alias \*p"):
        load_config("demo_unet_resnet34.yaml", ["train.patch_size=[&p 64, *p, 32]"])
