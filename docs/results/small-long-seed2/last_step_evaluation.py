"""Score the last training step of every run that kept an earlier epoch, on the same test cases.

The cohort has one validation case, and model selection (best validation AP after each epoch)
kept step 500 in five of the nine Table 1 runs. Each run's checkpoint still holds the weights of
step 1,000, so this asks whether the choice of epoch explains the spread between seeds. Nothing
is written into the experiment folder (the step-1,000 models go to a temporary folder); the
figures are merged into OUT.json, one entry per run, so that runs finished later can be added:

    .venv/bin/python docs/results/small-long-seed2/last_step_evaluation.py /tmp/s5/fresh2 /tmp/s5/synth-seed2 \
        docs/results/small-long-seed2/last_step.json [RUN_ID ...]

Without RUN_IDs every run that kept an earlier epoch is scored (about 90 s each on 2 cores).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from BrainMetSegLib.atomic import atomic_write_json
from BrainMetSegLib.checkpoint import load_checkpoint
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.experiment import EVALUATION_FILE, RUNS_FOLDER, evaluate_model
from BrainMetSegLib.metrics import summarise
from BrainMetSegLib.model_folder import read_model_config, save_model_folder

COMPARED = ("ap", "max_sensitivity", "fp_per_case")


def main(experiment: Path, dataset: Path, out: Path, run_ids: list) -> None:
    test = [entry for entry in read_dataset(dataset).split("test") if entry.label_status != "none"]
    rows = json.loads(out.read_text()) if out.is_file() else {}
    runs = [experiment / RUNS_FOLDER / run_id for run_id in run_ids] or sorted((experiment / RUNS_FOLDER).iterdir())
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs:
            kept = json.loads((run / EVALUATION_FILE).read_text())
            if kept["training"]["selected_epoch"] == kept["training"]["epochs"]:
                print(f"{run.name}: kept its last epoch; nothing to score", file=sys.stderr)
                continue
            checkpoint = load_checkpoint(run)
            model = save_model_folder(Path(scratch) / run.name, checkpoint.model, read_model_config(run / "model"))
            evaluations, _ = evaluate_model(model, test, "cpu")
            last = summarise(evaluations)
            rows[run.name] = {"step": checkpoint.progress["step"],
                              **{f"{key}_kept": kept["summary"][key] for key in COMPARED},
                              **{f"{key}_last": last[key] for key in COMPARED},
                              "froc2_kept": kept["summary"]["froc"]["2"], "froc2_last": last["froc"]["2"]}
            print(run.name, json.dumps(rows[run.name]), file=sys.stderr, flush=True)
            atomic_write_json(out, dict(sorted(rows.items())))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
