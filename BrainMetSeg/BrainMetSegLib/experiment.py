"""The experiment runner: train and evaluate every run of the paper's grids, resumably.

Layout of an experiment folder DIR:

    DIR/experiment.json         the preset and dataset the folder belongs to
    DIR/runs/<run id>/          one training run (train.py's folder: options.json,
                                events.jsonl, checkpoint, model/) + evaluation.json
    DIR/data/<subset>/          Table 3's smaller training cohorts (hard links)
    DIR/logs/<run id>.log       with several workers, the output of the run's worker
    DIR/report.md, DIR/results.json, DIR/figures/*.png

A run whose model/ and evaluation.json both exist is finished and skipped, so the same
command continues an interrupted grid; a run interrupted while training continues from its
checkpoint (the trainer's resume), one interrupted while being evaluated is only evaluated.
evaluation.json keeps the per-case evaluations (metrics.CaseEvaluation) and the probability
histogram of background brain voxels, which is all the report needs: it can be rebuilt
without a network (`--report-only`).

Evaluation is on the test split, always with the source dataset's labels (never censored),
on each case's own grid, exactly as `brainmetseg evaluate` scores predictions.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_write_json
from .dataset import CaseEntry, Dataset, read_dataset
from .errors import BrainMetSegError
from .events import EVENTS_FILE, now_iso, read_events
from .experiment_grid import Row, Run, check_seeds, check_tables, plan_runs
from .experiment_presets import ExperimentPreset, with_optional_fields
from .experiment_subsets import training_subset, write_subset_dataset
from .experiment_workers import WorkersStopped, check_workers, log_path, run_in_workers
from .metrics import HISTOGRAM_BINS, CaseEvaluation, evaluate_case, summarise

Progress = Callable[[float, str], None]

EXPERIMENT_FILE = "experiment.json"
EVALUATION_FILE = "evaluation.json"
RUNS_FOLDER = "runs"
DATA_FOLDER = "data"
MODEL_FOLDER = "model"
EVALUATION_FORMAT = 1


class GridStopped(Exception):
    """Training was stopped cleanly (Ctrl-C, SIGTERM) after a checkpoint; the same command continues."""


@dataclass
class RunOutcome:
    run: Run
    status: str
    """'finished' (this call trained and/or evaluated it), 'skipped' (already finished),
    'failed', or 'missing' (not run: report only)."""
    evaluation: Optional[Dict[str, object]] = None
    error: Optional[str] = None
    progress: Optional[str] = None
    """How far a run that is not finished got ("last checkpoint at step 820 of 1640"), so that
    a report of an interrupted grid (a GPU lease that ran out) says what is left to do."""


def run_folder(out: Path, run: Run) -> Path:
    return Path(out) / RUNS_FOLDER / run.run_id


def is_finished(folder: Path) -> bool:
    return (folder / MODEL_FOLDER / "model.json").is_file() and (folder / EVALUATION_FILE).is_file()


def read_evaluation(folder: Path) -> Dict[str, object]:
    path = folder / EVALUATION_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BrainMetSegError(f"{path}: unreadable evaluation ({error}); delete it to evaluate the run again") from None
    if not isinstance(document, dict) or document.get("format") != EVALUATION_FORMAT:
        raise BrainMetSegError(f"{path}: not an evaluation of format {EVALUATION_FORMAT}; delete it to evaluate again")
    return document


def case_evaluations(evaluation: Dict[str, object]) -> List[CaseEvaluation]:
    return [CaseEvaluation.from_dict(case) for case in evaluation["cases"]]  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- set-up


def check_dataset(dataset: Dataset) -> None:
    """The grid needs labelled training cases and labelled test cases to score on."""
    if not [e for e in dataset.split("train") if e.label_status != "none"]:
        raise BrainMetSegError(f"{dataset.root}: no labelled training case (split 'train'); the experiment "
                               "trains on them")
    if not [e for e in dataset.split("test") if e.label_status != "none"]:
        raise BrainMetSegError(f"{dataset.root}: no labelled test case (split 'test' in dataset.json); the "
                               "experiment scores every run on them")


def claim_folder(out: Path, preset: ExperimentPreset, dataset: Dataset) -> None:
    """Write DIR/experiment.json, or check that DIR was started with the same preset and dataset:
    runs of different schedules or data must never be mixed in one report."""
    path = Path(out) / EXPERIMENT_FILE
    claim = {"preset": preset.to_json(), "dataset": str(dataset.root.resolve())}
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BrainMetSegError(f"{path}: unreadable ({error})") from None
        if existing.get("dataset") != claim["dataset"]:
            raise BrainMetSegError(f"{path}: this folder holds runs on the dataset {existing.get('dataset')}, not "
                                   f"{claim['dataset']}; choose another --out")
        stored = existing.get("preset")
        if not isinstance(stored, dict) or with_optional_fields(stored) != claim["preset"]:
            name = stored.get("name") if isinstance(stored, dict) else None
            raise BrainMetSegError(f"{path}: this folder holds runs of preset {name!r} with other settings than "
                                   f"--preset {preset.name}; choose another --out")
        return
    if Path(out).is_dir() and (Path(out) / RUNS_FOLDER).exists():
        raise BrainMetSegError(f"{out}: holds runs but no {EXPERIMENT_FILE}; not an experiment folder of this "
                               "version, choose another --out")
    atomic_write_json(path, claim)


def training_dataset(dataset: Dataset, out: Path, row: Row, seed: int) -> Path:
    """The dataset folder a run trains on: the source, or its seeded subset for Table 3."""
    if row.fraction >= 1:
        return dataset.root
    train_ids = [e.case_id for e in dataset.split("train")]
    kept = training_subset(train_ids, row.fraction, seed)
    return write_subset_dataset(dataset, kept, Path(out) / DATA_FOLDER / f"train{row.percent:03d}-s{seed}")


# ---------------------------------------------------------------------------------- evaluation


def evaluate_model(model: Path, entries: Sequence[CaseEntry], device: str,
                   progress: Optional[Progress] = None) -> Tuple[List[CaseEvaluation], np.ndarray]:
    """Per-case evaluations of the model on `entries`, and the probability histogram of their
    background brain voxels (Fig. 3's second class; CaseEvaluation keeps the lesion one)."""
    from .predict import Predictor

    predictor = Predictor(model, device=device)
    evaluations: List[CaseEvaluation] = []
    background = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for number, entry in enumerate(entries):
        if progress is not None:
            progress(number / len(entries), f"evaluating {entry.case_id} ({number + 1} of {len(entries)})")
        case = entry.load()
        prediction = predictor.predict(case)
        evaluations.append(evaluate_case(prediction.probability, case.label, case.affine,
                                         threshold=predictor.threshold, case_id=case.case_id))
        outside = case.brain & (case.label == 0)
        background += np.histogram(prediction.probability[outside], bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
    return evaluations, background


def _training_summary(model: Path) -> Dict[str, object]:
    from .model_folder import read_model_config

    config = read_model_config(model)
    keys = ("steps", "epochs", "selected_epoch", "selection", "collapse", "device", "data")
    return {"synthetic_training_data": config.synthetic_training_data,
            **{key: config.training.get(key) for key in keys}}


# ---------------------------------------------------------------------------------- one run


def _unfinished_progress(folder: Path) -> Optional[str]:
    """The step of a started run's last checkpoint, from its events (no torch needed); None
    when the run never started."""
    path = folder / EVENTS_FILE
    if not path.is_file():
        return None
    events = read_events(path)
    checkpoints = [event["step"] for event in events if event["event"] == "checkpoint"]
    total = next((event["total_steps"] for event in reversed(events) if "total_steps" in event), None)
    if not checkpoints:
        return "started, no checkpoint yet"
    return f"last checkpoint at step {checkpoints[-1]}" + ("" if total is None else f" of {total}")


def _resumed_from(folder: Path) -> Optional[int]:
    """The step the last training invocation continued from (None when it started afresh):
    the run's train seconds count only that invocation, which a reader of the report must know."""
    started = [event for event in read_events(folder / EVENTS_FILE) if event["event"] == "started"]
    return started[-1].get("resumed_from") if started else None


def execute_run(run: Run, dataset: Dataset, out: Path, preset: ExperimentPreset, device: str,
                progress: Optional[Progress] = None) -> Dict[str, object]:
    """Train (or resume) and evaluate one run; returns its evaluation document."""
    from .train import train
    from .train_options import OPTIONS_FILE

    folder = run_folder(out, run)
    started = time.monotonic()
    trained_now = False
    model = folder / MODEL_FOLDER
    if not (folder / OPTIONS_FILE).is_file() or not _training_finished(folder):
        source = training_dataset(dataset, out, run.row, run.seed)
        resume = (folder / OPTIONS_FILE).is_file()
        options = preset.train_options(source, folder, run.row, run.seed, device, resume=resume)
        model = train(options, progress=None if progress is None else lambda f, m: progress(0.9 * f, m))
        trained_now = True
    train_seconds = time.monotonic() - started if trained_now else None
    resumed_from = _resumed_from(folder) if trained_now else None
    started = time.monotonic()
    test = [e for e in dataset.split("test") if e.label_status != "none"]
    evaluations, background = evaluate_model(
        model, test, device, None if progress is None else lambda f, m: progress(0.9 + 0.1 * f, m))
    document: Dict[str, object] = {
        "format": EVALUATION_FORMAT, "run_id": run.run_id, "row": run.row.to_json(), "seed": run.seed,
        "model": str(model), "dataset": str(dataset.root.resolve()), "test_cases": [e.case_id for e in test],
        "summary": summarise(evaluations), "training": _training_summary(model),
        "background_histogram": [int(v) for v in background],
        "seconds": {"train": train_seconds, "train_resumed_from_step": resumed_from,
                    "evaluate": time.monotonic() - started},
        "evaluated": now_iso(), "cases": [e.to_dict() for e in evaluations],
    }
    atomic_write_json(folder / EVALUATION_FILE, document)
    return document


def _training_finished(folder: Path) -> bool:
    from .checkpoint import read_checkpoint_progress

    progress = read_checkpoint_progress(folder)
    return bool(progress and progress.get("finished")) and (folder / MODEL_FOLDER / "model.json").is_file()


# ---------------------------------------------------------------------------------- the grid


def run_grid(dataset_path: Path, out: Path, preset: ExperimentPreset, seeds: Optional[Sequence[int]] = None,
             tables: Optional[Sequence[int]] = None, device: str = "auto", report_only: bool = False,
             runs: Optional[Sequence[Run]] = None, key_rows_only: bool = False,
             log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
             progress: Optional[Progress] = None, workers: int = 1) -> List[RunOutcome]:
    """Every run of `tables` (only their key rows with `key_rows_only`) with `seeds` (default:
    the preset's), or just `runs` when given:
    skipped when finished, trained and evaluated otherwise (nothing is trained with
    `report_only`), by `workers` processes at once when more than one (experiment_workers.py).
    A failing run is reported and the grid goes on; TrainingStopped (Ctrl-C, SIGTERM) stops
    the grid with GridStopped."""
    seeds = check_seeds(list(preset.seeds) if seeds is None else list(seeds))
    tables = check_tables(tables)
    workers = check_workers(workers)
    dataset = read_dataset(dataset_path)
    check_dataset(dataset)
    out = Path(out)
    if report_only and not (out / EXPERIMENT_FILE).is_file():
        raise BrainMetSegError(f"{out}: no {EXPERIMENT_FILE}; nothing to report (run without --report-only first)")
    if not report_only:
        from .devices import resolve_device

        resolve_device(device)  # an unusable device is refused before the first run, not after an hour
    claim_folder(out, preset, dataset)
    runs = plan_runs(tables, seeds, key_rows_only) if runs is None else list(runs)
    done: Dict[str, RunOutcome] = {}
    for run in runs:
        folder = run_folder(out, run)
        if is_finished(folder):
            done[run.run_id] = RunOutcome(run, "skipped", read_evaluation(folder))
        elif report_only:
            done[run.run_id] = RunOutcome(run, "missing", progress=_unfinished_progress(folder))
    pending = [run for run in runs if run.run_id not in done]
    if workers > 1 and len(pending) > 1:
        done.update(_run_in_workers(pending, dataset, out, preset, device, workers, log, progress))
    else:
        for number, run in enumerate(pending):
            done[run.run_id] = _run_here(run, f"[{number + 1}/{len(pending)}] {run.run_id}", dataset, out, preset,
                                         device, log, progress, (number, len(pending)))
    return [done[run.run_id] for run in runs]


def _run_here(run: Run, where: str, dataset: Dataset, out: Path, preset: ExperimentPreset, device: str,
              log: Callable[[str], None], progress: Optional[Progress], position: Tuple[int, int]) -> RunOutcome:
    """One run in this process."""
    log(f"{where}: training and evaluating")
    from .train import TrainingStopped  # torch: imported once there is something to train

    def run_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress((position[0] + fraction) / position[1], f"{run.run_id}: {message}")

    try:
        evaluation = execute_run(run, dataset, out, preset, device, run_progress)
    except TrainingStopped as stopped:
        raise GridStopped(f"{where}: {stopped}") from None
    except Exception as error:  # one failed run must not cost the rest of an hour-long grid
        message = str(error) or type(error).__name__
        log(f"{where}: FAILED: {message}")
        if not isinstance(error, BrainMetSegError):
            log(traceback.format_exc())
        return RunOutcome(run, "failed", error=message)
    log(f"{where}: {scores_line(evaluation['summary'])}")
    return RunOutcome(run, "finished", evaluation)


def _run_in_workers(runs: Sequence[Run], dataset: Dataset, out: Path, preset: ExperimentPreset, device: str,
                    workers: int, log: Callable[[str], None], progress: Optional[Progress]) -> Dict[str, RunOutcome]:
    """`runs` in worker processes; Table 3's subsets are written here first, once each."""
    for run in runs:
        training_dataset(dataset, out, run.row, run.seed)
    try:
        results = run_in_workers(runs, dataset.root, out, preset.to_json(), device, workers, log, progress)
    except WorkersStopped as stopped:
        raise GridStopped(str(stopped)) from None
    outcomes: Dict[str, RunOutcome] = {}
    for run in runs:
        status, error = results.get(run.run_id, ("failed", "no worker reported on it"))
        folder = run_folder(out, run)
        if status in ("finished", "skipped") and is_finished(folder):
            outcomes[run.run_id] = RunOutcome(run, status, read_evaluation(folder))
        else:
            error = error or f"not finished; see {log_path(out, run.run_id)}"
            outcomes[run.run_id] = RunOutcome(run, "failed", error=error)
    return outcomes


def scores_line(summary: Dict[str, object]) -> str:
    """'AP 0.333, max sensitivity 0.422': a finished run in one line of the log."""
    return f"AP {_number(summary['ap'])}, max sensitivity {_number(summary['max_sensitivity'])}"


def _number(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"
