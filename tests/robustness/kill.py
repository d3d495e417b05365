"""SIGKILL fault injection for ``segkit train`` and ``segkit predict`` (the full version: ``make robustness``).

    python -m tests.robustness.kill [--train-points 24] [--predict-points 12] [--seed 0] [--jobs 2]

**Train.** A tiny deterministic run (2D UNet-ResNet18 on slices of CPU phantoms, a checkpoint after every
step, EMA, validation every epoch, one torch thread) is started as a real ``python -m segkit train``
subprocess and SIGKILLed at a seeded random moment, then continued with ``segkit train --resume RUN_DIR``,
which is killed again, and so on until a resume finishes. The moments come in three kinds, cycled in a seeded
order: while a checkpoint is being written (the staging directory ``checkpoints/.*.partial`` of the 1st or 2nd
save is watched for and the kill follows within 0.15 s), a random time within 1 s after the 1st or 2nd save
completed (landing in a step, a save, a validation or the logs), and a random time after the process started,
at the latest at its first save (imports, data, restore, cleanup, log truncation). After every kill, ``best``
and ``last`` must load (``last`` with its resume state), every file under a final name must be whole, and
``last`` must not go back in steps. At the end the weights (raw, EMA and best) must equal an uninterrupted
run's within 1e-6, every step must be logged once with the same loss, and no staged, temp or unreferenced file
may remain.

**Predict.** ``segkit predict --save-probabilities`` on a folder of six phantoms is killed the same way (at
once when the 1st or 2nd case's ``started`` line or temp file appears, a random time within 0.5 s after the
1st or 2nd case was written, or during start-up) and rerun until it finishes. After every kill each file under
a final name must load whole with the input's shape, and a case the manifest calls written must never be
written again. At the end every output must equal an uninterrupted run's, ``manifest.jsonl`` must hold one
``written`` line per case, and no temp file may remain.

``tests/robustness/test_kill.py`` runs a few points of each in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.data.synth import write_dataset
from segkit.engine.checkpoint import (
    PARTIAL,
    RESUME,
    TRAIN_WEIGHTS,
    WEIGHTS,
    Snapshot,
    load_checkpoint,
    load_resume_state,
    save_checkpoint,
)
from segkit.engine.run_log import read_metrics
from segkit.errors import SegkitError
from segkit.inference.manifest import read_all
from segkit.io.side_files import probabilities_path
from segkit.models import build_model

POLL = 0.002  # seconds between looks at the run or output folder
RUN_TIMEOUT = 600  # seconds one segkit process may take before the harness gives up on it
ATOL = 1e-6
MODES = ("write", "after", "startup")
PHANTOM_SIZE = (16, 40, 40)  # training phantoms: slices, rows, columns
PREDICT_SIZE = (24, 64, 64)  # larger for predict, so that a run lasts long enough to be killed mid-way
CLASSES = 4
PROBE = ".segkit-write-probe"  # predict's start-up check that --output is writable: not an output write

# -------------------------------------------------------------------------------------------- processes


def segkit_env(cache: Path) -> dict[str, str]:
    """The subprocess environment: one torch thread (the same numerics in every run, and two runs side by side
    on two cores), data-check caches in ``cache``, a wide console."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XDG_CACHE_HOME": str(cache),
            "COLUMNS": "200"}


