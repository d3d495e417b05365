"""The ``segkit`` subcommand parsers: one builder per subcommand, each given the function the subcommand runs.

``segkit.cli.build_parser`` calls these in order (the order of ``segkit --help``) and passes its ``_cmd_*``
functions in, so this module needs nothing from ``segkit.cli``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from segkit.cli_types import nonempty, overlap, path, positive, positive_float, seed, sw_batch, unit

Command = Callable[[argparse.Namespace], int]
LAYOUTS = ("msd", "nnunet", "folder")


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config`` and ``--set KEY=VALUE …``."""
    parser.add_argument("--config", required=required, type=nonempty,
                        help="config file, or the name of a packaged config (e.g. unet_resnet34.yaml)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, values read as YAML (one or more, repeatable), e.g. "
                             "--set train.epochs=50 data.fold=1")


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (``segkit train … --debug``, where an error's "rerun with --debug" sends
    users); it only sets the flag, so ``segkit --debug train …`` keeps working."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")


def add_tool_group(sub: argparse._SubParsersAction, name: str, help_text: str, dest: str) -> argparse._SubParsersAction:
    """A command that only groups tools (``segkit data …``, ``segkit config …``); its subparsers action."""
    return sub.add_parser(name, help=help_text).add_subparsers(dest=dest, required=True, metavar="TOOL")


def add_train(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit train``."""
    train = sub.add_parser("train", help="train a model from a config")
    add_config_args(train, required=False)
    train.add_argument("--overwrite", action="store_true", help="replace an existing run in run_dir")
    train.add_argument("--resume", type=path, metavar="RUN_DIR",
                       help="continue an interrupted run exactly from its last/ checkpoint")
    train.add_argument("--gpus", type=positive, metavar="N",
                       help="train with N processes (DDP, one per GPU) by launching torchrun")
    add_debug(train)
    train.set_defaults(func=func)


def add_predict(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit predict``."""
    predict = sub.add_parser("predict", help="predict label maps for images")
    predict.add_argument("--checkpoint", required=True, type=path, nargs="+",
                         help="checkpoint or run directory; several (e.g. the folds) predict as an ensemble that "
                              "averages their logits")
    predict.add_argument("--input", required=True, nargs="+", type=nonempty,
                         help="image folders, files or glob patterns")
    predict.add_argument("--output", required=True, type=path, help="folder for the label maps")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    predict.add_argument("--overwrite", action="store_true", help="redo every case, replacing existing outputs")
    predict.add_argument("--tta", action="store_true", help="mirroring test-time augmentation over infer.tta_axes")
    predict.add_argument("--save-probabilities", action="store_true",
                         help="also write CASE.probabilities.npz (float16 softmax, classes first)")
    predict.add_argument("--overlap", type=overlap, help="sliding-window overlap in [0, 1) (default: config)")
    predict.add_argument("--sw-batch-size", type=sw_batch, help="windows per pass: N or auto (default: config)")
    predict.add_argument("--workers", type=positive, default=2, help="reader threads and writer threads (default 2)")
    predict.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"),
                         help="arithmetic of the network (default: the checkpoint's train.precision; auto is bf16 "
                              "on GPUs, fp32 on CPUs; bf16 on CPUs with AMX/AVX512-BF16 is ~2x faster)")
    predict.add_argument("--keep-largest", type=positive, nargs="+", metavar="LABEL",
                         help="keep only the largest connected component of these labels; the rest becomes "
                              "background (default: the config's infer.keep_largest)")
    predict.add_argument("--preview", action="store_true",
                         help="write CASE.preview.png: three slices through the largest structure with the overlay")
    add_debug(predict)
    predict.set_defaults(func=func)


