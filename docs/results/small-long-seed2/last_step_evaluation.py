"""Score the last training step of every run that kept an earlier epoch, on the same test cases.

The cohort has one validation case, and model selection (best validation AP after each epoch)
kept step 500 in five of the nine runs. Each run's checkpoint still holds the weights of step
1,000, so this asks whether the choice of epoch explains the spread between seeds. It writes
nothing into the experiment folder; the step-1,000 models go to a temporary folder.

    .venv/bin/python docs/results/small-long-seed2/last_step_evaluation.py /tmp/s5/fresh2 /tmp/s5/synth-seed2 \
        > docs/results/small-long-seed2/last_step.json

(each run's figures go to stderr as they come, the JSON of all of them to stdout at the end).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from BrainMetSegLib.checkpoint import load_checkpoint
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.experiment import EVALUATION_FILE, RUNS_FOLDER, evaluate_model
from BrainMetSegLib.metrics import summarise
from BrainMetSegLib.model_folder import read_model_config, save_model_folder


def main(experiment: Path, dataset: Path) -> None:
    test = [entry for entry in read_dataset(dataset).split("test") if entry.label_status != "none"]
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for run in sorted((experiment / RUNS_FOLDER).iterdir()):
            kept = json.loads((run / EVALUATION_FILE).read_text())
            if kept["training"]["selected_epoch"] == kept["training"]["epochs"]:
                continue
            checkpoint = load_checkpoint(run)
            model = save_model_folder(Path(scratch) / run.name, checkpoint.model, read_model_config(run / "model"))
            evaluations, _ = evaluate_model(model, test, "cpu")
            last = summarise(evaluations)
            rows[run.name] = {"step": checkpoint.progress["step"],
                              **{f"{key}_kept": kept["summary"][key] for key in ("ap", "max_sensitivity", "fp_per_case")},
                              **{f"{key}_last": last[key] for key in ("ap", "max_sensitivity", "fp_per_case")},
                              "froc2_kept": kept["summary"]["froc"]["2"], "froc2_last": last["froc"]["2"]}
            print(run.name, json.dumps(rows[run.name]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
