"""The models as a Python user meets them: the MODELS.md snippet, one-line input errors, tracing, switches."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

from segkit.config import Config, ModelCfg
from segkit.models import build_model, check_model_config

MODELS_MD = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"
TINY_DECODER = (16, 8, 8, 4, 4)


def small_2d(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelCfg(spatial_dims=2, encoder="resnet18", decoder_channels=TINY_DECODER, **options))


def test_the_from_python_snippet_of_models_md_runs_as_written() -> None:
    section = MODELS_MD.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(MODELS_MD), "exec"), namespace)
    assert namespace["prediction"].shape == (1, 1, 48, 40, 24)
    assert namespace["model"].num_classes == 3 and namespace["model"].in_channels == 1


def test_an_input_with_the_wrong_channel_count_names_in_channels() -> None:
    """Before: torch's conv error, quoting the padded shape the user never made."""
    model = small_2d(in_channels=2).eval()
    with pytest.raises(ValueError) as caught:
        model(torch.randn(1, 3, 37, 45))
    message = str(caught.value)
    assert "\n" not in message
    assert "in_channels=2" in message and "has 3 channels" in message and "(1, 3, 37, 45)" in message


@pytest.mark.parametrize(("value", "kind"), [(torch.zeros(1, 1, 32, 32, dtype=torch.long), "torch.int64 tensor"),
                                             (torch.zeros(1, 1, 32, 32).numpy(), "ndarray")])
def test_a_non_floating_point_input_is_a_type_error(value: object, kind: str) -> None:
    with pytest.raises(TypeError, match=f"floating-point torch.Tensor .*; got a {kind}$"):
        small_2d().eval()(value)


def test_an_empty_spatial_axis_is_named() -> None:
    with pytest.raises(ValueError, match=r"every spatial axis needs at least 1 voxel; .*\(1, 1, 0, 32\)"):
        small_2d().eval()(torch.randn(1, 1, 0, 32))


def test_a_trace_on_a_multiple_of_the_divisor_serves_every_size() -> None:
    """Before: the padding was skipped while tracing a 64×64 example, so the graph failed on 37×45."""
    model = small_2d().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notice
        traced = torch.jit.trace(model, torch.randn(1, 1, 64, 64), check_trace=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for size in [(37, 45), (20, 20)]:
            image = torch.randn(1, 1, *size)
            torch.testing.assert_close(traced(image), model(image))


def test_switching_deep_supervision_on_after_building_trains_the_auxiliary_heads() -> None:
    """Before: the heads kept ``requires_grad=False`` from construction, so they silently never learned."""
    model = small_2d()
    model.deep_supervision = True
    outputs = model(torch.randn(2, 1, 64, 64))
    assert len(outputs) == 5
    sum(o.square().mean() for o in outputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_heads.parameters())
    model.deep_supervision = False
    assert not any(p.requires_grad for p in model.aux_heads.parameters())
    assert isinstance(model(torch.randn(2, 1, 64, 64)), torch.Tensor)


@pytest.mark.parametrize("function", [build_model, check_model_config])
def test_the_whole_config_or_a_dict_is_a_type_error_with_the_fix(function) -> None:
    """Before: ``AttributeError: 'Config' object has no attribute 'encoder'``."""
    with pytest.raises(TypeError, match=rf"^{function.__name__} takes a segkit.config.ModelCfg, got a Config: pass "
                                        rf"its model section, {function.__name__}\(config.model\)$"):
        function(Config())
    with pytest.raises(TypeError, match=r"got a dict: make one with ModelCfg\(\*\*options\)"):
        function({"encoder": "resnet18"})
