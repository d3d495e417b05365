"""The YAML-declared albumentations pipeline: allow-listed names, clear errors, seeded, shapes kept."""

from __future__ import annotations

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


@pytest.mark.parametrize(("steps", "channels", "message"), [
    ([AlbumentationsStep(name="HorizontalFlip"), AlbumentationsStep(name="RandomGamma", p=0.3)], 1,
     r"train.albumentations\[1\] \(RandomGamma\): gives NaN or infinite values on negative intensities"),
    ([AlbumentationsStep(name="CLAHE")], 2,
     r"train.albumentations\[0\] \(CLAHE\): fails on a 2-channel float32 patch \(CLAHE transformation expects "
     r"1-channel or 3-channel images.\)"),
])
def test_a_transform_that_breaks_on_normalised_patches_is_refused(steps: list, channels: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_on_a_patch(steps, channels, (32, 32))


def test_safe_transforms_pass_the_patch_check() -> None:
    names = ("HorizontalFlip", "Affine", "ElasticTransform", "RandomBrightnessContrast", "GaussNoise", "GaussianBlur")
    check_on_a_patch([AlbumentationsStep(name=name) for name in names], 2, (32, 32))


def test_train_refuses_such_a_transform_before_run_dir_exists(tiny_dataset, tmp_path, capsys) -> None:
    from segkit.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "--config", "demo_unet_resnet34.yaml", "--set", f"data.root={tiny_dataset}",
                 "--set", f"run_dir={run_dir}", "--set", "model.spatial_dims=2", "--set", "train.patch_size=[32,32]",
                 "--set", "infer.roi_size=[32,32]",
                 "--set", "model.encoder=resnet18", "--set", "model.decoder_channels=[32,16,16,8,8]",
                 "--set", "train.albumentations=[{name: RandomGamma, p: 0.3}]"])
    assert code == 1 and not run_dir.exists()
    assert "train.albumentations[0] (RandomGamma): gives NaN" in capsys.readouterr().err
