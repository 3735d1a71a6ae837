"""Lopsided minus censored CE over several cohort seeds, each with the same training seeds.

One cohort seed's three training seeds share its test set and its censoring draws, so their
differences are not independent; the cohort seeds are. This prints, for the key rows of Table 1
(censored stochastically, the default) or of Table 2 (`--censoring size`), each cohort's mean
paired difference, the mean and sd over cohorts, a one-sample t-test of
the cohort means against zero (two-sided, n − 1 degrees of freedom), and how many of all the
(cohort, training seed) pairs were ahead, level or behind. Figures as selected come from each
results.json; figures at the last step from the epoch_scores.json beside it (epoch_scores.py).
Every file must come from the same preset and cohort recipe, differing only in the cohort seed.
Files of the same cohort seed are one cohort whose runs were trained in several experiment
folders; a run finished in two of them is refused (cohort 4's and cohort 7's Table 1 files and
their size-rows files both hold a full-label baseline, so they are not given together):

    .venv/bin/python docs/results/pool_cohort_seeds.py docs/results/small-long-seed{4,5,6}/results.json
    .venv/bin/python docs/results/pool_cohort_seeds.py docs/results/small-long-seed{4,5,6,7}/results.json
    .venv/bin/python docs/results/pool_cohort_seeds.py --censoring size docs/results/small-long-seed{4/size-rows,5,6}/results.json
    .venv/bin/python docs/results/pool_cohort_seeds.py --censoring size docs/results/small-long-seed{4/size-rows,5,6,7/size-rows}/results.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from scipy import stats

from BrainMetSegLib.experiment_grid import BASELINE, Row, Run
from BrainMetSegLib.seed_statistics import mean_sd

KEY_ROWS = {censoring: (Row(censoring, 3.0, 1.0), Row(censoring, 3.0, 0.1)) for censoring in ("stochastic", "size")}
"""Censored CE and censored lopsided, by censoring mode."""
CENSORING_NAMES = {"stochastic": "censored stochastically", "size": "censored by size"}
AS_SELECTED = (("max_sensitivity", "max sens.", 100.0), ("ap", "mAP", 100.0),
               ("froc0.5", "sens. at 0.5 FP/case", 100.0), ("froc1", "sens. at 1 FP/case", 100.0),
               ("froc2", "sens. at 2 FP/case", 100.0), ("fp_per_case", "FP per case", 1.0))
AT_LAST_STEP = tuple(f for f in AS_SELECTED if f[0] in ("max_sensitivity", "ap", "froc2", "fp_per_case"))
COHORT_RECIPE = ("generator", "preset", "cases", "val_cases", "changed_parameters")

Figures = Dict[str, float]


def selected_figures(summary: dict) -> Figures:
    return {"max_sensitivity": summary["max_sensitivity"], "ap": summary["ap"],
            "fp_per_case": summary["fp_per_case"],
            **{f"froc{rate}": summary["froc"][rate] for rate in ("0.5", "1", "2")}}


Runs = Dict[str, Tuple[Figures, Figures]]


def read_runs(results_file: Path, results: dict, rows: Tuple[Row, ...]) -> Runs:
    """For each finished run of these rows in the file, its figures as selected and at its last step."""
    epoch_file = results_file.parent / "epoch_scores.json"
    last_step = json.loads(epoch_file.read_text()) if epoch_file.is_file() else {}
    runs = {}
    for row in rows:
        for seed in results["seeds"]:
            run_id = Run(row, seed).run_id
            run = results["runs"].get(run_id)
            if run is None or run["summary"] is None:
                continue
            selected = selected_figures(run["summary"])
            if run["training"]["selected_epoch"] == run["training"]["epochs"]:
                last = selected
            elif run_id in last_step:
                last = {key: last_step[run_id][f"{key}_last"] for key, _, _ in AT_LAST_STEP}
            else:
                sys.exit(f"{results_file}: {run_id} kept an earlier epoch and {epoch_file} has no "
                         "last-step score for it; run epoch_scores.py first")
            runs[run_id] = (selected, last)
    return runs


def check_comparable(cohorts: List[Tuple[Path, dict]]) -> None:
    first_path, first = cohorts[0]
    for path, results in cohorts[1:]:
        if results["preset"] != first["preset"] or results["seeds"] != first["seeds"]:
            sys.exit(f"{path}: its preset or training seeds differ from {first_path}'s")
        for field in COHORT_RECIPE:
            if results["cohort"][field] != first["cohort"][field]:
                sys.exit(f"{path}: its cohort's {field!r} differs from {first_path}'s; not the same recipe")


def merge_cohorts(read: List[Tuple[Path, dict, Runs]], rows: Tuple[Row, ...]) -> List[Tuple[int, Runs]]:
    """One entry per cohort seed, with the runs of all its files; every row needs every training seed."""
    merged: Dict[int, Runs] = {}
    for path, results, runs in read:
        cohort = merged.setdefault(results["cohort"]["seed"], {})
        twice = sorted(set(cohort) & set(runs))
        if twice:
            sys.exit(f"{path}: {', '.join(twice)} also finished in another file of cohort seed "
                     f"{results['cohort']['seed']}; give each run once")
        cohort.update(runs)
    if len(merged) < 2:
        sys.exit(f"cohort seeds {sorted(merged)}: at least two cohort seeds are needed")
    seeds = read[0][1]["seeds"]
    for cohort_seed, runs in merged.items():
        missing = [Run(row, seed).run_id for row in rows for seed in seeds if Run(row, seed).run_id not in runs]
        if missing:
            sys.exit(f"cohort seed {cohort_seed}: {', '.join(missing)} not finished in any file given; "
                     "every key row needs every training seed")
    return sorted(merged.items())


def cell(values: List[float], scale: float) -> str:
    mean, sd, _ = mean_sd(values)
    digits = 0 if scale == 100.0 else 1
    return f"{scale * mean:+.{digits}f} ± {scale * sd:.{digits}f}".replace("-", "−")


def pooled_table(title: str, cohorts: List[Tuple[int, List[Tuple[Figures, Figures]]]],
                 figures: Tuple[Tuple[str, str, float], ...]) -> List[str]:
    """cohorts: (cohort seed, [(lopsided, censored CE) figures per training seed])."""
    header = [f"lopsided − censored CE, {title}"] + [f"cohort {seed}" for seed, _ in cohorts] \
        + ["mean ± sd over cohorts", "t-test p", "pairs ahead / level / behind"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key, name, scale in figures:
        differences = [[lop[key] - ce[key] for lop, ce in pairs] for _, pairs in cohorts]
        cohort_means = [mean_sd(d)[0] for d in differences]
        every = [d for per_cohort in differences for d in per_cohort]
        better = (lambda d: d < -1e-9) if key == "fp_per_case" else (lambda d: d > 1e-9)
        ahead = sum(better(d) for d in every)
        level = sum(abs(d) <= 1e-9 for d in every)
        p_value = stats.ttest_1samp(cohort_means, 0.0).pvalue
        lines.append(f"| {name} | " + " | ".join(cell(d, scale) for d in differences)
                     + f" | {cell(cohort_means, scale)} | {p_value:.2f} | {ahead} / {level} / {len(every) - ahead - level} |")
    return lines


def row_mean(runs: Runs, row: Row, which: int) -> float:
    """Mean max sensitivity of the row's runs over the training seeds."""
    return mean_sd([figures[which]["max_sensitivity"] for run_id, figures in runs.items()
                    if run_id.startswith(row.key() + "-s")])[0]


