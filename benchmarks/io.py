"""Reading a CT-sized .nii.gz and writing a label map: segkit against MONAI's LoadImage/SaveImage and SimpleITK.

    python benchmarks/io.py                       # 512x512x300 int16, 5 repeats
    python benchmarks/io.py --size 256 256 120 --repeats 3 --json io.json

The image is predict_e2e.py's CT-like int16 volume (gzip level 6, LPS-ish affine), generated once into --data.
The label map (uint8, 3 classes: air, body, bright blobs) is derived from it. Every contender reads or writes
the same file in the same process, round-robin over the repeats (the file stays in the page cache).

Read, each giving the voxel array in memory:
- segkit: ``load_channel_first`` with ``NiftiReader`` — what ``segkit predict`` does (nibabel parses the header,
  ISA-L inflates; the array keeps the file's int16 values and layout);
- segkit in MONAI's LoadImage: ``LoadImage(reader=NiftiReader(), dtype=None)`` — what training does;
- MONAI LoadImage with NibabelReader and with ITKReader (defaults: float32, C-contiguous);
- SimpleITK ``ReadImage`` (+ array view) and nibabel (``np.asanyarray(img.dataobj)``) directly.

Write (gzip level 1 everywhere): segkit's ``write_like`` of the label map as the predictor hands it over
(F-ordered, the layout NIfTI stores) and, for transparency, of a C-ordered copy; MONAI's ``SaveImage``
(uint8, resample=False) of a MetaTensor with the same affine; SimpleITK ``WriteImage``. Every output is read back
and checked equal to the label map with the reference affine, and its size is reported (ISA-L's level 1 and
zlib's level 1 are different compressors: the sizes show that the faster write does not buy its speed with a
larger file).

The F-ordered segkit row is the writer as the predictor uses it: the transposing copy to NIfTI's order is done
earlier, in the predictor's device stage (on the GPU; on a CPU run on the CPU), so it is not in this row. MONAI's
``SaveImage`` gets the C-ordered tensor MONAI's pipeline holds and makes that copy itself. The like-for-like
comparison of the writers alone, from the same C-ordered array, is the C-ordered segkit row against SaveImage.

Goals (issue #8): read ≤ 1.1× SimpleITK's time; write ≥ 3× faster than SaveImage. Prints a table (median,
min–max) and, with --json, writes the numbers with versions, machine, date and command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import monai
import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from machine import device_name
from monai.data import ITKReader, MetaTensor, NibabelReader
from monai.transforms import LoadImage, SaveImage
from predict_e2e import ensure_volumes
from rich.console import Console
from timing_table import timing_summary, timing_table

from segkit.data.host_loading import load_channel_first
from segkit.io.atomic import atomic_path
from segkit.io.gzip_codec import gzip_compress
from segkit.io.image_io import nifti_like, write_like
from segkit.io.nifti_reader import NiftiReader

READ_GOAL = 1.1  # segkit read time / SimpleITK read time, at most
WRITE_GOAL = 3.0  # SaveImage time / segkit write time, at least


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, help="folder for the volume (reused when present; default: temp)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def readers(path: Path) -> dict[str, Callable[[], np.ndarray]]:
    """Each contender's read of ``path``, returning the voxel array in (i, j, k) order."""
    name = str(path)
    return {
        "segkit (predict path)": lambda: load_channel_first(name, [NiftiReader()])[0].numpy(),
        "segkit reader in MONAI LoadImage": lambda: LoadImage(reader=NiftiReader(), dtype=None,
                                                              image_only=True)(name).numpy(),
        "MONAI LoadImage (NibabelReader)": lambda: LoadImage(reader=NibabelReader(), image_only=True)(name).numpy(),
        "MONAI LoadImage (ITKReader)": lambda: LoadImage(reader=ITKReader(), image_only=True)(name).numpy(),
        "SimpleITK ReadImage": lambda: _sitk_read(name),
        "nibabel": lambda: np.asanyarray(nib.load(name).dataobj),
    }


class _HeldView(np.ndarray):
    """A NumPy view that keeps the SimpleITK image owning its buffer alive (``image``)."""


def _sitk_read(name: str) -> np.ndarray:
    """SimpleITK's read and a view of its buffer (no copy), in (i, j, k) order. The view must hold the image: a bare
    ``GetArrayViewFromImage(ReadImage(name))`` points into freed memory once the image is collected, and the check
    against nibabel's values then failed or passed by chance."""
    image = sitk.ReadImage(name)
    view = sitk.GetArrayViewFromImage(image).T.view(_HeldView)
    view.image = image
    return view


