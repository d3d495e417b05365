"""Predict planning: the command line's options, one job per case to predict, and each case's result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.pipelines.predict_inputs import output_path_for

from segkit.config import Config
from segkit.data.cases import Case
from segkit.errors import ConfigError, SegkitError
from segkit.inference.manifest import Manifest, file_signature
from segkit.io.side_files import preview_path, probabilities_path


@dataclass(frozen=True)
class CaseResult:
    """Outcome of one input. ``warning`` is set for a written case whose preview could not be drawn."""

    case_id: str
    source: Path
    output: Path | None
    status: str  # written | skipped | failed
    seconds: float = 0.0
    message: str = ""
    warning: str = ""


@dataclass(frozen=True)
class PredictOptions:
    """Command-line choices on top of the checkpoint's config."""

    device: str = "auto"
    overwrite: bool = False
    tta: bool = False
    probabilities: bool = False
    overlap: float | None = None
    sw_batch_size: int | str | None = None  # an int or "auto"
    workers: int = 2  # reader threads and writer threads each
    preview: bool = False
    precision: str | None = None  # auto, bf16, fp16 or fp32; default: the checkpoint's train.precision
    keep_largest: tuple[int, ...] | None = None  # labels to reduce to their largest component; default: the config's


@dataclass(frozen=True)
class Job:
    """One case to predict and where its outputs go."""

    case: Case
    target: Path
    signature: list[list[int]]
    redo: bool = False  # the outputs there are segkit's from an earlier run (or --overwrite): side files go too


def config_for(cfg: Config, options: PredictOptions) -> Config:
    """The checkpoint's config with the command line's ``infer.*`` and precision choices applied."""
    infer = {k: v for k, v in {"overlap": options.overlap, "sw_batch_size": options.sw_batch_size,
                               "keep_largest": options.keep_largest}.items() if v is not None}
    outside = [label for label in options.keep_largest or () if not 0 < label < cfg.model.num_classes]
    if outside:
        raise ConfigError(f"--keep-largest {outside[0]}: the checkpoint predicts labels 1..{cfg.model.num_classes - 1}"
                          " (0 is background); list foreground labels")
    cfg = cfg.model_copy(update={"infer": cfg.infer.model_copy(update=infer)}) if infer else cfg
    if options.precision is None:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": options.precision})})


def _side_files(target: Path, options: PredictOptions) -> list[Path]:
    """The files beside the label map that ``options`` ask for."""
    return ([probabilities_path(target)] if options.probabilities else []) + (
        [preview_path(target)] if options.preview else [])


def plan_jobs(cases: list[Case], output_dir: Path, manifest: Manifest, settings: dict, options: PredictOptions
              ) -> tuple[list[Job], list[CaseResult]]:
    """Jobs to run, and results for cases that are skipped (complete already) or cannot be planned."""
    jobs, results, overwrite = [], [], options.overwrite
    for case in cases:
        try:
            target = output_path_for(case, output_dir)
            signature = file_signature(case.images)
        except (SegkitError, OSError) as exc:
            results.append(CaseResult(case.case_id, case.image, None, "failed", message=str(exc)))
            continue
        side_files = _side_files(target, options)
        if not overwrite and manifest.is_done(case.case_id, target, signature, settings, side_files):
            results.append(CaseResult(case.case_id, case.image, target, "skipped", message="complete in manifest"))
        elif not overwrite and not manifest.was_ours(case.case_id, target) and (
                taken := next((p for p in [target, *side_files] if p.exists()), None)):
            results.append(CaseResult(case.case_id, case.image, target, "skipped",
                                      message=f"{taken.name} exists, not written by segkit here (use --overwrite to "
                                              "redo)"))
        else:
            jobs.append(Job(case, target, signature, overwrite or manifest.was_ours(case.case_id, target)))
    return jobs, results
