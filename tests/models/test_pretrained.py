"""Encoder weights from local files: round trips, channel adaptation, 3D inflation, strict errors, safe loading."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from segkit.errors import CheckpointError
from segkit.models.encoders.base import Encoder, EncoderArgs
from segkit.models.pretrained import load_encoder_weights
from segkit.registry import ENCODERS

FIRST_CONV = {"resnet18": "conv1.weight", "densenet121": "features.conv0.weight"}
CLASSIFIER = {"fc.weight": (1000, 512), "fc.bias": (1000,), "classifier.weight": (1000, 1024),
              "classifier.bias": (1000,)}
DEPTH_STRIDES = ((2, 2, 1),) * 5  # 3D: in-plane like the 2D default, never downsampling depth
KERNELS = {  # (key, 3D kernel depth) of a 7×7×7 stem, a 3×3×3 and a 1×1×1 convolution
    "resnet18": (("conv1.weight", 7), ("layer1.0.conv2.weight", 3), ("layer2.0.downsample.0.weight", 1)),
    "densenet121": (("features.conv0.weight", 7), ("features.denseblock1.denselayer1.conv2.weight", 3),
                    ("features.transition1.conv.weight", 1)),
}


def build(name: str, seed: int = 0, **kwargs) -> Encoder:
    torch.manual_seed(seed)
    return ENCODERS.get(name)(EncoderArgs(**kwargs))


def meta_rgb_2d(name: str) -> Encoder:
    """A 2D RGB encoder without storage, for tests that must fail before any tensor is copied."""
    with torch.device("meta"):
        return build(name, spatial_dims=2, in_channels=3)


def zeros_state(name: str) -> dict[str, torch.Tensor]:
    """A torchvision-layout state dict with the right names and shapes, cheap to make (for error tests)."""
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta_rgb_2d(name).state_dict().items()}


@cache
def torchvision_state(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision-layout ImageNet-like state dict: a 2D RGB encoder with randomised weights and norms,
    plus classifier keys that the loader must drop. Cached: tests must not modify it."""
    state = {k: v.clone() for k, v in build(name, seed, spatial_dims=2, in_channels=3).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if key.endswith(("running_var", "weight")) and value.ndim == 1:
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = torch.randn(value.shape, generator=generator) * 0.1
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1234)
    state.update({k: torch.randn(shape, generator=generator) for k, shape in CLASSIFIER.items()})
    return state


def save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k not in CLASSIFIER}


@pytest.mark.parametrize(("name", "suffix"), [("resnet18", ".pth"), ("resnet18", ".pt"), ("resnet18", ".safetensors"),
                                              ("densenet121", ".pth"), ("densenet121", ".safetensors")])
def test_round_trip_gives_identical_tensors(name: str, suffix: str, tmp_path: Path) -> None:
    state = torchvision_state(name)
    encoder = build(name, seed=5, spatial_dims=2, in_channels=3)
    assert not torch.equal(encoder.state_dict()[FIRST_CONV[name]], state[FIRST_CONV[name]])
    load_encoder_weights(encoder, save(state, tmp_path / f"weights{suffix}"))
    loaded = encoder.state_dict()
    assert loaded.keys() == encoder_keys(state).keys()
    assert all(torch.equal(loaded[k], v) for k, v in encoder_keys(state).items())


@pytest.mark.parametrize("nesting", ["state_dict", "model"])
def test_nested_training_checkpoint(nesting: str, tmp_path: Path) -> None:
    state = torchvision_state("resnet18")
    encoder = build("resnet18", spatial_dims=2, in_channels=3)
    load_encoder_weights(encoder, save({nesting: state, "epoch": 3}, tmp_path / "checkpoint.pth"))
    assert torch.equal(encoder.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


@pytest.mark.parametrize("prefix", ["module.", "model.", "model.module.", "backbone."])
def test_keys_under_a_wrappers_prefix_load(prefix: str, tmp_path: Path) -> None:
    """DDP saves ``module.*``, Lightning ``model.*``, detectors ``backbone.*``."""
    state = torchvision_state("resnet18")
    encoder = build("resnet18", spatial_dims=2, in_channels=3)
    load_encoder_weights(encoder, save({prefix + k: v for k, v in state.items()}, tmp_path / "wrapped.pth"))
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in encoder_keys(state).items())


