"""The ``segkit`` command line: parses arguments and calls the pipelines; no logic of its own.

The subcommand parsers are built in ``segkit.cli_parsers`` (their value converters are in ``segkit.cli_types``); the
functions they run, ``main`` and the one-line error output stay here, beside ``console``/``err_console``, which tests
replace on this module.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

import segkit
from segkit import cli_parsers as parsers
from segkit.errors import SegkitError

console = Console()
err_console = Console(stderr=True)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _print_error(message: str, severity: str = "error") -> None:
    """``error: message`` as one line on stderr (no markup read from the message: paths may hold brackets)."""
    style = "bold red" if severity == "error" else "yellow"
    err_console.print(f"[{style}]{severity}[/]: {escape(_one_line(message))}", highlight=False, soft_wrap=True)


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
    undrawn = [r for r in results if r.warning]  # written, but without the preview asked for
    for result in undrawn:
        _print_error(result.warning, "warning")
    return 1 if failed or undrawn else 0


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


class _OneLineParser(argparse.ArgumentParser):
    """argparse with a usage error as one line (``segkit predict: error: … — see segkit predict --help``) instead of
    the whole usage block; subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} — see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = _OneLineParser(prog="segkit", description="UNet segmentation of 2D/3D medical images.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"segkit {segkit.__version__} (torch "
                        f"{version('torch')}, monai {version('monai')})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers.add_train(sub, _cmd_train)
    parsers.add_predict(sub, _cmd_predict)
    parsers.add_evaluate(sub, _cmd_evaluate)
    data = parsers.add_tool_group(sub, "data", "dataset tools", "data_command")
    parsers.add_synth(data, _cmd_synth)
    parsers.add_check(data, _cmd_check)
    parsers.add_convert(data, _cmd_convert)
    config = parsers.add_tool_group(sub, "config", "config tools", "config_command")
    parsers.add_config_show(config, _cmd_config_show)
    parsers.add_models(sub, _cmd_models)
    parsers.add_export(sub, _cmd_export)
    parsers.add_compare(sub, _cmd_compare)
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
