"""Mean and spread of the key rows over training seeds that were run into separate experiment folders.

Training seeds 0 and 1 of cohort seed 3 were run in one session and seed 2 in a later one, after
the first folder was gone; only each folder's results.json was kept, not the per-case
evaluations that `brainmetseg experiment --report-only` needs. This reads the results.json files
(refusing to mix cohorts, presets or test sets) and the step-1,000 scores of
last_step_evaluation.py, and prints the tables the README shows, in percent:

    .venv/bin/python docs/results/small-long-seed3/combine_seeds.py docs/results/small-long-seed3/last_step.json \
        docs/results/small-long-seed3/results.json docs/results/small-long-seed3/seed2/results.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from BrainMetSegLib.experiment_grid import BASELINE, Row, Run
from BrainMetSegLib.seed_statistics import mean_sd

KEY_ROWS = ((BASELINE, "full labels, CE (3, 1)"),
            (Row("stochastic", 3.0, 1.0), "50% censored stochastically, CE (3, 1)"),
            (Row("stochastic", 3.0, 0.1), "50% censored stochastically, lopsided (3, 0.1)"))
FIGURES = (("ap", "mAP", 100.0), ("max_sensitivity", "max sens.", 100.0),
           ("fp_per_case", "FP per case", 1.0), ("froc2", "sens. at 2 FP/case", 100.0))
MUST_AGREE = ("preset", "cohort", "synthetic_data")


def read_runs(results_files: List[Path]) -> Dict[str, dict]:
    """Every finished key-row run of the files, by run id; files that differ in what they measured are refused."""
    runs: Dict[str, dict] = {}
    first = None
    for path in results_files:
        results = json.loads(path.read_text())
        if first is None:
            first = (path, results)
        for field in MUST_AGREE:
            if results[field] != first[1][field]:
                sys.exit(f"{path}: its {field!r} differs from {first[0]}'s; these runs are not comparable")
        for run_id, run in results["runs"].items():
            if run["summary"] is None or run["row"]["key"] not in {row.key() for row, _ in KEY_ROWS}:
                continue
            if run_id in runs:
                sys.exit(f"{path}: run {run_id} is also in an earlier file")
            runs[run_id] = run
    same_cohort = {(run["summary"]["n_lesions"], run["training"]["data"]["train_slices"]) for run in runs.values()}
    full_label_lesion_slices = {run["training"]["data"]["train_lesion_slices"] for run in runs.values()
                                if run["row"]["censor"] == "none"}
    if len(same_cohort) != 1 or len(full_label_lesion_slices) > 1:
        sys.exit(f"the runs were trained or scored on different data (test lesions, training slices: "
                 f"{sorted(same_cohort)}; lesion slices with full labels: {sorted(full_label_lesion_slices)})")
    return runs


def figures_of(run: dict, last_step: Dict[str, dict], run_id: str) -> Tuple[dict, dict]:
    """The run's figures as selected and at its last step (the same when it kept the last epoch)."""
    summary = run["summary"]
    selected = {"ap": summary["ap"], "max_sensitivity": summary["max_sensitivity"],
                "fp_per_case": summary["fp_per_case"], "froc2": summary["froc"]["2"]}
    if run["training"]["selected_epoch"] == run["training"]["epochs"]:
        return selected, selected
    if run_id not in last_step:
        sys.exit(f"{run_id} kept an earlier epoch and has no step-{run['training']['steps']} score in the "
                 "last-step file; run last_step_evaluation.py on it first")
    last = last_step[run_id]
    return selected, {key: last[f"{key}_last"] for key, _, _ in FIGURES}


def cell(values: List[float], scale: float, sign: str = "") -> str:
    """Percentages to whole points (the spread over seeds is far wider), counts to one decimal."""
    mean, sd, _ = mean_sd(values)
    digits = 0 if scale == 100.0 else 1
    each = ", ".join(f"{scale * v:{sign}z.{digits}f}" for v in values)
    return f"{scale * mean:{sign}z.{digits}f} ± {scale * sd:.{digits}f} ({each})"


def table(title: str, per_row: Dict[str, List[dict]], seeds: List[int]) -> List[str]:
    header = f"| {title}, mean ± sd over training seeds {', '.join(map(str, seeds))} (each seed) | " \
             + " | ".join(name for _, name, _ in FIGURES) + " | max sens. kept |"
    lines = [header, "|---" * (len(FIGURES) + 2) + "|"]
    baseline, _, _ = mean_sd([f["max_sensitivity"] for f in per_row[BASELINE.key()]])
    for row, label in KEY_ROWS:
        cells = [cell([f[figure] for f in per_row[row.key()]], scale) for figure, _, scale in FIGURES]
        kept, _, _ = mean_sd([f["max_sensitivity"] for f in per_row[row.key()]])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * kept / baseline:.0f}% |")
    return lines


def differences(title: str, per_row: Dict[str, List[dict]]) -> str:
    censored, lopsided = per_row[KEY_ROWS[1][0].key()], per_row[KEY_ROWS[2][0].key()]
    parts = []
    for figure, name, scale in FIGURES:
        paired = [lop[figure] - ce[figure] for lop, ce in zip(lopsided, censored)]
        parts.append(f"{name} {cell(paired, scale, '+')}")
    return f"Lopsided − censored CE, {title}, paired by seed: " + "; ".join(parts) + "."


def main(last_step_file: Path, results_files: List[Path]) -> None:
    runs = read_runs(results_files)
    last_step = json.loads(last_step_file.read_text())
    seeds = sorted({run["seed"] for run in runs.values()})
    selected: Dict[str, List[dict]] = {row.key(): [] for row, _ in KEY_ROWS}
    last: Dict[str, List[dict]] = {row.key(): [] for row, _ in KEY_ROWS}
    for row, _ in KEY_ROWS:
        for seed in seeds:
            run_id = Run(row, seed).run_id
            if run_id not in runs:
                sys.exit(f"{run_id} is in none of the results files; every key row needs every seed")
            as_selected, at_last = figures_of(runs[run_id], last_step, run_id)
            selected[row.key()].append(as_selected)
            last[row.key()].append(at_last)
    steps = {run["training"]["steps"] for run in runs.values()}
    last_title = f"at step {steps.pop():,}" if len(steps) == 1 else "at the last step"
    print("\n".join(table("as selected", selected, seeds)))
    print()
    print("\n".join(table(last_title, last, seeds)))
    print()
    print(differences("as selected", selected))
    print()
    print(differences(last_title, last))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
