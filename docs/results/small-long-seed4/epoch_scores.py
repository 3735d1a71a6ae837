"""Score both epochs of every run on the test split, to see whether 4 validation cases pick the better one.

With one validation case (cohort seeds 2 and 3) the trainer's choice of epoch (best validation
AP) kept step 500 in 9 of the 18 key-row runs, and in 8 of those 9 step 1,000 had the higher
test AP (their last_step.json files). This cohort has 4 validation cases (`synth --val-cases
4`). The kept epoch is already scored by the experiment; the other is scored here from the run's checkpoint (step 1,000) or
from a copy of the step-500 checkpoint taken while the run trained (EPOCH1_DIR/<run id>/
checkpoint.safetensors; step 600 overwrites the run's own). Nothing is written into the
experiment folder; OUT.json has one entry per run in last_step_evaluation.py's format (so that
combine_seeds.py reads it) plus each epoch's validation AP and, where scored, test figures:

    .venv/bin/python docs/results/small-long-seed4/epoch_scores.py /tmp/s15/fresh4 /tmp/s15/synth-seed4 \
        /tmp/s15/epoch1 docs/results/small-long-seed4/epoch_scores.json

It then prints, per run, both epochs' validation AP and test figures and whether the kept epoch
had the higher test AP (the quantity selection maximises on validation).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

from BrainMetSegLib.atomic import atomic_write_json
from BrainMetSegLib.checkpoint import load_checkpoint
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.events import read_events
from BrainMetSegLib.experiment import EVALUATION_FILE, RUNS_FOLDER, evaluate_model
from BrainMetSegLib.metrics import summarise
from BrainMetSegLib.model_folder import read_model_config, save_model_folder

COMPARED = ("ap", "max_sensitivity", "fp_per_case")


def figures(summary: dict) -> Dict[str, float]:
    return {**{key: summary[key] for key in COMPARED}, "froc2": summary["froc"]["2"]}


def validation_ap(run: Path) -> Dict[str, float]:
    return {str(event["epoch"]): event["validation"]["ap"]
            for event in read_events(run / "events.jsonl") if event["event"] == "epoch"}


def score_checkpoint(folder: Path, run: Path, test: list, scratch: Path) -> Optional[Dict[str, float]]:
    """Test figures of the weights in folder/checkpoint.safetensors; None where there is none."""
    if not (folder / "checkpoint.safetensors").is_file():
        return None
    checkpoint = load_checkpoint(folder)
    model = save_model_folder(scratch / f"{run.name}-{checkpoint.progress['step']}", checkpoint.model,
                              read_model_config(run / "model"))
    evaluations, _ = evaluate_model(model, test, "cpu")
    return figures(summarise(evaluations))


def score_run(run: Path, epoch1: Path, test: list, scratch: Path) -> Dict[str, object]:
    """The run's kept epoch from its evaluation; the other of its two from the checkpoint that holds it."""
    kept = json.loads((run / EVALUATION_FILE).read_text())
    epochs, selected = kept["training"]["epochs"], kept["training"]["selected_epoch"]
    other_epoch, other_folder = (epochs, run) if selected != epochs else (1, epoch1 / run.name)
    test_by_epoch = {str(selected): figures(kept["summary"])}
    other = score_checkpoint(other_folder, run, test, scratch)
    if other is not None:
        test_by_epoch[str(other_epoch)] = other
    entry: Dict[str, object] = {"step": kept["training"]["steps"], "selected_epoch": selected,
                                "validation_ap": validation_ap(run), "test": test_by_epoch}
    last = test_by_epoch.get(str(epochs))
    if last is not None:
        entry.update({f"{key}_kept": value for key, value in test_by_epoch[str(selected)].items()})
        entry.update({f"{key}_last": value for key, value in last.items()})
    return entry


def verdict(entry: dict) -> str:
    test = entry["test"]
    if len(test) < 2:
        return "other epoch not scored"
    kept = test[str(entry["selected_epoch"])]["ap"]
    other = max(figures["ap"] for epoch, figures in test.items() if epoch != str(entry["selected_epoch"]))
    return "kept the better" if kept >= other else "kept the worse"


def print_table(rows: Dict[str, dict]) -> None:
    print("| run | kept epoch | validation AP, epoch 1 / 2 | test AP, epoch 1 / 2 | test max sens., epoch 1 / 2 | |")
    print("|---|---|---|---|---|---|")
    for run_id, entry in rows.items():
        def pair(source: dict, key: Optional[str]) -> str:
            values = [source.get(epoch) for epoch in ("1", "2")]
            return " / ".join("—" if value is None else f"{100 * (value if key is None else value[key]):.0f}"
                              for value in values)
        print(f"| {run_id} | {entry['selected_epoch']} | {pair(entry['validation_ap'], None)} | "
              f"{pair(entry['test'], 'ap')} | {pair(entry['test'], 'max_sensitivity')} | {verdict(entry)} |")


def main(experiment: Path, dataset: Path, epoch1: Path, out: Path) -> None:
    test = [entry for entry in read_dataset(dataset).split("test") if entry.label_status != "none"]
    rows = json.loads(out.read_text()) if out.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for run in sorted((experiment / RUNS_FOLDER).iterdir()):
            if run.name in rows or not (run / EVALUATION_FILE).is_file():
                continue
            rows[run.name] = score_run(run, epoch1, test, Path(scratch))
            print(run.name, json.dumps(rows[run.name]), file=sys.stderr, flush=True)
            atomic_write_json(out, dict(sorted(rows.items())))
    print_table(dict(sorted(rows.items())))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
