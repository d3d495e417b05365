"""Training time until the held-out mean foreground Dice first reaches a target: segkit's demo recipe against a
MONAI-tutorial baseline, same phantoms, same split, same machine, one run.

    python benchmarks/time_to_dice.py                          # make bench: 20 phantoms, the organ, 0.90
    python benchmarks/time_to_dice.py --classes 3 --target 0.85 --cap 3 --json out.json

Data: seeded synthetic CT phantoms (``segkit data synth``; the default --classes 1 labels the organ, --classes 2
the organ and the vessel), written
once to ``--data`` (reused when present) or a temp folder. Both sides train on segkit's training split of
``imagesTr`` and validate on its validation split (the held-out cases; ``imagesTs`` is not used).

segkit's side is the product: ``run_training`` with ``configs/demo_unet_resnet34.yaml`` (UNet-ResNet34, batch
norm, Dice+CE, AdamW 2e-3 with a 400-step poly schedule, 2 patches of 64x64x32 per step, flips), validated every
``--val-every`` steps and stopped by ``train.stop_at_dice`` at the target. MONAI's side is the 3D spleen
tutorial's recipe on the same data: LoadImaged, EnsureChannelFirstd, ScaleIntensityRanged (segkit's HU window),
CropForegroundd, Orientationd(RAS), Spacingd (segkit's spacing), SpatialPadd to the patch size,
RandCropByPosNegLabeld (segkit's patch size,
pos 1, neg 1, 4 samples), CacheDataset, DataLoader(batch 2, shuffled: 2 volumes x 4 patches = 8 patches per
step, against segkit's 2), MONAI UNet (16-32-64-128-256, strides 2,
2 residual units, batch norm), DiceCELoss(softmax), Adam 1e-4; validated every ``--val-every`` steps too.

Both validate whole preprocessed volumes with the same sliding window (segkit's roi, overlap 0.5, Gaussian) and
score mean foreground Dice (MONAI's DiceMetric on MONAI's side, segkit's validator on segkit's; both on the RAS
grid at segkit's spacing). The clock is training time: the sum of the steps' seconds (each includes fetching its
batch); start-up, caching and validation are excluded on both sides and reported separately as wall time. The
time to the target is the training time at the first validation that reaches it. MONAI's side stops at the target
or when its training time passes ``--cap`` times segkit's; then the ratio is reported as "more than" the cap.
Prints a table (median and min-max over --seeds runs) and, with --json, writes the same numbers with versions,
machine, date and the command line.
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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import monai
import torch
from machine import device_name
from monai import transforms as mt
from monai.data import CacheDataset, DataLoader, decollate_batch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.layers import Norm
from monai.networks.nets import UNet
from monai.utils import set_determinism
from rich.console import Console
from rich.table import Table
from segkit.pipelines.train import run_training

from segkit.config import Config, load_config
from segkit.data.synth import Style, write_dataset
from segkit.engine.run_log import read_metrics

RECIPE = "demo_unet_resnet34.yaml"


@dataclass
class Curve:
    """One side's validations: training seconds, step and mean foreground Dice at each."""

    train_seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    parameters: int = 0
    step_seconds: float = 0.0  # median seconds per training step

    def first_reaching(self, target: float) -> int | None:
        """Index of the first validation at or above ``target``."""
        return next((i for i, d in enumerate(self.dice) if d >= target), None)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="phantom folder (written when missing; default: a temp folder)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--classes", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--val-every", type=int, default=25, help="validate every N training steps (both sides)")
    parser.add_argument("--cap", type=float, default=2.5,
                        help="stop MONAI's side at this multiple of segkit's time to the target")
    parser.add_argument("--seeds", type=int, default=1, help="runs per side (seeds 0..N-1)")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def _ensure_data(args: argparse.Namespace, scratch: Path) -> Path:
    root = args.data or scratch / "phantoms"
    if not (root / "dataset.json").is_file():
        write_dataset(root, args.cases, seed=0, style=Style(classes=args.classes))
    return root


def _segkit_config(root: Path, run_dir: Path, classes: int, target: float, val_every: int, seed: int) -> Config:
    base = load_config(RECIPE)
    total = base.train.epochs * base.train.steps_per_epoch  # the recipe's schedule, validated more often
    return load_config(RECIPE, [f"data.root={root}", f"run_dir={run_dir}", f"model.num_classes={classes + 1}",
                                f"train.steps_per_epoch={val_every}", f"train.epochs={-(-total // val_every)}",
                                "train.val_every=1", f"train.stop_at_dice={target}", "train.surface_metrics=false",
                                f"seed={seed}"])


