"""The YAML-declared albumentations pipeline: allow-listed names, clear errors, seeded, shapes kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.config import AlbumentationsStep
from segkit.data.albu import Albumentationsd, build_pipeline
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