def kept_table(cohorts: List[Tuple[int, Runs]], censored: Tuple[Row, Row], which: int, title: str) -> List[str]:
    """Share of the full-label max sensitivity each censored row kept, per cohort (ratio of means)."""
    lines = [f"| max sens. kept, {title} | " + " | ".join(f"cohort {seed}" for seed, _ in cohorts) + " |",
             "|---" * (len(cohorts) + 1) + "|"]
    for row, name in zip(censored, ("censored CE (3, 1)", "lopsided (3, 0.1)")):
        cells = [f"{100 * row_mean(runs, row, which) / row_mean(runs, BASELINE, which):.0f}%" for _, runs in cohorts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(results_files: List[Path], censoring: str) -> None:
    censored_ce, lopsided = censored = KEY_ROWS[censoring]
    censoring_name = CENSORING_NAMES[censoring]
    cohorts = [(path, json.loads(path.read_text())) for path in results_files]
    check_comparable(cohorts)
    rows = (BASELINE, *censored)
    by_cohort = merge_cohorts([(path, results, read_runs(path, results, rows)) for path, results in cohorts], rows)
    seeds = cohorts[0][1]["seeds"]
    steps = cohorts[0][1]["preset"]["epochs"] * cohorts[0][1]["preset"]["steps_per_epoch"]
    for which, title, figures in ((0, "as selected", AS_SELECTED), (1, f"at step {steps:,}", AT_LAST_STEP)):
        pairs = [(seed, [(runs[Run(lopsided, s).run_id][which], runs[Run(censored_ce, s).run_id][which])
                         for s in seeds]) for seed, runs in by_cohort]
        print("\n".join(pooled_table(f"{censoring_name}, {title}", pairs, figures)))
        print()
        print("\n".join(kept_table(by_cohort, censored, which, f"{censoring_name}, {title}")))
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--censoring", choices=sorted(KEY_ROWS), default="stochastic",
                        help="the key rows of Table 1 (stochastic, the default) or of Table 2 (size)")
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each cohort seed (at least two)")
    arguments = parser.parse_args()
    main(arguments.results, arguments.censoring)