def run_segkit(cfg: Config) -> Curve:
    """Train with the product's ``run_training``; the curve comes from the run's metrics.jsonl."""
    start = time.perf_counter()
    result = run_training(cfg, overwrite=True, console=Console(stderr=True))
    curve = Curve(wall_seconds=time.perf_counter() - start)
    curve.parameters = sum(p.numel() for p in result.model.parameters())
    seconds, step_times = 0.0, []
    for record in read_metrics(Path(cfg.run_dir) / "metrics.jsonl"):
        if record.get("kind") == "step":
            seconds += record["seconds"]
            step_times.append(record["seconds"])
        elif record.get("kind") == "val" and record.get("mean_dice") is not None:
            curve.train_seconds.append(seconds)
            curve.steps.append(record["step"])
            curve.dice.append(record["mean_dice"])
    curve.step_seconds = statistics.median(step_times)
    return curve


def _monai_transforms(cfg: Config, train: bool) -> mt.Compose:
    """The spleen tutorial's transforms with segkit's window, spacing and patch size for these phantoms."""
    keys = ["image", "label"]
    low, high = cfg.data.window
    steps = [mt.LoadImaged(keys), mt.EnsureChannelFirstd(keys),
             mt.ScaleIntensityRanged("image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
             mt.CropForegroundd(keys, source_key="image"), mt.Orientationd(keys, axcodes="RAS"),
             mt.Spacingd(keys, pixdim=cfg.data.spacing, mode=("bilinear", "nearest"))]
    if train:  # phantoms can be thinner than a patch after cropping: pad first, as MONAI's BTCV tutorial does
        steps.append(mt.SpatialPadd(keys, spatial_size=cfg.train.patch_size))
        steps.append(mt.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=cfg.train.patch_size, pos=1,
                                               neg=1, num_samples=4, image_key="image", image_threshold=0))
    return mt.Compose(steps)


def _files(root: Path, cases: list[str]) -> list[dict[str, str]]:
    return [{"image": str(root / "imagesTr" / f"{c}.nii.gz"), "label": str(root / "labelsTr" / f"{c}.nii.gz")}
            for c in cases]


def _monai_validate(model: torch.nn.Module, volumes: list[dict], cfg: Config) -> float:
    """Mean foreground Dice over the validation volumes (MONAI's DiceMetric, sliding window like segkit's)."""
    classes = cfg.model.num_classes
    metric = DiceMetric(include_background=False, reduction="mean")
    to_pred, to_label = mt.AsDiscrete(argmax=True, to_onehot=classes), mt.AsDiscrete(to_onehot=classes)
    model.eval()
    with torch.no_grad():
        for item in volumes:
            logits = sliding_window_inference(item["image"][None], cfg.infer.roi_size or cfg.train.patch_size,
                                              4, model, overlap=cfg.infer.overlap, mode=cfg.infer.blend)
            metric([to_pred(p) for p in decollate_batch(logits)], [to_label(item["label"])])
    model.train()
    return float(metric.aggregate().item())


