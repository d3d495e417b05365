"""The YAML-declared albumentations pipeline: allow-listed names, clear errors, seeded, shapes kept."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from segkit.config import AlbumentationsStep
from segkit.data.albu import Albumentationsd, build_pipeline, check_on_a_patch
from segkit.errors import ConfigError


def test_unknown_name_and_bad_parameter_name_the_entry() -> None:
    with pytest.raises(ConfigError, match=r"train.albumentations\[1\]: unknown transform 'Explode'"):
        build_pipeline([AlbumentationsStep(name="HorizontalFlip"), AlbumentationsStep(name="Explode")])
    with pytest.raises(ConfigError, match=r"train.albumentations\[0\] \(RandomGamma\)"):
        build_pipeline([AlbumentationsStep(name="RandomGamma", params={"no_such_arg": 1})])


def test_flip_moves_image_and_label_together_and_is_seeded() -> None:
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    label = (torch.arange(4 * 6).reshape(1, 4, 6) % 3).to(torch.uint8)
    step = Albumentationsd("image", "label", build_pipeline([AlbumentationsStep(name="HorizontalFlip", p=1.0)]))
    out = step({"image": image, "label": label})
    torch.testing.assert_close(out["image"], image.flip(-1))
    torch.testing.assert_close(out["label"], label.flip(-1))
    noisy = [Albumentationsd("image", "label", build_pipeline([AlbumentationsStep(name="GaussNoise", p=1.0)]))
             .set_random_state(seed=5)({"image": image / 48, "label": label})["image"] for _ in range(2)]
    torch.testing.assert_close(noisy[0], noisy[1])
    assert not np.allclose(noisy[0].numpy(), (image / 48).numpy())


class _NaNTransform(A.ImageOnlyTransform):
    """Stands in for a transform whose output is not finite (none of the allowed ones does this with valid params)."""

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return img * np.nan


def test_a_transform_that_fails_on_a_normalised_patch_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train.albumentations\[0\] \(CLAHE\): fails on a 2-channel float32 patch "
                                          r"\(CLAHE transformation expects 1-channel or 3-channel images.\)"):
        check_on_a_patch([AlbumentationsStep(name="CLAHE")], 2, (32, 32))


def test_a_transform_giving_nan_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "Sharpen", _NaNTransform)
    with pytest.raises(ConfigError, match=r"train.albumentations\[1\] \(Sharpen\): gives NaN or infinite values"):
        check_on_a_patch([AlbumentationsStep(name="HorizontalFlip"), AlbumentationsStep(name="Sharpen")], 1, (32, 32))


def test_random_gamma_works_on_normalised_patches_as_nnunets_gamma_does() -> None:
    """Before the patch was mapped onto [0, 1], RandomGamma gave NaN on negative intensities and was refused."""
    check_on_a_patch([AlbumentationsStep(name="RandomGamma")], 1, (32, 32))
    image = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 32, 32)).astype(np.float32))
    label = torch.zeros((1, 32, 32), dtype=torch.uint8)
    gamma = build_pipeline([AlbumentationsStep(name="RandomGamma", p=1.0, params={"gamma_limit": [150, 150]})])
    out = Albumentationsd("image", "label", gamma)({"image": image, "label": label})["image"]
    low, high = float(image.min()), float(image.max())
    expected = low + (high - low) * ((image - low) / (high - low)) ** 1.5  # gamma 1.5 between the patch's extremes
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_safe_transforms_pass_the_patch_check() -> None:
    names = ("HorizontalFlip", "Affine", "ElasticTransform", "RandomBrightnessContrast", "GaussNoise", "GaussianBlur")
    check_on_a_patch([AlbumentationsStep(name=name) for name in names], 2, (32, 32))


def test_train_refuses_such_a_transform_before_run_dir_exists(tiny_dataset, tmp_path, capsys, monkeypatch) -> None:
    from segkit.cli import main

    monkeypatch.setattr(A, "Sharpen", _NaNTransform)
    run_dir = tmp_path / "run"
    code = main(["train", "--config", "demo_unet_resnet34.yaml", "--set", f"data.root={tiny_dataset}",
                 "--set", f"run_dir={run_dir}", "--set", "model.spatial_dims=2", "--set", "train.patch_size=[32,32]",
                 "--set", "infer.roi_size=[32,32]",
                 "--set", "model.encoder=resnet18", "--set", "model.decoder_channels=[32,16,16,8,8]",
                 "--set", "train.albumentations=[{name: Sharpen, p: 0.3}]"])
    assert code == 1 and not run_dir.exists()
    assert "train.albumentations[0] (Sharpen): gives NaN" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "params"), [("GaussianBlur", {}), ("RandomBrightnessContrast", {}), ("Sharpen", {}),
                                             ("GaussNoise", {"std_range": [0.02, 0.05]})])
def test_normalised_intensities_are_not_clipped_to_the_unit_range(name: str, params: dict) -> None:
    """albumentations clips float images to [0, 1] in these transforms: a z-scored patch (ct/mri) lost its negative
    half and everything above 1 (a blurred one came out in [0, 0.4]). Now it keeps its range and its pattern."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.sin(x / 4) * torch.cos(y / 5)
    image = torch.stack([2 * smooth + 0.5, 6 * smooth - 1])  # z-scored-like channels of different ranges
    label = torch.zeros(1, 32, 32, dtype=torch.uint8)
    step = Albumentationsd("image", "label", build_pipeline([AlbumentationsStep(name=name, p=1.0, params=params)]))
    out = step.set_random_state(seed=0)({"image": image, "label": label})["image"]
    for channel in range(2):
        assert out[channel].min() < -0.5 and out[channel].max() > 1.5, name
        assert torch.corrcoef(torch.stack([out[channel].flatten(), image[channel].flatten()]))[0, 1] > 0.9, name


def test_an_image_in_the_unit_range_goes_through_unscaled() -> None:
    """Window-normalised patches (in [0, 1]) are what albumentations expects: mapped back exactly, no rescaling."""
    image = torch.linspace(0.2, 0.7, 2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    label = torch.zeros(1, 8, 8, dtype=torch.uint8)
    step = Albumentationsd("image", "label", build_pipeline([AlbumentationsStep(name="VerticalFlip", p=1.0)]))
    torch.testing.assert_close(step({"image": image, "label": label})["image"], image.flip(-2))
