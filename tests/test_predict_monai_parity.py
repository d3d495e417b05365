"""segkit predict against MONAI's standard pipeline as the oracle (LoadImaged → EnsureChannelFirstd → Orientationd →
Spacingd → ScaleIntensityRanged → sliding_window_inference → Invertd → AsDiscreted(argmax)), on inputs whose
geometry stresses the way back to the input grid: oblique, z-first storage, thick slices, an image smaller than
the window, a 2D model over slices; and an ensemble of two checkpoints with mirroring TTA. The same weights on both
sides; the label maps, probabilities and manifest volumes are read back from the written files."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import monai.transforms as mt
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from segkit.pipelines.predict import PredictOptions, run_prediction

from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.engine.checkpoint import Snapshot, save_checkpoint
from segkit.engine.metrics import dice_per_class
from segkit.inference.manifest import read_manifest
from segkit.inference.slicewise import as_volume_model
from segkit.models import build_model

CLASSES = 3


def _rotation(axis: int, degrees: float) -> np.ndarray:
    turn, (i, j) = np.radians(degrees), [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = np.cos(turn), -np.sin(turn), np.sin(turn), np.cos(turn)
    return matrix


def _affine(linear: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, (-20.0, 15.0, -40.0)
    return affine


GEOMETRIES = {  # name: (stored shape, voxel-to-RAS linear part)
    "oblique_lps": ((44, 40, 14), _rotation(2, 25) @ _rotation(0, 12) @ np.diag([-0.8, -0.8, 2.5])),
    "z_first": ((14, 44, 40), np.array([[0, 0.8, 0], [0, 0, -0.8], [2.5, 0, 0]])),
    "thick_slices_odd": ((37, 41, 7), np.diag([0.7, -0.7, 5.0])),
    "smaller_than_window": ((29, 27, 5), np.diag([1.0, 1.0, 2.0])),
}


def _phantom(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Air, a noisy body ellipsoid and brighter blobs (int16 HU)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) / (n / 2) for n in shape], indexing="ij")
    volume = np.where(x**2 / 0.8 + y**2 / 0.6 + z**2 / 0.9 < 1, 40.0, -1000.0)
    for centre in rng.uniform(-0.4, 0.4, (4, 3)):
        volume[((x - centre[0])**2 + (y - centre[1])**2 + (z - centre[2])**2 < 0.06) & (volume > 0)] = 200.0
    return (volume + rng.normal(0, 20, shape)).astype(np.int16)


def _save(volume: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    image = nib.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path


def _config(slice_wise: bool) -> Config:
    patch = (32, 32) if slice_wise else (32, 32, 16)
    return Config(data=DataCfg(spacing=(1.5, 1.5, 2.0) if slice_wise else (1.5, 1.5, 1.5), orientation="RAS"),
                  model=ModelCfg(spatial_dims=2 if slice_wise else 3, encoder="resnet18", num_classes=CLASSES,
                                 decoder_channels=(16, 16, 8, 8, 8), norm="batch"),
                  train=TrainCfg(patch_size=patch), infer=InferCfg(roi_size=patch, sw_batch_size=2))


def _monai_preprocessing(cfg: Config) -> mt.Compose:
    low, high = cfg.data.window
    return mt.Compose([mt.LoadImaged("image"), mt.EnsureChannelFirstd("image"),
                       mt.Orientationd("image", axcodes=cfg.data.orientation),
                       mt.Spacingd("image", pixdim=cfg.data.spacing, mode="bilinear"),
                       mt.ScaleIntensityRanged("image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
                       mt.EnsureTyped("image", dtype=torch.float32)])


@torch.no_grad()
def _balance_head(model: torch.nn.Module, cfg: Config, sample: Path) -> None:
    """Batch-norm statistics from one pass, then the head scaled and shifted so that each class wins about a third
    of the voxels (a random network's logits would otherwise give one class everywhere)."""
    volume_model = as_volume_model(model, cfg)
    image = _monai_preprocessing(cfg)({"image": str(sample)})["image"].as_tensor()[None]
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None
    window = sliding_window_inference(image, cfg.on_volume(cfg.roi_size), 4, volume_model.train())
    logits = window[0].flatten(1).double().numpy()
    mean, std = logits.mean(1), logits.std(1) + 1e-12
    standard = (logits - mean[:, None]) / std[:, None]
    shift = np.zeros(CLASSES)
    for _ in range(3):
        for k in range(CLASSES):
            others = np.delete(standard + shift[:, None], k, axis=0).max(0)
            shift[k] = -np.quantile(standard[k] - others, 1 - 1 / CLASSES)
    model.head.weight /= torch.as_tensor(std, dtype=torch.float32).view(-1, *[1] * (model.head.weight.ndim - 1))
    model.head.bias.copy_(torch.as_tensor((model.head.bias.double().numpy() - mean) / std + shift))
    model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["3d", "2d_slice_wise"])