def run_monai(cfg: Config, root: Path, split: dict[str, list[str]], val_every: int, target: float,
              budget_seconds: float, seed: int) -> Curve:
    """The tutorial loop until the target or ``budget_seconds`` of training time."""
    start = time.perf_counter()
    set_determinism(seed)
    train = CacheDataset(_files(root, split["train"]), _monai_transforms(cfg, True), cache_rate=1.0,
                         num_workers=0, progress=False)
    volumes = list(CacheDataset(_files(root, split["val"]), _monai_transforms(cfg, False), cache_rate=1.0,
                                num_workers=0, progress=False))
    loader = DataLoader(train, batch_size=2, shuffle=True, num_workers=0)
    model = UNet(spatial_dims=3, in_channels=1, out_channels=cfg.model.num_classes, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), num_res_units=2, norm=Norm.BATCH)
    loss_function, optimizer = DiceCELoss(to_onehot_y=True, softmax=True), torch.optim.Adam(model.parameters(), 1e-4)
    curve = Curve(parameters=sum(p.numel() for p in model.parameters()))
    seconds, step, step_times = 0.0, 0, []
    while True:
        mark = time.perf_counter()
        for batch in loader:
            loss = loss_function(model(batch["image"]), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            now = time.perf_counter()
            step, seconds = step + 1, seconds + now - mark
            step_times.append(now - mark)
            if step % val_every == 0 or seconds >= budget_seconds:
                curve.train_seconds.append(seconds)
                curve.steps.append(step)
                curve.dice.append(_monai_validate(model, volumes, cfg))
                print(f"MONAI step {step}: {seconds:.0f} s of training, val dice {curve.dice[-1]:.4f}", file=sys.stderr)
                if curve.dice[-1] >= target or seconds >= budget_seconds:
                    curve.wall_seconds = time.perf_counter() - start
                    curve.step_seconds = statistics.median(step_times)
                    return curve
            mark = time.perf_counter()


def _time_to(curve: Curve, target: float) -> tuple[float | None, int | None]:
    """Training seconds and steps at the first validation reaching ``target`` (None, None if never)."""
    index = curve.first_reaching(target)
    return (None, None) if index is None else (curve.train_seconds[index], curve.steps[index])


def _one_seed(args: argparse.Namespace, root: Path, scratch: Path, seed: int) -> dict:
    cfg = _segkit_config(root, scratch / f"segkit-{seed}", args.classes, args.target, args.val_every, seed)
    segkit = run_segkit(cfg)
    segkit_seconds, _ = _time_to(segkit, args.target)
    if segkit_seconds is None:
        sys.exit(f"segkit's recipe did not reach Dice {args.target} in its {segkit.steps[-1]} steps "
                 f"(best {max(segkit.dice):.3f})")
    split = json.loads((Path(cfg.run_dir) / "splits.json").read_text())[0]
    other = run_monai(cfg, root, split, args.val_every, args.target, args.cap * segkit_seconds, seed)
    monai_seconds, _ = _time_to(other, args.target)
    ratio = (monai_seconds if monai_seconds is not None else other.train_seconds[-1]) / segkit_seconds
    return {"seed": seed, "segkit": asdict(segkit), "monai": asdict(other), "ratio": ratio,
            "monai_reached": monai_seconds is not None}


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _side_row(name: str, runs: list[dict], target: float) -> list[str]:
    curves = [Curve(**run) for run in runs]
    reached = [_time_to(c, target) for c in curves]
    seconds = [s for s, _ in reached if s is not None]
    steps = [n for _, n in reached if n is not None]
    time_cell = (_spread(seconds) if len(seconds) == len(curves)
                 else f"not reached in {_spread([c.train_seconds[-1] for c in curves])}")
    return [name, f"{curves[0].parameters / 1e6:.1f}M", _spread([c.step_seconds for c in curves], 2), time_cell,
            _spread([float(n) for n in steps]) if steps else "-", _spread([max(c.dice) for c in curves], 3),
            _spread([c.wall_seconds for c in curves])]


def _table(results: dict) -> Table:
    setup, runs = results["setup"], results["runs"]
    table = Table(title=f"Time to held-out mean foreground Dice {setup['target']:.2f}, {setup['cases']} phantoms "
                        f"({setup['classes']} foreground classes), {results['environment']['device']}",
                  caption="training seconds (steps incl. batch fetch; start-up, caching, validation excluded); "
                          "median (min–max) over seeds; ratio = MONAI / segkit; '> ': MONAI was stopped at "
                          f"--cap {setup['cap']} times segkit's time without reaching the target")
    for column in ("recipe", "parameters", "s/step", "train s to target", "steps", "best Dice", "wall s"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    table.add_row(*_side_row("segkit demo recipe (UNet-ResNet34)", [r["segkit"] for r in runs],
                             setup["target"]))
    table.add_row(*_side_row("MONAI spleen tutorial (UNet)", [r["monai"] for r in runs], setup["target"]))
    ratios = [r["ratio"] for r in runs]
    bound = "" if all(r["monai_reached"] for r in runs) else "> "  # MONAI stopped at the cap before the target
    table.add_row("ratio", "", "", f"{bound}{_spread(ratios, 2)}", "", "", "", style="bold")
    return table


def main() -> None:
    args = _parse_args()
    warnings.filterwarnings("ignore", message=".*Orientationd.__init__:labels")  # MONAI 1.6's deprecation notice
    with tempfile.TemporaryDirectory(prefix="segkit-ttd-") as tmp:
        scratch = Path(tmp)
        root = _ensure_data(args, scratch)
        runs = [_one_seed(args, root, scratch, seed) for seed in range(args.seeds)]
    results = {"setup": {"recipe": RECIPE, "cases": args.cases, "classes": args.classes, "target": args.target,
                         "val_every_steps": args.val_every, "cap": args.cap, "seeds": args.seeds,
                         "clock": "sum of training-step seconds; start-up, caching and validation excluded"},
               "environment": {"torch": torch.__version__, "monai": monai.__version__,
                               "python": platform.python_version(), "device": device_name(torch.device("cpu")),
                               "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                               "command": shlex.join(sys.orig_argv)},
               "runs": runs}
    Console(width=150).print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