def test_the_encoder_of_a_segkit_checkpoint_loads(tmp_path: Path) -> None:
    from segkit.config import ModelCfg
    from segkit.models import build_model

    cfg = ModelCfg(encoder="resnet18", decoder_channels=(16, 8, 8, 4, 4), norm="batch")
    torch.manual_seed(3)
    trained = build_model(cfg)
    weights = save(trained.state_dict(), tmp_path / "weights.safetensors")  # encoder.*, decoder.*, head.*, …
    torch.manual_seed(4)
    model = build_model(cfg.model_copy(update={"encoder_weights": weights}))
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in trained.encoder.state_dict().items())
    assert not torch.equal(model.head.weight, trained.head.weight)  # only the encoder is taken


def test_legacy_torchvision_densenet_names_and_missing_batch_counters(tmp_path: Path) -> None:
    """torchvision's published DenseNet files say ``norm.1``/``conv.2`` and predate ``num_batches_tracked``."""
    state = torchvision_state("densenet121")
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
    assert "features.denseblock2.denselayer3.norm.1.running_mean" in legacy
    encoder = build("densenet121", spatial_dims=2, in_channels=3)
    load_encoder_weights(encoder, save(legacy, tmp_path / "densenet121-legacy.pth"))
    loaded = encoder.state_dict()
    for key in ("features.denseblock2.denselayer3.norm1.running_mean",
                "features.denseblock4.denselayer16.conv2.weight"):
        assert torch.equal(loaded[key], state[key])


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_one_input_channel_sums_rgb(name: str, tmp_path: Path) -> None:
    state = torchvision_state(name)
    encoder = build(name, spatial_dims=2, in_channels=1)
    load_encoder_weights(encoder, save(state, tmp_path / "weights.pth"))
    rgb = state[FIRST_CONV[name]]
    torch.testing.assert_close(encoder.state_dict()[FIRST_CONV[name]], rgb.sum(dim=1, keepdim=True))


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_five_input_channels_repeat_rgb_cyclically(name: str, tmp_path: Path) -> None:
    state = torchvision_state(name)
    encoder = build(name, spatial_dims=2, in_channels=5)
    load_encoder_weights(encoder, save(state, tmp_path / "weights.safetensors"))
    rgb = state[FIRST_CONV[name]]
    expected = torch.cat([rgb, rgb[:, :2]], dim=1) * (3 / 5)  # R G B R G
    torch.testing.assert_close(encoder.state_dict()[FIRST_CONV[name]], expected)