def add_evaluate(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit evaluate``."""
    evaluate = sub.add_parser("evaluate", help="Dice, HD95 and surface Dice of predictions against reference labels")
    evaluate.add_argument("--pred", required=True, type=path, help="folder of predicted label maps")
    evaluate.add_argument("--ref", required=True, type=path, help="folder of reference label maps")
    evaluate.add_argument("--csv", type=path, help="per case and class CSV (default PRED/evaluation.csv)")
    evaluate.add_argument("--summary", type=path, help="markdown summary (default PRED/evaluation.md)")
    evaluate.add_argument("--num-classes", type=positive, help="number of classes incl. background")
    evaluate.add_argument("--tolerance", type=positive_float, default=1.0, metavar="MM",
                          help="normalised surface Dice tolerance in mm (default 1.0)")
    evaluate.add_argument("--postprocessing", action="store_true",
                          help="also score each label with only its largest connected component kept and say for "
                               "which labels infer.keep_largest raises the mean Dice")
    add_debug(evaluate)
    evaluate.set_defaults(func=func)


def add_synth(data: argparse._SubParsersAction, func: Command) -> None:
    """``segkit data synth``."""
    synth = data.add_parser("synth", help="write a synthetic phantom dataset")
    synth.add_argument("--out", required=True, type=path, help="dataset folder to create")
    synth.add_argument("--cases", type=positive, default=24, help="number of cases (default 24)")
    synth.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    synth.add_argument("--size", type=positive, nargs=3, default=[32, 96, 96], metavar=("D", "H", "W"),
                       help="volume size in voxels, slices first (default 32 96 96)")
    synth.add_argument("--test", type=positive, help="held-out cases (default a quarter)")
    synth.add_argument("--format", choices=LAYOUTS, help="dataset layout (default: msd, or folder for --dims 2)")
    synth.add_argument("--dims", type=int, choices=(2, 3), default=3,
                       help="3: volumes (NIfTI); 2: one axial slice per case as PNG (default 3)")
    synth.add_argument("--channels", type=positive, default=1, help="image channels (nnunet layout; default 1)")
    synth.add_argument("--classes", type=int, choices=(1, 2, 3), default=3,
                       help="labelled structures: 1 organ, 2 + vessel, 3 + lesions (default 3)")
    synth.add_argument("--difficulty", type=unit, default=0.0,
                       help="0..1: more noise and bias, less contrast (default 0, the demo phantoms)")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    add_debug(synth)
    synth.set_defaults(func=func)


def add_check(data: argparse._SubParsersAction, func: Command) -> None:
    """``segkit data check``."""
    check = data.add_parser("check", help="check a dataset's files and print its fingerprint")
    check.add_argument("dataset", type=path, help="dataset folder")
    check.add_argument("--format", choices=LAYOUTS,
                       help="layout (default: detected — nnunet or msd by dataset.json, folder by dataset.csv or "
                            "images/)")
    check.add_argument("--json", type=path, help="report path (default DATASET/segkit_fingerprint.json)")
    check.add_argument("--dims", type=int, choices=(2, 3),
                       help="check as 2D image files or 3D volumes (default: 2 when every image is PNG or TIFF)")
    add_debug(check)
    check.set_defaults(func=func)


def add_convert(data: argparse._SubParsersAction, func: Command) -> None:
    """``segkit data convert``."""
    convert = data.add_parser("convert", help="write a dataset as an nnU-Net v2 raw dataset (NIfTI)")
    convert.add_argument("--input", required=True, type=path, help="dataset folder (msd, nnunet or folder layout)")
    convert.add_argument("--format", choices=LAYOUTS,
                         help="layout of --input (default: detected, as segkit data check does)")
    convert.add_argument("--output", required=True, type=path, help="new or empty folder for the nnU-Net dataset")
    convert.add_argument("--workers", type=positive, default=2, help="cases converted at once (default 2)")
    add_debug(convert)
    convert.set_defaults(func=func)


def add_config_show(config: argparse._SubParsersAction, func: Command) -> None:
    """``segkit config show``."""
    show = config.add_parser("show", help="print the resolved config as YAML")
    add_config_args(show)
    add_debug(show)
    show.set_defaults(func=func)


def add_models(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit models``."""
    models = sub.add_parser("models", help="encoders with parameters and GFLOPs; upsampling modes, fusions, losses")
    models.add_argument("--json", action="store_true", help="print the encoder table as JSON")
    models.add_argument("--encoder", action="append", help="only this encoder (repeatable)")
    models.add_argument("--dims", type=int, choices=(2, 3), action="append", help="only 2D or 3D (repeatable)")
    add_debug(models)
    models.set_defaults(func=func)


def add_export(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit export``."""
    export = sub.add_parser("export", help="export a trained model to ONNX (dynamic batch and spatial axes)")
    export.add_argument("--checkpoint", required=True, type=path, help="checkpoint or run directory")
    export.add_argument("--format", required=True, choices=("onnx",), help="file format (onnx)")
    export.add_argument("--out", required=True, type=nonempty, help="file to write, e.g. model.onnx")
    export.add_argument("--opset", type=positive, default=20, metavar="N", help="ONNX opset (default 20)")
    export.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy",
                        help="legacy (TorchScript tracing; default, 5-8x faster) or dynamo (torch.export); "
                             "if one fails, the other is tried")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_debug(export)
    export.set_defaults(func=func)


def add_compare(sub: argparse._SubParsersAction, func: Command) -> None:
    """``segkit compare``."""
    compare = sub.add_parser("compare", help="compare variants over seeds: train, predict held-out cases, score, "
                                              "measure cost and artefacts, write a report")
    add_config_args(compare, required=False)
    compare.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                         help="a config key and its values, one variant each (repeatable: the full factorial), "
                              "e.g. model.upsample=transposed,nearest,linear,pixelshuffle")
    compare.add_argument("--seeds", type=positive, help="seeds per variant, 0..N-1 (default: the spec's, else 3)")
    compare.add_argument("--out", type=path, help="folder for the runs and the report (default: the spec's, else "
                                                     "runs/compare-KEYS, e.g. runs/compare-upsample)")
    compare.add_argument("--baseline", help="the variant the others are compared with (default: the first)")
    compare.add_argument("--gpus", default="auto", metavar="auto|N",
                         help="spread runs one per GPU over N GPUs (auto: all visible); with 0 or 1 GPU runs go one "
                              "after another in this process (default auto)")
    compare.add_argument("--report-only", type=path, metavar="DIR",
                         help="rebuild DIR's report from its stored results")
    compare.add_argument("--worker", type=path, help=argparse.SUPPRESS)  # one prepared run, started by --gpus
    add_debug(compare)
    compare.set_defaults(func=func)