def model_and_checkpoint(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, torch.nn.Module, Path]:
    cfg = _config(slice_wise=request.param)
    root = tmp_path_factory.mktemp("parity")
    sample = _save(_phantom((44, 40, 14), 0), _affine(np.diag([0.8, 0.8, 2.5])), root / "sample.nii.gz")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    _balance_head(model, cfg, sample)
    return cfg, model, save_checkpoint(root / "run", "best", cfg, Snapshot.of(model, {"global_step": 1}))


@torch.no_grad()
def _monai_pipeline(cfg: Config, model: torch.nn.Module, path: Path, mirror_axes: tuple[int, ...] = ()
                    ) -> tuple[np.ndarray, np.ndarray]:
    """MONAI's label map and softmax on the input grid; with ``mirror_axes``, the logits averaged over every
    combination of flips of those axes (nnU-Net's mirroring)."""
    preprocessing = _monai_preprocessing(cfg)
    data = preprocessing({"image": str(path)})
    flips = [[2 + a for a in combo] for n in range(len(mirror_axes) + 1) for combo in combinations(mirror_axes, n)]
    logits = sum(_flipped(sliding_window_inference(_flipped(data["image"][None], dims), cfg.on_volume(cfg.roi_size),
                                                   2, as_volume_model(model, cfg).eval(), overlap=0.5,
                                                   mode="gaussian"), dims) for dims in flips) / len(flips)
    data["pred"] = logits[0]
    inverted = mt.Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(data)["pred"]
    probabilities = torch.softmax(inverted.as_tensor().float(), 0).numpy()
    return probabilities.argmax(0), probabilities


class _Mean(torch.nn.Module):
    """The members' mean logits (nnU-Net's ensembling of folds)."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(member(x) for member in self.members) / len(self.members)


def _flipped(volume: torch.Tensor, dims: list[int]) -> torch.Tensor:
    return torch.flip(volume, dims) if dims else volume


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_label_maps_probabilities_and_volumes_equal_monais_pipeline(model_and_checkpoint, geometry: str,
                                                                     tmp_path: Path) -> None:
    cfg, model, checkpoint = model_and_checkpoint
    shape, linear = GEOMETRIES[geometry]
    source = _save(_phantom(shape, 1), _affine(linear), tmp_path / f"{geometry}.nii.gz")
    out = tmp_path / "preds"
    (result,) = run_prediction(checkpoint, [str(source)], out, PredictOptions(device="cpu", probabilities=True))
    assert result.status == "written", result.message
    written = nib.load(str(result.output))
    labels = np.asarray(written.dataobj).astype(np.int64)
    expected_labels, expected_probabilities = _monai_pipeline(cfg, model, source)
    assert labels.shape == shape and np.allclose(written.affine, _affine(linear), atol=1e-5)
    assert (np.bincount(labels.ravel(), minlength=CLASSES) > labels.size / 20).all()  # every class is non-trivial
    assert np.nanmin(dice_per_class(labels, expected_labels, CLASSES)) >= 0.99

    saved = np.load(out / f"{geometry}.probabilities.npz", allow_pickle=False)
    probabilities = saved["probabilities"].astype(np.float32)
    assert probabilities.shape == (CLASSES, *shape) and np.allclose(saved["affine"], written.affine, atol=1e-6)
    assert np.abs(probabilities.sum(0) - 1).max() < 5e-3
    assert np.abs(probabilities - expected_probabilities).max() < 5e-3

    voxel_ml = abs(np.linalg.det(written.affine[:3, :3])) / 1000
    volumes = read_manifest(out / "manifest.jsonl")[geometry]["volumes_ml"]
    assert volumes == pytest.approx({str(k): (labels == k).sum() * voxel_ml for k in range(1, CLASSES)}, abs=1e-3)


def test_an_ensemble_with_tta_equals_monais_pipeline(model_and_checkpoint, tmp_path: Path) -> None:
    """Two checkpoints' logits averaged over every mirror (a 2D model's slices are not mirrored across)."""
    cfg, model, checkpoint = model_and_checkpoint
    torch.manual_seed(1)
    other = build_model(cfg.model)
    _balance_head(other, cfg, _save(_phantom((44, 40, 14), 0), _affine(np.diag([0.8, 0.8, 2.5])),
                                    tmp_path / "sample.nii.gz"))
    second = save_checkpoint(tmp_path / "run", "best", cfg, Snapshot.of(other, {"global_step": 2}))
    shape, linear = GEOMETRIES["smaller_than_window"][0], GEOMETRIES["oblique_lps"][1]  # few windows
    source = _save(_phantom(shape, 2), _affine(linear), tmp_path / "case.nii.gz")
    options = PredictOptions(device="cpu", tta=True)
    (result,) = run_prediction([checkpoint, second], [str(source)], tmp_path / "preds", options)
    assert result.status == "written", result.message
    labels = np.asarray(nib.load(str(result.output)).dataobj).astype(np.int64)

    mirror_axes = (0, 1) if cfg.slices_volumes else (0, 1, 2)
    expected, _ = _monai_pipeline(cfg, _Mean([model, other]), source, mirror_axes)
    assert (np.bincount(expected.ravel(), minlength=CLASSES) > expected.size / 20).all()  # non-trivial classes
    assert np.nanmin(dice_per_class(labels, expected, CLASSES)) >= 0.99
