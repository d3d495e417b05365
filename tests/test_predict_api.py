"""``segkit predict`` from Python (``segkit.pipelines.predict_api``): the same label maps as the command line, from
files, from MONAI's LoadImage and from arrays with an affine."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from segkit.pipelines.predict import PredictOptions, run_prediction
from segkit.pipelines.predict_api import load_predictor

from segkit.errors import CheckpointError, DataError, SegkitError


@pytest.fixture(scope="module")
def cli_predictions(random_checkpoint: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What ``segkit predict --keep-largest 1`` writes for the tiny phantoms (LPS, RAS and oblique grids)."""
    out = tmp_path_factory.mktemp("cli") / "preds"
    options = PredictOptions(device="cpu", keep_largest=(1,))
    results = run_prediction(random_checkpoint, [str(tiny_dataset / "imagesTr")], out, options)
    return {r.source: np.asarray(nib.load(str(r.output)).dataobj) for r in results}


def test_files_monai_images_and_arrays_give_the_command_lines_label_maps(random_checkpoint: Path,
                                                                         cli_predictions: dict) -> None:
    predictor = load_predictor(random_checkpoint, device="cpu", keep_largest=[1])
    load = LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)
    for source, expected in cli_predictions.items():
        from_file = predictor.predict_files(source)
        np.testing.assert_array_equal(from_file.labels, expected)
        counts = np.bincount(expected.ravel(), minlength=predictor.config.model.num_classes)
        np.testing.assert_array_equal(from_file.voxel_counts, counts)  # after keeping label 1's largest component
        np.testing.assert_array_equal(predictor.predict_image(load(str(source))).labels, expected)
        array = nib.load(str(source))
        from_array = predictor.predict_image(np.asarray(array.dataobj)[None], affine=array.affine)
        np.testing.assert_array_equal(from_array.labels, expected)
    flipped = np.asarray(array.dataobj)[::-1]  # negative strides, which torch.from_numpy refuses
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = flipped.shape[0] - 1  # voxel i of the flipped array is voxel (n - 1 - i) of the file
    from_flipped = predictor.predict_image(flipped[None], affine=array.affine @ flip)
    np.testing.assert_array_equal(from_flipped.labels, expected[::-1])


def test_probabilities_and_a_shape_that_does_not_fit_the_model(random_checkpoint: Path, tiny_dataset: Path) -> None:
    predictor = load_predictor(random_checkpoint, device="cpu", probabilities=True)
    source = sorted((tiny_dataset / "imagesTr").glob("*.nii.gz"))[0]
    image = nib.load(str(source))
    prediction = predictor.predict_image(torch.as_tensor(np.asarray(image.dataobj))[None], image.affine)
    probabilities = prediction.probabilities.astype(np.float32)
    assert probabilities.shape == (predictor.config.model.num_classes, *image.shape)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=3e-3)  # float16 per class
    np.testing.assert_array_equal(probabilities.argmax(0), prediction.labels)
    with pytest.raises(DataError, match=r"^image: an array has no geometry — pass affine="):
        predictor.predict_image(np.asarray(image.dataobj)[None])
    with pytest.raises(DataError, match=r"^ct: image has shape \(2, .* 1 channel\(s\) and 3 spatial axes — put the "):
        predictor.predict_image(np.zeros((2, *image.shape)), image.affine, name="ct")
    with pytest.raises(DataError, match=r"^image: image has shape \(16, 40, 40\) but"):
        predictor.predict_image(np.zeros((16, 40, 40)), image.affine)


def test_errors_and_an_ensemble(random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError):
        load_predictor(tmp_path / "missing", device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SegkitError, match=r"^device= 'cuda' requested but no CUDA GPU is available; use device='cpu'$"):
        load_predictor(random_checkpoint, device="cuda")
    source = sorted((tiny_dataset / "imagesTr").glob("*.nii.gz"))[0]
    copy = shutil.copytree(random_checkpoint, tmp_path / "copy")
    ensemble = load_predictor([random_checkpoint, copy], device="cpu").predict_files([source])
    single = load_predictor(random_checkpoint, device="cpu").predict_files([source])
    np.testing.assert_array_equal(ensemble.labels, single.labels)  # the mean of two equal members' logits