@pytest.mark.parametrize(("name", "depth"), [("resnet18", 48), ("densenet121", 128)])
def test_inflated_3d_matches_2d_on_a_depth_constant_volume(name: str, depth: int, tmp_path: Path) -> None:
    """Kernels inflate along the last axis, (O, I, kh, kw) → (O, I, kh, kw, kd) / kd, as depth z is the last
    axis of segkit's (x, y, z) volumes; so, away from the depth borders, a volume constant along z gives the
    2D features on every slice.

    ``depth`` keeps the middle slice outside the zero padding's reach along z (half receptive field:
    resnet18 3 + 1 + 16 = 20 slices, densenet121 3 + 1 + 58 = 62 slices, as no stage strides depth).
    """
    state = torchvision_state(name)
    path = save(state, tmp_path / "weights.pth")
    encoder_2d = build(name, spatial_dims=2, in_channels=3).eval()
    encoder_3d = build(name, spatial_dims=3, in_channels=3, strides=DEPTH_STRIDES).eval()
    load_encoder_weights(encoder_2d, path)
    load_encoder_weights(encoder_3d, path)
    inflated = encoder_3d.state_dict()
    for key, kernel_depth in KERNELS[name]:
        assert inflated[key].shape == (*state[key].shape, kernel_depth)
        for k in range(kernel_depth):
            torch.testing.assert_close(inflated[key][..., k], state[key] / kernel_depth)
    torch.manual_seed(2)
    image = torch.randn(1, 3, 32, 32)
    volume = image.unsqueeze(-1).expand(-1, -1, -1, -1, depth).contiguous()
    with torch.no_grad():
        features_2d, features_3d = encoder_2d(image), encoder_3d(volume)
    assert len(features_2d) == len(features_3d) == 5
    for flat, deep in zip(features_2d, features_3d, strict=True):
        assert deep.shape == (*flat.shape, depth)
        torch.testing.assert_close(deep[..., depth // 2], flat, atol=1e-4, rtol=1e-4)


def test_instance_norm_encoder_drops_running_stats(tmp_path: Path) -> None:
    state = torchvision_state("densenet121")
    encoder = build("densenet121", spatial_dims=2, in_channels=3, norm="instance")
    load_encoder_weights(encoder, save(state, tmp_path / "weights.pth"))
    key = "features.denseblock3.denselayer7.norm2.weight"
    assert torch.equal(encoder.state_dict()[key], state[key])


def test_resnet34_file_into_resnet18_lists_unexpected_keys(tmp_path: Path) -> None:
    path = save(zeros_state("resnet34"), tmp_path / "resnet34.pth")
    with pytest.raises(CheckpointError) as caught:
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "model.encoder_weights" in message
    # resnet34 has 3 + 4 + 6 + 3 blocks vs 2 each: 8 extra basic blocks (no shortcut) of 2 convs + 2 norms × 5
    assert "96 unexpected keys (layer1.2.conv1.weight, layer1.2.bn1.weight" in message
    assert "missing" not in message


def test_densenet121_file_into_densenet169_lists_missing_keys_and_shapes(tmp_path: Path) -> None:
    path = save(zeros_state("densenet121"), tmp_path / "densenet121.safetensors")
    with pytest.raises(CheckpointError) as caught:
        load_encoder_weights(meta_rgb_2d("densenet169"), path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    # 8 + 16 extra dense layers in blocks 3 and 4: 2 convs + 2 norms × 4 besides their batch counters
    assert "240 missing keys (features.denseblock3.denselayer25.norm1.weight" in message
    assert "unexpected" not in message
    assert "shape mismatches (features.transition3.norm.weight file (1024,) vs encoder (1280,)" in message


class Payload:
    """Unpickling this object calls ``open(sentinel, "w")``, creating the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple:
        return open, (str(self.sentinel), "w")


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "payload": Payload(sentinel)}, path)
    with pytest.raises(CheckpointError, match="cannot be read") as caught:
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
    assert "\n" not in str(caught.value) and "model.encoder_weights" in str(caught.value)
    assert not sentinel.exists()
    # control: an unsafe load would have run the payload
    torch.load(path, weights_only=False)["payload"].close()
    assert sentinel.exists()


@pytest.mark.parametrize(("filename", "content", "problem"), [
    ("weights.ckpt", b"", "unsupported suffix '.ckpt'"),
    ("weights.pth", b"not a checkpoint", "cannot be read"),
    ("weights.safetensors", b"\x00garbage", "cannot be read"),
    ("absent.pth", None, "cannot be read"),
])
def test_unreadable_files_raise_one_line(filename: str, content: bytes | None, problem: str, tmp_path: Path) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
    message = str(caught.value)
    assert problem in message and str(path) in message and "model.encoder_weights" in message
    assert "\n" not in message


def test_file_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = save({"epoch": 3, "lr": 0.1}, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_encoder_weights(meta_rgb_2d("resnet18"), path)


def test_a_pickled_object_is_named_without_torchs_advice_to_unpickle_it(tmp_path: Path) -> None:
    """Before: torch's text, which advises ``weights_only=False`` (segkit never does that) and names no fix."""
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "payload": Payload(tmp_path / "never")}, path)
    with pytest.raises(CheckpointError) as caught:
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and str(path) in message
    assert "it pickles the Python object io.open" in message
    assert "torch.save(model.state_dict(), path)" in message and "weights_only` set to `False`" not in message


@pytest.mark.parametrize(("filename", "content", "problem"), [
    ("weights.pth", b"not a checkpoint", "it is not a PyTorch weights file (Unsupported operand"),
    ("absent.pth", None, "there is no such file (check the path)"),
])
def test_unreadable_files_say_why_in_segkits_terms(filename: str, content: bytes | None, problem: str,
                                                   tmp_path: Path) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
    assert problem in str(caught.value) and "weights_only` set to `False`" not in str(caught.value)


def test_a_file_of_another_variant_says_what_to_use(tmp_path: Path) -> None:
    path = save(zeros_state("resnet34"), tmp_path / "resnet34.pth")
    with pytest.raises(CheckpointError, match=r"\(use weights of the same variant as model.encoder, e.g. resnet34 "
                                              r"weights for encoder resnet34\)$"):
        load_encoder_weights(meta_rgb_2d("resnet18"), path)