def writers(labels: np.ndarray, reference: Path, out: Path) -> dict[str, Callable[[], Path]]:
    """Each contender's write of ``labels`` on ``reference``'s grid into ``out``; returns the written file."""
    affine = nib.load(str(reference)).affine
    f_ordered, c_ordered = np.asfortranarray(labels), np.ascontiguousarray(labels)
    meta_tensor = MetaTensor(torch.from_numpy(c_ordered)[None], affine=torch.as_tensor(affine),
                             meta={"filename_or_obj": "monai"})
    saver = SaveImage(output_dir=str(out), output_postfix="seg", output_ext=".nii.gz", output_dtype=np.uint8,
                      resample=False, separate_folder=False, print_log=False)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.T))
    image.CopyInformation(sitk.ReadImage(str(reference)))  # same grid as the reference

    def segkit(array: np.ndarray, name: str) -> Callable[[], Path]:
        return lambda: (write_like(array, reference, out / name, compression_level=1), out / name)[1]

    return {
        "segkit write_like (F-ordered, predict path)": segkit(f_ordered, "segkit_f.nii.gz"),
        "segkit write_like (C-ordered)": segkit(c_ordered, "segkit_c.nii.gz"),
        "nibabel to_bytes + ISA-L gzip (segkit before)": lambda: _through_to_bytes(f_ordered, reference,
                                                                                   out / "to_bytes.nii.gz"),
        "MONAI SaveImage": lambda: (saver(meta_tensor), out / "monai_seg.nii.gz")[1],
        "SimpleITK WriteImage": lambda: (sitk.WriteImage(image, str(out / "sitk.nii.gz"), True, 1),
                                         out / "sitk.nii.gz")[1],
    }


def _through_to_bytes(labels: np.ndarray, reference: Path, path: Path) -> Path:
    """segkit's write before ``segkit.io.nifti_writer``: the same image and gzip, but the whole file first
    assembled by nibabel's ``to_bytes`` (a copy of the volume made while holding the GIL)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip_compress(nifti_like(labels, reference, path).to_bytes(), 1))
    return path


def _round_robin(contenders: dict[str, Callable], repeats: int) -> tuple[dict[str, list[float]], dict]:
    """One untimed call each, then ``repeats`` timed rounds; the seconds and each contender's last result."""
    results = {name: fn() for name, fn in contenders.items()}
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def _check_reads(results: dict[str, np.ndarray], expected: np.ndarray) -> None:
    for name, array in results.items():
        if array.shape != expected.shape or not np.array_equal(np.asarray(array, dtype=np.float32), expected):
            raise SystemExit(f"{name}: read values differ from nibabel's")


def _check_writes(results: dict[str, Path], labels: np.ndarray, reference: Path) -> dict[str, int]:
    """Each written file read back and checked; returns the files' sizes in bytes."""
    ref_affine = nib.load(str(reference)).affine
    for name, path in results.items():
        image = nib.load(str(path))
        back = np.asanyarray(image.dataobj).reshape(labels.shape)
        if not np.array_equal(back, labels) or not np.allclose(image.affine, ref_affine, atol=1e-4):
            raise SystemExit(f"{name}: the written file does not hold the label map on the reference grid")
    return {name: path.stat().st_size for name, path in results.items()}


def main() -> None:
    args = _parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        work = Path(tmp)
        paths, _ = ensure_volumes(args.data or work / "data", 1, tuple(args.size), 0)
        image_path = paths[0]
        expected = np.asanyarray(nib.load(str(image_path)).dataobj).astype(np.float32)
        labels = ((expected > -500).astype(np.uint8) + (expected > 150)).astype(np.uint8)
        read_s, read_results = _round_robin(readers(image_path), args.repeats)
        _check_reads(read_results, expected)
        del read_results
        out = work / "out"
        out.mkdir()
        write_s, write_results = _round_robin(writers(labels, image_path, out), args.repeats)
        written_bytes = _check_writes(write_results, labels, image_path)
    size = "x".join(map(str, args.size))
    console = Console(width=120)
    console.print(timing_table(f"read {size} int16 .nii.gz (gzip 6), {args.repeats} repeats", read_s,
                               "SimpleITK ReadImage", "time / SimpleITK", invert=True))
    console.print(timing_table(f"write {size} uint8 label map .nii.gz (gzip 1), {args.repeats} repeats", write_s,
                               "MONAI SaveImage", "SaveImage / time", invert=False))
    read_ratio = statistics.median(read_s["segkit (predict path)"]) / statistics.median(read_s["SimpleITK ReadImage"])
    write_ratio = (statistics.median(write_s["MONAI SaveImage"])
                   / statistics.median(write_s["segkit write_like (F-ordered, predict path)"]))
    like_for_like = (statistics.median(write_s["MONAI SaveImage"])
                     / statistics.median(write_s["segkit write_like (C-ordered)"]))
    read_ok, write_ok = ("met" if ok else "NOT met" for ok in (read_ratio <= READ_GOAL, write_ratio >= WRITE_GOAL))
    console.print("written sizes: " + "; ".join(f"{name} {size / 1e6:.2f} MB" for name, size in written_bytes.items()))
    console.print(f"goals: read {read_ratio:.2f}x SimpleITK's time (≤ {READ_GOAL}: {read_ok}); "
                  f"write {write_ratio:.2f}x faster than SaveImage (≥ {WRITE_GOAL}: {write_ok}; from the same "
                  f"C-ordered array, as SaveImage gets it: {like_for_like:.2f}x)")
    print(shlex.join(sys.orig_argv))
    if args.json:
        args.json.write_text(json.dumps({
            "read": timing_summary(read_s), "write": timing_summary(write_s), "read_vs_simpleitk": read_ratio,
            "saveimage_vs_segkit_write": write_ratio, "saveimage_vs_segkit_write_c_ordered": like_for_like,
            "written_bytes": written_bytes, "size": list(args.size), "repeats": args.repeats,
            "machine": device_name(torch.device("cpu")), "torch": torch.__version__, "monai": monai.__version__,
            "simpleitk": sitk.Version.VersionString(), "nibabel": nib.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv)}, indent=1))


if __name__ == "__main__":
    main()
