"""Test-set scores of a training run after every epoch, not only at the epoch selection kept.

Why: networks trained on noisy labels are known to fit the clean pattern first and the noise
later. If plain CE on censored labels only learns to call the unlabelled lesions background
once it has seen them many times, a short schedule (the CPU runs so far drew each brain slice
about once) cannot show the loss of sensitivity that the paper (10 epochs) and the full-size
H200 run (at least 6 draws of each brain slice) saw. Scoring every epoch of one longer run shows
the trajectory directly.

The trainer keeps only its last checkpoint, so `watch` copies it after every epoch's checkpoint
event (it polls the runs' events.jsonl; the next checkpoint comes 200 steps later) and `score`
scores each copy on the uncensored test split. Nothing is written into the run folders.

    python epoch_trajectory.py watch SNAPSHOTS RUN [RUN ...]      # while the runs train
    python epoch_trajectory.py score DATASET SNAPSHOTS OUT.json RUN [RUN ...]
    python epoch_trajectory.py table OUT.json                        # the markdown table again
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from BrainMetSegLib.atomic import atomic_path, atomic_write_json
from BrainMetSegLib.checkpoint import CHECKPOINT_FILE, load_checkpoint, read_checkpoint_progress
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.events import EVENTS_FILE, read_events
from BrainMetSegLib.experiment import MODEL_FOLDER, evaluate_model
from BrainMetSegLib.metrics import summarise
from BrainMetSegLib.model_folder import read_model_config, save_model_folder

POLL_S = 15.0
ENDED = ("finished", "failed", "stopped")


def watch(snapshots: Path, runs: List[Path]) -> None:
    """Copy each run's checkpoint once per epoch end, until every run has ended."""
    while True:
        ended = 0
        for run in runs:
            events = read_events(run / EVENTS_FILE)
            epoch_ends = {e["step"] for e in events if e.get("event") == "checkpoint" and e.get("reason") == "epoch"}
            step = read_checkpoint_progress(run).get("step")
            if step in epoch_ends:
                target = snapshots / run.name / f"step-{step:05d}"
                if not (target / CHECKPOINT_FILE).is_file():
                    with atomic_path(target / CHECKPOINT_FILE) as tmp:
                        shutil.copyfile(run / CHECKPOINT_FILE, tmp)
                    if read_checkpoint_progress(target).get("step") != step:
                        shutil.rmtree(target)  # replaced while copying: the next poll decides again
                    else:
                        print(f"{run.name}: kept step {step}", flush=True)
            if events and events[-1].get("event") in ENDED:  # a resumed run appends "started" again
                ended += 1
        if ended == len(runs):
            return
        time.sleep(POLL_S)


def _epoch_records(run: Path) -> Dict[int, dict]:
    return {e["step"]: e for e in read_events(run / EVENTS_FILE) if e.get("event") == "epoch"}


def score(dataset: Path, snapshots: Path, out: Path, runs: List[Path]) -> None:
    """Score every kept step of every run on the test split; merge into OUT.json."""
    test = [entry for entry in read_dataset(dataset).split("test") if entry.label_status != "none"]
    rows = json.loads(out.read_text()) if out.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs:
            config = read_model_config(run / MODEL_FOLDER)
            epochs = _epoch_records(run)
            for folder in sorted((snapshots / run.name).glob("step-*")):
                key = f"{run.name}/{folder.name}"
                if key in rows:
                    continue
                checkpoint = load_checkpoint(folder)
                step = checkpoint.progress["step"]
                model = save_model_folder(Path(scratch) / run.name / folder.name, checkpoint.model, config)
                evaluations, _ = evaluate_model(model, test, "cpu")
                summary = summarise(evaluations)
                record = epochs.get(step, {})
                rows[key] = {
                    "run": run.name, "step": step,
                    "validation_ap": (record.get("validation") or {}).get("ap"),
                    "train_positive_share": record.get("train_positive_share"),
                    "train_label_share": record.get("train_label_share"),
                    **{k: summary[k] for k in ("ap", "max_sensitivity", "fp_per_case", "tp_dice",
                                               "lesion_entropy_bits", "n_lesions")},
                    "froc": summary["froc"], "sensitivity_by_diameter": summary["sensitivity_by_diameter"]}
                print(key, json.dumps(rows[key]), file=sys.stderr, flush=True)
                atomic_write_json(out, dict(sorted(rows.items())))
    print_table(rows)


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}"


def print_table(rows: Dict[str, dict]) -> None:
    """One line per scored step; the < 3 mm column only when the test split has such lesions
    (the full-size cohort does, the `--small` one has none)."""
    tiny = any(row["sensitivity_by_diameter"].get("0-3") is not None for row in rows.values())
    print("| run | step | test mAP | max sens. | sens. at 2 FP/case | FP per case | " + ("< 3 mm | " if tiny else "")
          + "3–6 mm | 6–10 mm | validation AP | predicted / labelled lesion share of training brain |")
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if tiny else ""))
    for row in rows.values():
        share = row["train_positive_share"], row["train_label_share"]
        shares = "—" if None in share else f"{100 * share[0]:.2f}% / {100 * share[1]:.2f}%"
        smallest = f"| {_percent(row['sensitivity_by_diameter'].get('0-3'))} " if tiny else ""
        print(f"| {row['run']} | {row['step']} | {_percent(row['ap'])} | {_percent(row['max_sensitivity'])} "
              f"| {_percent(row['froc'].get('2'))} | {row['fp_per_case']:.1f} {smallest}"
              f"| {_percent(row['sensitivity_by_diameter'].get('3-6'))} "
              f"| {_percent(row['sensitivity_by_diameter'].get('6-10'))} "
              f"| {'—' if row['validation_ap'] is None else format(row['validation_ap'], '.2f')} | {shares} |")


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "watch":
        watch(Path(arguments[0]), [Path(a) for a in arguments[1:]])
    elif command == "score":
        score(Path(arguments[0]), Path(arguments[1]), Path(arguments[2]), [Path(a) for a in arguments[3:]])
    elif command == "table":
        print_table(json.loads(Path(arguments[0]).read_text()))
    else:
        sys.exit(f"{command!r}: expected watch, score or table")
