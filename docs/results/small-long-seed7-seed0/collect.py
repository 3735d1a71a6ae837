"""Collect run.sh's runs into one JSON file and print the README's table.

Usage: collect.py WORK OUT.json. For every run folder WORK/diag/NAME: its options, its epochs
(training loss, predicted and labelled voxel shares, validation lesions found, what the trainer
warned then and what its collapse watch says now) and the test scores of its selected model
(WORK/eval-NAME.json, written by `brainmetseg evaluate`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

from BrainMetSegLib.atomic import atomic_write_json
from BrainMetSegLib.collapse_watch import validation_verdict
from BrainMetSegLib.events import read_events
from BrainMetSegLib.train_options import read_options_file

EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_positive_share", "train_label_share", "val_positive_share",
                "val_label_share", "collapse", "selected")
TEST_FIELDS = ("ap", "ap_ci95", "max_sensitivity", "fp_per_case", "froc", "n_lesions", "n_cases")
OPTION_FIELDS = ("loss", "beta", "seed", "censor_seed", "lr", "alpha", "epochs", "steps_per_epoch")


def collect_run(run: Path, scores: Path) -> Dict[str, Any]:
    events = read_events(run / "events.jsonl")
    _, options = read_options_file(run)
    epochs = []
    for event in (e for e in events if e["event"] == "epoch"):
        record = {key: event[key] for key in EPOCH_FIELDS}
        validation = event["validation"]
        record.update({f"val_{key}": validation[key] for key in ("ap", "max_sensitivity", "n_lesions", "n_predictions")})
        record["watch_now"] = validation_verdict(event["val_positive_share"], event["val_label_share"], validation,
                                                 f"epoch {event['epoch']}, validation")
        epochs.append(record)
    test = json.loads(scores.read_text(encoding="utf-8"))
    return {"options": {key: getattr(options, key) for key in OPTION_FIELDS}, "epochs": epochs,
            "test": {key: test[key] for key in TEST_FIELDS}}


def table(runs: Dict[str, Dict[str, Any]]) -> str:
    rows = ["| run | loss, β | seed / draw / lr / α / steps | validation lesions found, by epoch | test mAP "
            "| test max sens. | FP per case | sens. at 2 FP/case |", "|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        o, t = run["options"], run["test"]
        found = ", ".join(f"{round(e['val_max_sensitivity'] * e['val_n_lesions'])}/{e['val_n_lesions']}"
                          for e in run["epochs"])
        rows.append(f"| {name} | {o['loss']}, {o['beta']:g} | {o['seed']} / {o['censor_seed']} / {o['lr']:g} / "
                    f"{o['alpha']:g} / {o['epochs'] * o['steps_per_epoch']} | {found} | {100 * t['ap']:.0f} | "
                    f"{100 * t['max_sensitivity']:.0f} | {t['fp_per_case']:.1f} | {100 * t['froc']['2']:.0f} |")
    return "\n".join(rows)


def main(work: Path, out: Path) -> None:
    runs = {run.name: collect_run(run, work / f"eval-{run.name}.json")
            for run in sorted((work / "diag").iterdir()) if (work / f"eval-{run.name}.json").exists()}
    atomic_write_json(out, runs)
    print(table(runs))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