def launch(args: list[str | Path], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python -m segkit ARGS`` with stdout and stderr appended to ``log``."""
    with log.open("ab") as handle:
        handle.write(f"\n$ segkit {' '.join(map(str, args))}\n".encode())
        handle.flush()
        return subprocess.Popen([sys.executable, "-m", "segkit", *map(str, args)], stdout=handle,
                                stderr=subprocess.STDOUT, env=env)


def run_to_end(args: list[str | Path], log: Path, env: dict[str, str]) -> int:
    """Run ``segkit ARGS`` to the end; its exit code."""
    return launch(args, log, env).wait(timeout=RUN_TIMEOUT)


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log, for failure messages."""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float,
              cutoff: Callable[[], bool] = lambda: False) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` first holds, or sooner once ``cutoff()`` holds;
    False if it exited on its own first."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)
    fire = time.monotonic() + delay
    while time.monotonic() < fire and proc.poll() is None and not cutoff():
        time.sleep(POLL)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


@dataclass(frozen=True)
class Moment:
    """When to kill: ``mode`` (one of MODES), the ``n``-th event to wait for, and the delay after it."""

    mode: str
    n: int
    delay: float


@dataclass(frozen=True)
class Spans:
    """How long after its event a kill may fall: a write seen starting, a write completed, the process start
    (the time the previous process of the chain took to its first write)."""

    write: float
    after: float
    startup: float


TRAIN_SPANS = Spans(write=0.15, after=1.0, startup=8.0)  # a checkpoint write takes ~0.4 s here, a step ~0.3 s
PREDICT_SPANS = Spans(write=0.0, after=0.5, startup=6.0)  # an output is written in milliseconds


def draw_moment(rng: random.Random, mode: str, spans: Spans) -> Moment:
    """A random moment of kind ``mode``: the ``n``-th event (1 or 2) and a delay within its span."""
    if mode == "startup":
        return Moment(mode, 0, rng.uniform(0.0, spans.startup))
    return Moment(mode, rng.randint(1, 2), rng.uniform(0.0, spans.write if mode == "write" else spans.after))


def mode_order(rng: random.Random, count: int) -> list[str]:
    """``count`` modes: every run of three consecutive points holds each mode once, in a seeded order."""
    modes: list[str] = []
    while len(modes) < count:
        modes += rng.sample(MODES, len(MODES))
    return modes[:count]


@dataclass(frozen=True)
class Point:
    """One kill: its moment, where it landed and the progress kept (train: ``last``'s step; predict: cases done)."""

    command: str
    moment: Moment
    landed: str  # "write" (a staged or temp file existed) | "startup" (nothing written yet) | "between"
    progress: int


@dataclass
class Chain:
    """One run killed again and again until it finished."""

    name: str
    points: list[Point] = field(default_factory=list)
    reruns: int = 0  # runs started after a kill (--resume for train)
    restarts: int = 0  # train runs started over because no checkpoint existed yet
    problems: list[str] = field(default_factory=list)  # after a kill, or at the end
    mismatch: bool = False  # the finished run differs from the uninterrupted one (or did not finish)
    max_diff: float = 0.0  # train: largest absolute weight difference from the uninterrupted run


# -------------------------------------------------------------------------------------------- train


def train_config(path: Path, data: Path, run_dir: Path, epochs: int, steps: int) -> Path:
    """A tiny deterministic 2D config on the phantoms at ``data``, saving ``last`` after every step."""
    config = {
        "base": "demo_unet_resnet34.yaml", "run_dir": str(run_dir), "seed": 5,
        "data": {"root": str(data), "spacing": [1.2, 1.2, 2.5], "val_fraction": 0.25, "num_workers": 0},
        "model": {"spatial_dims": 2, "encoder": "resnet18", "decoder_channels": [32, 16, 16, 8, 8]},
        "train": {"epochs": epochs, "steps_per_epoch": steps, "batch_size": 2, "patch_size": [32, 32],
                  "checkpoint_every": 1, "val_every": 1, "ema": 0.8, "warmup_steps": 2, "surface_metrics": False,
                  "device": "cpu"},
        "infer": {"roi_size": [32, 32]},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class StoreWatch:
    """Counts checkpoint directories that appear in ``run_dir/checkpoints`` after it is made: staged
    (``.*.partial``) and complete ones, and when the first staging was seen."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.store, self.start = run_dir, run_dir / "checkpoints", time.monotonic()
        self.before = {*self._names(), *(p.name for p in run_dir.glob(".*.tmp"))}  # stale ones of earlier kills
        self.seen = set(self.before)
        self.staged: set[str] = set()
        self.done: set[str] = set()
        self.first_write: float | None = None

    def _names(self) -> list[str]:
        try:
            return [p.name for p in self.store.iterdir()]
        except FileNotFoundError:
            return []

    def look(self) -> None:
        """Record what appeared since the last look."""
        for name in self._names():
            if name not in self.seen:
                self.seen.add(name)
                (self.staged if name.endswith(PARTIAL) else self.done).add(name)
                if name.endswith(PARTIAL) and self.first_write is None:
                    self.first_write = time.monotonic() - self.start

    def ready(self, moment: Moment) -> Callable[[], bool]:
        """The condition ``moment`` waits for."""
        def condition() -> bool:
            self.look()
            if moment.mode == "write":
                return len(self.staged) >= moment.n
            return moment.mode == "startup" or len(self.done) >= moment.n
        return condition

    def cutoff(self, moment: Moment) -> Callable[[], bool]:
        """When the kill may wait no longer: a start-up kill falls at the latest at the first write."""
        def condition() -> bool:
            self.look()
            return moment.mode == "startup" and bool(self.staged)
        return condition

    def landing(self) -> str:
        """Where the kill landed: in a checkpoint write (this process left a staged directory or a temp link),
        before the process staged anything, or between writes."""
        left = [*(n for n in self._names() if n.endswith(PARTIAL)), *(p.name for p in self.run_dir.glob(".*.tmp"))]
        if set(left) - self.before:
            return "write"
        self.look()
        return "between" if self.staged else "startup"


def last_step(run_dir: Path) -> int:
    """``global_step`` of ``run_dir/last`` (-1 when there is none yet)."""
    state = run_dir / "last" / "state.json"
    return int(json.loads(state.read_text(encoding="utf-8"))["global_step"]) if state.is_file() else -1


def run_dir_problems(run_dir: Path) -> list[str]:
    """What a kill must never leave: ``best``/``last`` that do not load, or a damaged file under a final name
    in any (possibly half-deleted, unreferenced) checkpoint directory."""
    problems = []
    for name in ("best", "last"):
        link = run_dir / name
        if link.is_symlink() or link.exists():
            try:
                checkpoint = load_checkpoint(link)
                if name == "last":
                    load_resume_state(checkpoint.path)
            except SegkitError as exc:
                problems.append(f"{link}: {exc}")
    store = run_dir / "checkpoints"
    for directory in sorted(store.iterdir()) if store.is_dir() else []:
        if not directory.name.endswith(PARTIAL):
            problems += [f"{f}: damaged" for f in directory.iterdir() if not _whole(f)]
    return problems


def _whole(path: Path) -> bool:
    """Whether one checkpoint file reads completely."""
    try:
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.name == RESUME:
            torch.load(path, map_location="cpu", weights_only=True)
        else:
            json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # any reader error means the file is not whole
        return False
    return True


def train_once(chain: Chain, config: Path, run_dir: Path, moment: Moment | None, log: Path,
               env: dict[str, str]) -> tuple[subprocess.Popen, StoreWatch, str]:
    """Resume the run (start it over when no checkpoint exists yet) and, with a ``moment``, kill it then;
    returns the process, its watch and the command ("train" or "resume")."""
    resumable = (run_dir / "last" / WEIGHTS).is_file()
    args: list[str | Path] = ["train", "--resume", run_dir] if resumable else ["train", "--config", config,
                                                                               "--overwrite"]
    if chain.points:
        chain.reruns += int(resumable)
        chain.restarts += int(not resumable)
    watch = StoreWatch(run_dir)
    proc = launch(args, log, env)
    if moment is not None:
        kill_when(proc, watch.ready(moment), moment.delay, watch.cutoff(moment))
    return proc, watch, "resume" if resumable else "train"


def train_chain(name: str, config: Path, run_dir: Path, kills: int, seed: int, env: dict[str, str]) -> Chain:
    """Kill the run ``kills`` times at seeded moments and resume it until it finishes (see module doc)."""
    chain, rng, log = Chain(name), random.Random(seed), run_dir.parent / f"{name}.log"
    modes, spans, kept = mode_order(rng, kills), TRAIN_SPANS, -1
    while True:
        moment = draw_moment(rng, modes[len(chain.points)], spans) if len(chain.points) < kills else None
        proc, watch, command = train_once(chain, config, run_dir, moment, log, env)
        spans = replace(spans, startup=watch.first_write or spans.startup)
        if proc.returncode != -signal.SIGKILL:
            break
        step = last_step(run_dir)
        chain.points.append(Point(command, moment, watch.landing(), step))
        chain.problems += run_dir_problems(run_dir)
        if step < kept:
            chain.problems.append(f"kill {len(chain.points)}: last/ went back from step {kept} to {step}")
        kept = max(kept, step)
    if proc.wait(timeout=RUN_TIMEOUT) != 0:
        chain.mismatch = True
        chain.problems.append(f"{name}: the final run failed (exit {proc.returncode}):\n{tail(log)}")
    return chain


def max_weight_diff(run_dir: Path, reference: Path) -> float:
    """The largest absolute difference between the two runs' raw, EMA and best weights (inf if keys differ)."""
    largest = 0.0
    for link, files in (("last", (WEIGHTS, TRAIN_WEIGHTS)), ("best", (WEIGHTS,))):
        for file in files:
            ours, theirs = load_file(str(run_dir / link / file)), load_file(str(reference / link / file))
            if ours.keys() != theirs.keys():
                return math.inf
            for key, tensor in theirs.items():
                largest = max(largest, (ours[key].double() - tensor.double()).abs().max().item())
    return largest


def step_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every step record in ``metrics.jsonl``."""
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "step"]


def final_run_problems(run_dir: Path, reference: Path) -> list[str]:
    """Steps logged once with the reference's losses, and nothing left over: no staged directory, no
    unreferenced checkpoint, no temp file or link."""
    problems = []
    ours, theirs = step_losses(run_dir), step_losses(reference)
    if [s for s, _ in ours] != [s for s, _ in theirs] or not np.allclose(ours, theirs, rtol=0, atol=ATOL):
        problems.append(f"{run_dir}/metrics.jsonl: steps or losses differ from the uninterrupted run's")
    referenced = {(run_dir / name).resolve() for name in ("best", "last")}
    leftovers = [p for p in (run_dir / "checkpoints").iterdir() if p.resolve() not in referenced]
    leftovers += [p for p in run_dir.iterdir() if p.name.startswith(".")]
    if leftovers:
        problems.append(f"{run_dir}: left over after the final run: {sorted(p.name for p in leftovers)}")
    return problems


def train_schedule(kills: int) -> tuple[int, int]:
    """(epochs, steps per epoch) long enough for ``kills`` points: three consecutive points (one of each mode)
    let at most five steps go by (about two in practice), so 2·kills + 2 steps leave the last kill room."""
    epochs = 3
    return epochs, -(-(2 * kills + 2) // epochs)


def train_experiment(work: Path, data: Path, chains: int, kills: int, seed: int, jobs: int,
                     epochs: int, steps: int) -> list[Chain]:
    """An uninterrupted reference run beside ``chains`` killed runs (``jobs`` processes at a time), compared."""
    env = segkit_env(work / "cache")
    reference = work / "reference" / "run"
    reference.parent.mkdir(parents=True)
    ref_config = train_config(work / "reference" / "config.yaml", data, reference, epochs, steps)
    setups = []
    for i in range(chains):
        run_dir = work / f"chain{i}" / "run"
        run_dir.parent.mkdir()
        setups.append((f"chain{i}", train_config(run_dir.parent / "config.yaml", data, run_dir, epochs, steps),
                       run_dir, kills, seed * 1000 + i, env))
    with ThreadPoolExecutor(jobs) as pool:
        ref_code = pool.submit(run_to_end, ["train", "--config", ref_config], work / "reference" / "train.log", env)
        results = [pool.submit(train_chain, *setup) for setup in setups]
        code, done = ref_code.result(), [r.result() for r in results]
    if code != 0:
        raise RuntimeError(f"the uninterrupted run failed:\n{tail(work / 'reference' / 'train.log')}")
    for chain, (_, _, run_dir, *_) in zip(done, setups, strict=True):
        if not chain.mismatch:
            chain.max_diff = max_weight_diff(run_dir, reference)
            found = final_run_problems(run_dir, reference)
            chain.mismatch, chain.problems = bool(found) or chain.max_diff > ATOL, chain.problems + found
    return done


# ------------------------------------------------------------------------------------------------ predict


def random_checkpoint(run: Path, data: Path) -> Path:
    """A seeded random-weight 2D UNet-ResNet18 checkpoint for the phantoms (predict needs nothing else)."""
    cfg = Config(data=DataCfg(root=data, spacing=(1.2, 1.2, 2.5)),
                 model=ModelCfg(spatial_dims=2, encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
                 train=TrainCfg(patch_size=(32, 32)), infer=InferCfg(roi_size=(32, 32), sw_batch_size=4))
    torch.manual_seed(0)
    return save_checkpoint(run, "best", cfg, Snapshot.of(build_model(cfg.model).eval(), {"global_step": 1}))


def manifest_records(out: Path) -> dict[str, dict]:
    """The last manifest record per case (``manifest.jsonl`` and any per-rank parts)."""
    return read_all(out) if out.is_dir() else {}


def temp_files(out: Path) -> list[str]:
    """Hidden files in the output folder: temp names of writes in progress (or killed)."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else []


class OutputWatch:
    """What one predict process has done to the output folder since it started."""

    def __init__(self, out: Path) -> None:
        self.out, self.start = out, time.monotonic()
        self.temps_before, self.lines_before = set(temp_files(out)), len(self._lines())  # left by earlier kills
        self.done_at_start = self.written()
        self.first_write: float | None = None

    def _lines(self) -> list[str]:
        path = self.out / "manifest.jsonl"
        return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []

    def _new_statuses(self) -> dict[str, str]:
        """The last status per case among the manifest lines this process appended."""
        statuses = {}
        for line in self._lines()[self.lines_before:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            statuses[record.get("case_id")] = record.get("status")
        return statuses

    def written(self) -> int:
        """Cases whose last manifest record is ``written``."""
        return sum(r.get("status") == "written" for r in manifest_records(self.out).values())

    def writing(self) -> bool:
        """Whether this process is writing an output now: it made a temp file that is still there, or it
        appended a case's ``started`` line and nothing after it."""
        made = {name for name in set(temp_files(self.out)) - self.temps_before if not name.startswith(PROBE)}
        busy = bool(made) or "started" in self._new_statuses().values()
        if busy and self.first_write is None:
            self.first_write = time.monotonic() - self.start
        return busy

    def ready(self, moment: Moment) -> Callable[[], bool]:
        """The condition ``moment`` waits for."""
        def condition() -> bool:
            if moment.mode == "write":
                return self.writing() and len(self._new_statuses()) >= moment.n
            return moment.mode == "startup" or self.written() >= self.done_at_start + moment.n
        return condition

    def cutoff(self, moment: Moment) -> Callable[[], bool]:
        """When the kill may wait no longer: a start-up kill falls at the latest at the first output write."""
        return lambda: moment.mode == "startup" and self.writing()

    def landing(self) -> str:
        """Where the kill landed: in a write, before the process wrote anything, or between writes."""
        if self.writing():
            return "write"
        return "between" if self._new_statuses() or self.written() > self.done_at_start else "startup"


@dataclass(frozen=True)
class PredictSetup:
    """One predict experiment: checkpoint, input folder, and the shape of every output file (label maps and
    ``--save-probabilities`` files) by name."""

    checkpoint: Path
    inputs: Path
    shapes: dict[str, tuple[int, ...]]

    def args(self, out: Path) -> list[str | Path]:
        """``segkit predict`` arguments writing into ``out``."""
        return ["predict", "--checkpoint", self.checkpoint, "--input", self.inputs, "--output", out,
                "--device", "cpu", "--save-probabilities"]


def read_output(path: Path) -> np.ndarray:
    """An output file's whole array: the label map, or the probabilities of a ``.npz`` (no pickle)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return archive["probabilities"]
    return np.asarray(nib.load(str(path)).dataobj)


def case_files(record: dict) -> list[Path]:
    """The files a manifest record's case writes: the label map and its probabilities."""
    return [Path(record["output"]), probabilities_path(Path(record["output"]))]


def output_problems(setup: PredictSetup, out: Path, identities: dict[Path, tuple[int, int]]) -> list[str]:
    """After a kill: every file under a final name reads whole with the expected shape, and the files of a case
    recorded as written stay the very files they were (the case is never written again)."""
    problems = []
    for path in sorted(out.iterdir()) if out.is_dir() else []:
        if path.name.startswith(".") or path.name.startswith("manifest"):
            continue
        try:
            shape = read_output(path).shape
        except Exception as exc:  # any reader error means a partial or damaged file under a final name
            problems.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if shape != setup.shapes.get(path.name):
            problems.append(f"{path}: shape {shape}, expected {setup.shapes.get(path.name)}")
    for record in manifest_records(out).values():
        for path in case_files(record) if record.get("status") == "written" else []:
            stamp = (path.stat().st_ino, path.stat().st_mtime_ns) if path.is_file() else None
            if identities.setdefault(path, stamp) != stamp:
                problems.append(f"{path}: written again (or removed) after the manifest recorded it as written")
    return problems


def predict_chain(name: str, setup: PredictSetup, out: Path, kills: int, seed: int, env: dict[str, str]) -> Chain:
    """Kill ``segkit predict`` ``kills`` times at seeded moments and rerun it until it finishes."""
    chain, rng, log = Chain(name), random.Random(seed), out.parent / f"{name}.log"
    modes, spans, identities = mode_order(rng, kills), PREDICT_SPANS, {}
    while True:
        moment = draw_moment(rng, modes[len(chain.points)], spans) if len(chain.points) < kills else None
        chain.reruns += bool(chain.points)
        watch, proc = OutputWatch(out), launch(setup.args(out), log, env)
        if moment is not None:
            kill_when(proc, watch.ready(moment), moment.delay, watch.cutoff(moment))
        spans = replace(spans, startup=watch.first_write or spans.startup)
        if proc.returncode != -signal.SIGKILL:
            break
        chain.points.append(Point("predict", moment, watch.landing(), watch.written()))
        chain.problems += output_problems(setup, out, identities)
    if proc.wait(timeout=RUN_TIMEOUT) != 0:
        chain.mismatch = True
        chain.problems.append(f"{name}: the final run failed (exit {proc.returncode}):\n{tail(log)}")
    else:
        chain.problems += output_problems(setup, out, identities)
    return chain


def final_output_problems(setup: PredictSetup, out: Path, reference: Path) -> list[str]:
    """After the last rerun: only the outputs and ``manifest.jsonl`` remain, the manifest holds one ``written``
    line per case, and every output equals the uninterrupted run's."""
    problems = []
    names = sorted(p.name for p in out.iterdir())
    if names != sorted([*setup.shapes, "manifest.jsonl"]):
        problems.append(f"{out}: holds {names}, expected only the outputs and manifest.jsonl")
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    outputs = sorted(p.name for r in lines if r.get("status") == "written" for p in case_files(r))
    if len(lines) != len(setup.shapes) // 2 or outputs != sorted(setup.shapes):
        problems.append(f"{out}/manifest.jsonl: {Counter(r.get('status') for r in lines)} for {len(lines)} lines, "
                        f"expected one written line per case")
    for file in setup.shapes:
        if (out / file).is_file() and not np.array_equal(read_output(out / file), read_output(reference / file)):
            problems.append(f"{out / file}: differs from the uninterrupted run's output")
    return problems


def predict_setup(work: Path) -> PredictSetup:
    """Six phantoms to predict and a random-weight checkpoint, under ``work``."""
    data = work / "phantoms"
    write_dataset(data, cases=7, seed=11, size_dhw=PREDICT_SIZE, test_cases=1)
    inputs = data / "imagesTr"
    shapes: dict[str, tuple[int, ...]] = {}
    for image in sorted(inputs.iterdir()):
        shape = nib.load(str(image)).shape
        shapes[image.name] = shape
        shapes[probabilities_path(image).name] = (CLASSES, *shape)
    return PredictSetup(random_checkpoint(work / "checkpoint", data).resolve(), inputs, shapes)


def predict_experiment(work: Path, chains: int, kills: int, seed: int, jobs: int) -> list[Chain]:
    """An uninterrupted prediction beside ``chains`` killed ones (``jobs`` processes at a time), compared."""
    env, setup = segkit_env(work / "cache"), predict_setup(work)
    reference = work / "reference"
    reference.mkdir()
    outs = [work / f"chain{i}" / "out" for i in range(chains)]
    for out in outs:
        out.parent.mkdir()
    with ThreadPoolExecutor(jobs) as pool:
        ref_code = pool.submit(run_to_end, setup.args(reference / "out"), reference / "predict.log", env)
        results = [pool.submit(predict_chain, f"chain{i}", setup, out, kills, seed * 1000 + i, env)
                   for i, out in enumerate(outs)]
        code, done = ref_code.result(), [r.result() for r in results]
    if code != 0:
        raise RuntimeError(f"the uninterrupted prediction failed:\n{tail(reference / 'predict.log')}")
    for chain, out in zip(done, outs, strict=True):
        if not chain.mismatch:
            found = final_output_problems(setup, out, reference / "out")
            chain.mismatch, chain.problems = bool(found), chain.problems + found
    return done


# --------------------------------------------------------------------------------------------- report


def summary(kind: str, chains: list[Chain]) -> dict[str, object]:
    """The figures of one experiment."""
    points = [p for c in chains for p in c.points]
    return {"kind": kind, "points": len(points), "landed": dict(Counter(p.landed for p in points)),
            "modes": dict(Counter(p.moment.mode for p in points)),
            "killed_commands": dict(Counter(p.command for p in points)),
            "reruns": sum(c.reruns for c in chains), "restarts": sum(c.restarts for c in chains),
            "mismatches": sum(c.mismatch for c in chains), "max_abs_weight_diff": max(c.max_diff for c in chains),
            "problems": [p for c in chains for p in c.problems]}


def print_report(figures: dict[str, object], chains: list[Chain]) -> None:
    """One line per kill point, then the figures."""
    for chain in chains:
        for i, p in enumerate(chain.points, 1):
            print(f"  {figures['kind']} {chain.name} #{i}: killed {p.command} mode={p.moment.mode} "
                  f"n={p.moment.n} delay={p.moment.delay:.3f}s landed={p.landed} progress={p.progress}")
    train = figures["kind"] == "train"
    print(f"{figures['kind']}: {figures['points']} kill points in {len(chains)} runs (landed: {figures['landed']}), "
          f"{figures['reruns']} {'resumes' if train else 'reruns'}, {figures['restarts']} restarts, "
          f"{figures['mismatches']} mismatches, {len(figures['problems'])} problems"
          + (f", max abs weight difference {figures['max_abs_weight_diff']:g}" if train else ""))
    for problem in figures["problems"]:
        print(f"  PROBLEM: {problem}")


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.robustness.kill``: the full fault-injection run; exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-points", type=int, default=24, help="train kills in all (split over chains)")
    parser.add_argument("--train-chains", type=int, default=3)
    parser.add_argument("--predict-points", type=int, default=12)
    parser.add_argument("--predict-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="segkit processes at a time (one torch thread each)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep everything here (default: a temp folder)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segkit-kill-") as temp:
        work = args.workdir or Path(temp)
        reports = run_all(work, args)
    print(f"wall time {time.monotonic() - start:.0f} s")
    return 1 if any(r["problems"] for r in reports) else 0


def run_experiments(work: Path, data: Path, train: tuple[int, int], predict: tuple[int, int], seed: int,
                    jobs: int) -> tuple[list[Chain], list[Chain]]:
    """The train experiment on the phantoms at ``data`` and the predict experiment side by side, each with
    (chains, kills per chain) and ``jobs`` processes at a time; their chains."""
    (work / "train").mkdir(parents=True)
    (work / "predict").mkdir()
    with ThreadPoolExecutor(2) as pool:
        trained = pool.submit(train_experiment, work / "train", data, *train, seed, jobs, *train_schedule(train[1]))
        predicted = pool.submit(predict_experiment, work / "predict", *predict, seed, jobs)
        return trained.result(), predicted.result()


def run_all(work: Path, args: argparse.Namespace) -> list[dict[str, object]]:
    """Both experiments with the command-line settings; prints and returns their figures."""
    data = work / "phantoms"
    write_dataset(data, cases=5, seed=7, size_dhw=PHANTOM_SIZE, test_cases=1)
    per_chain = (-(-args.train_points // args.train_chains), -(-args.predict_points // args.predict_chains))
    chains = run_experiments(work, data, (args.train_chains, per_chain[0]), (args.predict_chains, per_chain[1]),
                             args.seed, args.jobs)
    reports = []
    for kind, done in zip(("train", "predict"), chains, strict=True):
        reports.append(summary(kind, done))
        print_report(reports[-1], done)
    return reports


if __name__ == "__main__":
    sys.exit(main())
