"""The ``segkit`` command line: parses arguments and calls the pipelines; no logic of its own."""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from segkit.errors import SegkitError

console = Console()
err_console = Console(stderr=True)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _print_error(message: str, severity: str = "error") -> None:
    """``error: message`` as one line on stderr (no markup read from the message: paths may hold brackets)."""
    style = "bold red" if severity == "error" else "yellow"
    err_console.print(f"[{style}]{severity}[/]: {escape(_one_line(message))}", highlight=False, soft_wrap=True)


def _add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, type=_nonempty,
                        help="config file, or the name of a packaged config (e.g. unet_resnet34.yaml)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys, values read as YAML (one or more, repeatable), e.g. "
                             "--set train.epochs=50 data.fold=1")


def _cmd_train(args: argparse.Namespace) -> int:
    from segkit.pipelines.launch import launch_processes
    from segkit.pipelines.train import resumed_config, run_training

    if args.gpus is not None:
        return launch_processes(args.gpus, sys.argv[1:] if args.argv is None else args.argv)
    if args.resume is not None:
        if args.overwrite:
            raise SegkitError("--overwrite replaces a run and --resume continues one; give only one of them")
        if args.config is not None:
            raise SegkitError("--resume continues a run with the config saved in it; leave out --config "
                              "(use --set to change a key, e.g. train.epochs)")
        cfg = resumed_config(args.resume, args.overrides)
    elif args.config is None:
        raise SegkitError("segkit train needs --config FILE (or --resume RUN_DIR)")
    else:
        from segkit.config import load_config

        cfg = load_config(args.config, args.overrides)
    run_training(cfg, overwrite=args.overwrite, console=console, resume=args.resume is not None)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from segkit.pipelines.predict import PredictOptions, run_prediction

    options = PredictOptions(args.device, args.overwrite, args.tta, args.save_probabilities, args.overlap,
                             args.sw_batch_size, args.workers, args.preview, args.precision,
                             tuple(args.keep_largest) if args.keep_largest else None)
    results = run_prediction(args.checkpoint, args.input, args.output, options, console)
    failed = [r for r in results if r.status == "failed"]
    for result in failed:  # the table above wraps; here each failure is one line on stderr
        _print_error(result.message)
    return 1 if failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from segkit.pipelines.evaluate import run_evaluation

    result = run_evaluation(args.pred, args.ref, args.csv, args.num_classes, console,
                            tolerance_mm=args.tolerance, summary_path=args.summary, postprocessing=args.postprocessing)
    for problem in result.problems:  # the warnings above go with the tables; here each is one line on stderr
        _print_error(problem)
    return 1 if result.problems else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from segkit.data.synth import Style, write_dataset

    manifest = write_dataset(args.out, args.cases, args.seed, tuple(args.size), args.test, args.overwrite,
                             args.format or ("folder" if args.dims == 2 else "msd"), args.channels,
                             Style(args.classes, args.difficulty), args.dims)
    console.print(f"wrote {manifest['numTraining']} training and {manifest['numTest']} held-out phantoms "
                  f"to {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from segkit.data.index import detect_layout
    from segkit.pipelines.data_check import run_data_check

    layout = args.format or detect_layout(args.dataset)
    result = run_data_check(args.dataset, layout, args.json, console, args.dims)
    for problem in result.problems:  # the table above wraps; here each problem is one line on stderr
        _print_error(f"{problem.file}: {problem.message}", problem.severity)
    return 0 if result.ok else 1


def _cmd_convert(args: argparse.Namespace) -> int:
    from segkit.pipelines.convert import run_convert

    summary = run_convert(args.input, args.output, args.format, args.workers, console, _print_error)
    return 0 if summary.ok else 1


def _cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from segkit.config import config_to_dict, load_config
    from segkit.models import check_model_config

    cfg = load_config(args.config, args.overrides)
    check_model_config(cfg.model)  # what train would refuse about the model, config show refuses too
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import json

    from segkit.pipelines.models import model_table, summaries
    from segkit.registry import FUSIONS, LOSSES, UPSAMPLERS

    rows = summaries(args.encoder, args.dims)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    console.print(model_table(rows))
    for registry in (UPSAMPLERS, FUSIONS, LOSSES):
        console.print(f"[bold]{registry.kind}[/]: {', '.join(registry.names())}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from segkit.pipelines.export import ExportOptions, run_export

    if args.out.endswith(("/", os.sep)):  # Path() would drop the slash and write a file of the folder's name
        raise SegkitError(f"--out {args.out}: give a file name such as {Path(args.out) / 'model.onnx'}")
    options = ExportOptions(args.format, args.opset, args.overwrite, args.exporter, quiet=not args.debug)
    run_export(args.checkpoint, Path(args.out), options, console)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from segkit.compare.spec import CompareRequest
    from segkit.pipelines.compare import rebuild_report, run_compare, run_worker

    if args.worker is not None:
        run_worker(args.worker, console)
    elif args.report_only is not None:
        rebuild_report(args.report_only, console)
    elif args.config is None:
        raise SegkitError("segkit compare needs --config BASE_CONFIG_OR_SPEC (or --report-only DIR)")
    else:
        run_compare(CompareRequest(args.config, tuple(args.vary), tuple(args.overrides), args.seeds, args.out,
                                   args.baseline), args.gpus, console)
    return 0


def _nonempty(text: str) -> str:
    """A path as given, refusing an empty one: ``Path("")`` is the current folder, so ``--output "$UNSET"`` would
    write there."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path — give a file or folder name (is a shell variable unset?)")
    return text


def _path(text: str) -> Path:
    return Path(_nonempty(text))


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in [0, 1)")
    return value


def _sw_batch(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_train_predict_evaluate(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model from a config")
    _add_config_args(train, required=False)
    train.add_argument("--overwrite", action="store_true", help="replace an existing run in run_dir")
    train.add_argument("--resume", type=_path, metavar="RUN_DIR",
                       help="continue an interrupted run exactly from its last/ checkpoint")
    train.add_argument("--gpus", type=_positive, metavar="N",
                       help="train with N processes (DDP, one per GPU) by launching torchrun")
    train.set_defaults(func=_cmd_train)

    predict = sub.add_parser("predict", help="predict label maps for images")
    predict.add_argument("--checkpoint", required=True, type=_path, nargs="+",
                         help="checkpoint or run directory; several (e.g. the folds) predict as an ensemble that "
                              "averages their logits")
    predict.add_argument("--input", required=True, nargs="+", type=_nonempty,
                         help="image folders, files or glob patterns")
    predict.add_argument("--output", required=True, type=_path, help="folder for the label maps")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    predict.add_argument("--overwrite", action="store_true", help="redo every case, replacing existing outputs")
    predict.add_argument("--tta", action="store_true", help="mirroring test-time augmentation over infer.tta_axes")
    predict.add_argument("--save-probabilities", action="store_true",
                         help="also write CASE.probabilities.npz (float16 softmax, classes first)")
    predict.add_argument("--overlap", type=_overlap, help="sliding-window overlap in [0, 1) (default: config)")
    predict.add_argument("--sw-batch-size", type=_sw_batch, help="windows per pass: N or auto (default: config)")
    predict.add_argument("--workers", type=_positive, default=2, help="reader threads and writer threads (default 2)")
    predict.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"),
                         help="arithmetic of the network (default: the checkpoint's train.precision; auto is bf16 "
                              "on GPUs, fp32 on CPUs; bf16 on CPUs with AMX/AVX512-BF16 is ~2x faster)")
    predict.add_argument("--keep-largest", type=_positive, nargs="+", metavar="LABEL",
                         help="keep only the largest connected component of these labels; the rest becomes "
                              "background (default: the config's infer.keep_largest)")
    predict.add_argument("--preview", action="store_true",
                         help="write CASE.preview.png: three slices through the largest structure with the overlay")
    predict.set_defaults(func=_cmd_predict)

    evaluate = sub.add_parser("evaluate", help="Dice, HD95 and surface Dice of predictions against reference labels")
    evaluate.add_argument("--pred", required=True, type=_path, help="folder of predicted label maps")
    evaluate.add_argument("--ref", required=True, type=_path, help="folder of reference label maps")
    evaluate.add_argument("--csv", type=_path, help="per case and class CSV (default PRED/evaluation.csv)")
    evaluate.add_argument("--summary", type=_path, help="markdown summary (default PRED/evaluation.md)")
    evaluate.add_argument("--num-classes", type=_positive, help="number of classes incl. background")
    evaluate.add_argument("--tolerance", type=_positive_float, default=1.0, metavar="MM",
                          help="normalised surface Dice tolerance in mm (default 1.0)")
    evaluate.add_argument("--postprocessing", action="store_true",
                          help="also score each label with only its largest connected component kept and say for "
                               "which labels infer.keep_largest raises the mean Dice")
    evaluate.set_defaults(func=_cmd_evaluate)


def _add_synth(data: argparse._SubParsersAction) -> None:
    synth = data.add_parser("synth", help="write a synthetic phantom dataset")
    synth.add_argument("--out", required=True, type=_path, help="dataset folder to create")
    synth.add_argument("--cases", type=_positive, default=24, help="number of cases (default 24)")
    synth.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    synth.add_argument("--size", type=_positive, nargs=3, default=[32, 96, 96], metavar=("D", "H", "W"),
                       help="volume size in voxels, slices first (default 32 96 96)")
    synth.add_argument("--test", type=_positive, help="held-out cases (default a quarter)")
    synth.add_argument("--format", choices=("msd", "nnunet", "folder"),
                       help="dataset layout (default: msd, or folder for --dims 2)")
    synth.add_argument("--dims", type=int, choices=(2, 3), default=3,
                       help="3: volumes (NIfTI); 2: one axial slice per case as PNG (default 3)")
    synth.add_argument("--channels", type=_positive, default=1, help="image channels (nnunet layout; default 1)")
    synth.add_argument("--classes", type=int, choices=(1, 2, 3), default=3,
                       help="labelled structures: 1 organ, 2 + vessel, 3 + lesions (default 3)")
    synth.add_argument("--difficulty", type=_unit, default=0.0,
                       help="0..1: more noise and bias, less contrast (default 0, the demo phantoms)")
    synth.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    synth.set_defaults(func=_cmd_synth)


def _add_convert(data: argparse._SubParsersAction) -> None:
    convert = data.add_parser("convert", help="write a dataset as an nnU-Net v2 raw dataset (NIfTI)")
    convert.add_argument("--input", required=True, type=_path, help="dataset folder (msd, nnunet or folder layout)")
    convert.add_argument("--format", choices=("msd", "nnunet", "folder"),
                         help="layout of --input (default: detected, as segkit data check does)")
    convert.add_argument("--output", required=True, type=_path, help="new or empty folder for the nnU-Net dataset")
    convert.add_argument("--workers", type=_positive, default=2, help="cases converted at once (default 2)")
    convert.set_defaults(func=_cmd_convert)


def _add_data_config_models(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True,
                                                                       metavar="TOOL")
    _add_synth(data)
    check = data.add_parser("check", help="check a dataset's files and print its fingerprint")
    check.add_argument("dataset", type=_path, help="dataset folder")
    check.add_argument("--format", choices=("msd", "nnunet", "folder"),
                       help="layout (default: detected — nnunet or msd by dataset.json, folder by dataset.csv or "
                            "images/)")
    check.add_argument("--json", type=_path, help="report path (default DATASET/segkit_fingerprint.json)")
    check.add_argument("--dims", type=int, choices=(2, 3),
                       help="check as 2D image files or 3D volumes (default: 2 when every image is PNG or TIFF)")
    check.set_defaults(func=_cmd_check)
    _add_convert(data)

    config = sub.add_parser("config", help="config tools").add_subparsers(dest="config_command", required=True,
                                                                          metavar="TOOL")
    show = config.add_parser("show", help="print the resolved config as YAML")
    _add_config_args(show)
    show.set_defaults(func=_cmd_config_show)

    models = sub.add_parser("models", help="encoders with parameters and GFLOPs; upsampling modes, fusions, losses")
    models.add_argument("--json", action="store_true", help="print the encoder table as JSON")
    models.add_argument("--encoder", action="append", help="only this encoder (repeatable)")
    models.add_argument("--dims", type=int, choices=(2, 3), action="append", help="only 2D or 3D (repeatable)")
    models.set_defaults(func=_cmd_models)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a trained model to ONNX (dynamic batch and spatial axes)")
    export.add_argument("--checkpoint", required=True, type=_path, help="checkpoint or run directory")
    export.add_argument("--format", required=True, choices=("onnx",), help="file format (onnx)")
    export.add_argument("--out", required=True, type=_nonempty, help="file to write, e.g. model.onnx")
    export.add_argument("--opset", type=_positive, default=20, metavar="N", help="ONNX opset (default 20)")
    export.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy",
                        help="legacy (TorchScript tracing; default, 5-8x faster) or dynamo (torch.export); "
                             "if one fails, the other is tried")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    export.set_defaults(func=_cmd_export)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser("compare", help="compare variants over seeds: train, predict held-out cases, score, "
                                              "measure cost and artefacts, write a report")
    _add_config_args(compare, required=False)
    compare.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                         help="a config key and its values, one variant each (repeatable: the full factorial), "
                              "e.g. model.upsample=transposed,nearest,linear,pixelshuffle")
    compare.add_argument("--seeds", type=_positive, help="seeds per variant, 0..N-1 (default: the spec's, else 3)")
    compare.add_argument("--out", type=_path, help="folder for the runs and the report (default: the spec's)")
    compare.add_argument("--baseline", help="the variant the others are compared with (default: the first)")
    compare.add_argument("--gpus", default="auto", metavar="auto|N",
                         help="spread runs one per GPU over N GPUs (auto: all visible); with 0 or 1 GPU runs go one "
                              "after another in this process (default auto)")
    compare.add_argument("--report-only", type=_path, metavar="DIR",
                         help="rebuild DIR's report from its stored results")
    compare.add_argument("--worker", type=_path, help=argparse.SUPPRESS)  # one prepared run, started by --gpus
    compare.set_defaults(func=_cmd_compare)


class _OneLineParser(argparse.ArgumentParser):
    """argparse with a usage error as one line (``segkit predict: error: … — see segkit predict --help``) instead of
    the whole usage block; subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} — see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = _OneLineParser(prog="segkit", description="UNet segmentation of 2D/3D medical images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_predict_evaluate(sub)
    _add_data_config_models(sub)
    _add_export(sub)
    _add_compare(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line (no traceback unless --debug)."""
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except SegkitError as exc:
        if args.debug:
            traceback.print_exc()
        _print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # an unexpected failure still gets one line without --debug
        if args.debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _print_error(f"unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
