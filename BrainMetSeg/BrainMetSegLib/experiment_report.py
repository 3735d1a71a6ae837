"""report.md and results.json of an experiment folder, from the runs' evaluation.json alone.

Tables follow the paper's columns (training data, loss (α, β), mAP with 95% CI, max
sensitivity, TP Dice, in percent) plus what the claim is about: the share of the uncensored
baseline's max sensitivity and mAP that each row keeps. Where a row has several seeds the
cells are mean ± sd (sample sd) and each seed's values follow the table; "kept" is the
ratio of the row's mean to the baseline's mean.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .atomic import atomic_write_json, atomic_write_text
from .cohort_provenance import CohortProvenance, cohort_provenance
from .dataset import Dataset
from .experiment import RunOutcome, case_evaluations
from .experiment_comparison import finished_summaries, format_comparison, key_row_comparison
from .experiment_figures import plot_pr_curves, plot_probability_histograms, plot_sensitivity_by_diameter
from .experiment_grid import BASELINE, FIGURE3_ROWS, KEY_ROWS, TABLE_TITLES, TABLES, Row, Run, seeds_for
from .experiment_presets import ExperimentPreset
from .experiment_subsets import subset_size
from .metrics import DIAMETER_BINS, entropy_bits
from .seed_statistics import mean_sd, mean_sd_text
from .synth_changelog import COHORT_CHANGES

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
FIGURES_FOLDER = "figures"
RESULTS_FORMAT = 1
METRICS = ("ap", "max_sensitivity", "tp_dice", "ap_strict", "fp_per_case", "lesion_entropy_bits")
KEPT_METRICS = ("max_sensitivity", "ap")
FIGURE5_ROWS = FIGURE3_ROWS
CI_NOTE = ("The 95% CI of mAP is the Hanley & McNeil (1983) interval A ± 1.96·SE with n1 = ground-truth lesions "
           "and n2 = false-positive predictions, symmetric and clipped to [0, 100], unlike some of the paper's "
           "intervals, which are not symmetric about their mAP.")


# ---------------------------------------------------------------------------------- arithmetic


def percent_of_baseline(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    """Share of the baseline's value kept, in percent; None without a positive baseline."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return 100.0 * value / baseline


def row_statistics(row: Row, planned: Sequence[int], outcomes: Dict[str, RunOutcome]) -> Dict[str, object]:
    """Per-seed metrics of a row and their mean and sd over the seeds that finished."""
    per_seed, problems = [], []
    for seed in planned:
        outcome = outcomes.get(Run(row, seed).run_id)
        if outcome is None or outcome.evaluation is None:
            status = ("not run" if outcome is None or (outcome.status == "missing" and not outcome.progress)
                      else f"not finished, {outcome.progress}" if outcome.status == "missing"
                      else f"failed: {outcome.error}")
            problems.append({"seed": seed, "status": status})
            continue
        summary = outcome.evaluation["summary"]  # type: ignore[index]
        values = {metric: summary[metric] for metric in METRICS}
        per_seed.append({"seed": seed, "run_id": Run(row, seed).run_id, "ap_ci95": summary["ap_ci95"], **values,
                         "sensitivity_by_diameter": summary["sensitivity_by_diameter"]})
    mean, sd = {}, {}
    for metric in METRICS:
        mean[metric], sd[metric], _ = mean_sd([entry[metric] for entry in per_seed])
    return {"row": row.to_json(), "seeds_planned": list(planned), "seeds_done": [e["seed"] for e in per_seed],
            "per_seed": per_seed, "missing": problems, "mean": mean, "sd": sd}


def table_results(table: int, seeds: Sequence[int], outcomes: Dict[str, RunOutcome]) -> List[Dict[str, object]]:
    baseline = row_statistics(BASELINE, seeds_for(BASELINE, seeds), outcomes)
    results = []
    for row in TABLES[table]:
        stats = row_statistics(row, seeds_for(row, seeds), outcomes)
        stats["percent_of_baseline"] = {metric: percent_of_baseline(stats["mean"][metric],  # type: ignore[index]
                                                                    baseline["mean"][metric])  # type: ignore[index]
                                        for metric in KEPT_METRICS}
        results.append(stats)
    return results


# ---------------------------------------------------------------------------------- text


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.0f}"


def _mean_cell(stats: Dict[str, object], metric: str) -> str:
    return mean_sd_text(stats["mean"][metric], stats["sd"][metric], scale=100, digits=0, sd_digits=1)  # type: ignore[index]


def _ap_cell(stats: Dict[str, object]) -> str:
    per_seed = stats["per_seed"]
    if len(per_seed) == 1:  # type: ignore[arg-type]
        entry = per_seed[0]  # type: ignore[index]
        ci = entry["ap_ci95"]
        return _pct(entry["ap"]) + ("" if ci is None else f" ({_pct(ci[0])}, {_pct(ci[1])})")
    return _mean_cell(stats, "ap")


def _kept_cell(stats: Dict[str, object], metric: str) -> str:
    value = stats["percent_of_baseline"][metric]  # type: ignore[index]
    return "–" if value is None else f"{value:.0f}%"


def _seeds_cell(stats: Dict[str, object]) -> str:
    done, planned = stats["seeds_done"], stats["seeds_planned"]
    text = ", ".join(str(s) for s in done) or "none"
    if len(done) < len(planned):  # type: ignore[arg-type]
        text += " (" + "; ".join(f"seed {m['seed']} {m['status']}" for m in stats["missing"]) + ")"  # type: ignore[union-attr]
    return text


def format_table(table: int, results: Sequence[Dict[str, object]], train_cases: int) -> str:
    """One paper table as markdown, with per-seed values of multi-seed rows below it."""
    count = table == 3
    head = ["Training data"] + (["Cases"] if count else []) + [
        "Loss (α, β)", "mAP (95% CI)", "Max sensitivity", "TP Dice", "Max sens. kept", "mAP kept", "Seeds"]
    lines = [f"### {TABLE_TITLES[table]}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    details = []
    for stats, row in zip(results, TABLES[table]):
        cells = [row.data_title]
        if count:
            cells.append(f"{subset_size(train_cases, row.fraction)} ({row.percent}%)")
        cells += [row.loss_label, _ap_cell(stats), _mean_cell(stats, "max_sensitivity"),
                  _mean_cell(stats, "tp_dice"), _kept_cell(stats, "max_sensitivity"), _kept_cell(stats, "ap"),
                  _seeds_cell(stats)]
        lines.append("| " + " | ".join(cells) + " |")
        if len(stats["per_seed"]) > 1:  # type: ignore[arg-type]
            seeds = "; ".join(
                f"seed {e['seed']}: mAP {_pct(e['ap'])} ({_pct(e['ap_ci95'][0])}, {_pct(e['ap_ci95'][1])}), "
                f"max sens. {_pct(e['max_sensitivity'])}, TP Dice {_pct(e['tp_dice'])}"
                if e["ap_ci95"] is not None else f"seed {e['seed']}: no test lesion"
                for e in stats["per_seed"])  # type: ignore[union-attr]
            details.append(f"- {row.data_title}{f' {row.percent}%' if count else ''}, ({row.loss_label}): {seeds}")
    if details:
        lines += ["", "Per seed (mAP with its 95% CI, in percent):", ""] + details
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- figures


def _first_seed(row: Row, seeds: Sequence[int], outcomes: Dict[str, RunOutcome]):
    outcome = outcomes.get(Run(row, seeds[0]).run_id)
    return None if outcome is None else outcome.evaluation


def write_figures(folder: Path, tables: Sequence[int], seeds: Sequence[int],
                  outcomes: Dict[str, RunOutcome]) -> Dict[str, str]:
    """The PNG files (name -> file name in `folder`) for what has finished; a figure whose
    runs are all missing is left out rather than drawn empty."""
    written: Dict[str, str] = {}
    for table in tables:
        series = [(row.short_label, case_evaluations(evaluation)) for row in TABLES[table]
                  for evaluation in [_first_seed(row, seeds, outcomes)] if evaluation is not None]
        if series:
            name = f"pr_table{table}.png"
            plot_pr_curves(folder / name, f"{TABLE_TITLES[table]} (seed {seeds[0]})", series)
            written[f"pr_table{table}"] = name
    panels = []
    for row in FIGURE3_ROWS:
        evaluation = _first_seed(row, seeds, outcomes)
        if evaluation is None:
            continue
        lesion = np.sum([case["probability_histogram"] for case in evaluation["cases"]], axis=0) \
            if evaluation["cases"] else np.zeros(100)  # type: ignore[union-attr]
        background = evaluation["background_histogram"]
        panels.append((row.short_label, lesion, background, evaluation["summary"]["lesion_entropy_bits"],  # type: ignore[index]
                       entropy_bits(background)))  # type: ignore[arg-type]
    if panels:
        written["fig3"] = "fig3_probability_histograms.png"
        plot_probability_histograms(folder / written["fig3"], panels)
    series5, lesions_per_bin = [], None
    for row in FIGURE5_ROWS:
        evaluations = [outcomes[Run(row, seed).run_id].evaluation for seed in seeds_for(row, seeds)
                       if Run(row, seed).run_id in outcomes and outcomes[Run(row, seed).run_id].evaluation]
        if not evaluations:
            continue
        keys = [key for key, _, _ in DIAMETER_BINS]
        series5.append((row.short_label, [[e["summary"]["sensitivity_by_diameter"][k] for k in keys]  # type: ignore[index]
                                          for e in evaluations]))
        if lesions_per_bin is None:
            lesions_per_bin = _lesions_per_bin(evaluations[0])
    if series5:
        written["fig5"] = "fig5_sensitivity_by_diameter.png"
        plot_sensitivity_by_diameter(folder / written["fig5"], series5, lesions_per_bin)
    return written


def _lesions_per_bin(evaluation: Dict[str, object]) -> List[int]:
    diameters = np.array([d for case in evaluation["cases"] for d in case["lesion_diameters_mm"]])  # type: ignore[union-attr]
    return [int(np.count_nonzero((diameters >= low) & (diameters < high))) for _, low, high in DIAMETER_BINS]


# ---------------------------------------------------------------------------------- the report


def _synthetic(outcomes: Sequence[RunOutcome]) -> bool:
    """Whether any finished run's model card says it was trained on synthetic data (the trainer
    decides, from the dataset's synth.json)."""
    return any(((o.evaluation or {}).get("training") or {}).get("synthetic_training_data") for o in outcomes)


def _cohort_lines(cohort: Optional[CohortProvenance]) -> List[str]:
    """The cohort's provenance and the log of preset changes, so that a reader can tell a tuned
    cohort from a frozen one without leaving the report."""
    if cohort is None:
        return []
    return [f"- Cohort: {cohort.sentence()}",
            f"- Changes to the synthetic presets made because of experiments ({len(COHORT_CHANGES)}; "
            "tuned on the development seed 0 only; docs/synthetic-data.md has the measurements):",
            *(f"  - {change.sentence()}" for change in COHORT_CHANGES)]


def write_report(out: Path, preset: ExperimentPreset, dataset: Dataset, tables: Sequence[int],
                 seeds: Sequence[int], outcomes: Sequence[RunOutcome], command: str) -> Path:
    """Write DIR/results.json, DIR/figures/*.png and DIR/report.md; returns report.md's path."""
    out = Path(out)
    by_id = {outcome.run.run_id: outcome for outcome in outcomes}
    train_cases = len(dataset.split("train"))
    results = {table: table_results(table, seeds, by_id) for table in tables}
    comparison = key_row_comparison(tables, seeds, by_id)
    figures = write_figures(out / FIGURES_FOLDER, tables, seeds, by_id)
    finished = [o for o in outcomes if o.evaluation is not None]
    test_lesions = finished[0].evaluation["summary"]["n_lesions"] if finished else None  # type: ignore[index]
    synthetic = _synthetic(outcomes)
    cohort = cohort_provenance(dataset.root)

    atomic_write_json(out / RESULTS_FILE, {
        "format": RESULTS_FORMAT, "preset": preset.to_json(), "dataset": str(dataset.root.resolve()),
        "synthetic_data": synthetic,
        "cohort": None if cohort is None else {**cohort.to_json(),
                                               "change_log": [change.to_json() for change in COHORT_CHANGES]},
        "command": command, "seeds": list(seeds),
        "tables": {str(t): r for t, r in results.items()},
        "key_rows": comparison,
        "runs": {o.run.run_id: {"status": o.status, "row": o.run.row.to_json(), "seed": o.run.seed, "error": o.error,
                                "progress": o.progress,
                                "summary": None if o.evaluation is None else o.evaluation["summary"],
                                "training": None if o.evaluation is None else o.evaluation.get("training"),
                                "seconds": None if o.evaluation is None else o.evaluation.get("seconds")}
                 for o in outcomes},
        "figures": {key: f"{FIGURES_FOLDER}/{name}" for key, name in figures.items()},
        "notes": {"ci": CI_NOTE, "kept": "percent_of_baseline = 100 x row mean / mean of the uncensored (3, 1) "
                                         "baseline on all training cases"},
    })

    lines = [f"# Lopsided bootstrap experiments (Yi et al. 2020, Tables 1–3): preset `{preset.name}`", ""]
    if synthetic:
        lines += ["**Synthetic data.** These numbers come from the synthetic cohort, not from patient scans; "
                  "they show whether the method's behaviour appears on it, not how it performs clinically.", ""]
    lines += [
        f"- Dataset: `{dataset.root.resolve()}` ({train_cases} training, {len(dataset.split('val'))} validation, "
        f"{len(dataset.split('test'))} test cases; {test_lesions if test_lesions is not None else '?'} test lesions)",
        *_cohort_lines(cohort),
        f"- Command: `{command}`",
        f"- Preset `{preset.name}`: DeepLabv3 {preset.backbone}, {preset.in_plane_size}×{preset.in_plane_size} frames "
        f"of {preset.pixel_spacing_mm:g} mm, {preset.slice_spacing_mm:g} mm slices; {preset.epochs} epoch(s) of "
        f"{preset.steps_per_epoch or 'one pass of'} steps, batch {preset.batch_size}"
        f"{f' of {preset.crop_size}×{preset.crop_size}-pixel crops' if preset.crop_size else ''}, "
        f"AdamW lr {preset.lr:g}; "
        "validation and model selection (best validation AP, validation labels censored like training) after each "
        "epoch; one loss for every case (`--uniform-loss`, the paper's setting).",
        f"- Seeds: {', '.join(str(s) for s in seeds)} for the key rows ("
        + "; ".join(r.short_label for r in KEY_ROWS) + f"), seed {seeds[0]} for the others. A seed sets the "
        "weights, sampling, augmentation, stochastic censoring and Table 3's subset.",
        "- Metrics in percent on the uncensored test labels (DESIGN.md §Lesions and metrics): lesions are "
        "3D components of p ≥ 0.1, TP when the centroid lies in or within 1 mm of a ground-truth voxel. "
        "*kept* = 100 × the row's mean / the mean of the uncensored (3, 1) baseline on all training cases "
        "(the paper's \"percentage of the baseline\").",
        f"- {CI_NOTE}", ""]
    for table in tables:
        lines += [format_table(table, results[table], train_cases), ""]
        if f"pr_table{table}" in figures:
            lines += [f"![PR curves, table {table}]({FIGURES_FOLDER}/{figures[f'pr_table{table}']})", ""]
    comparison_text = format_comparison(comparison)
    if comparison_text:
        lines += [comparison_text, ""]
    if "fig3" in figures:
        lines += ["### Probability histograms (paper Fig. 3)", "",
                  "Predicted probability of ground-truth lesion voxels (blue) and background brain voxels (red) "
                  f"over all test cases, seed {seeds[0]}; H is the Shannon entropy of each 100-bin histogram in "
                  "bits (the paper: 1.74 full, 4.38 censored CE, 3.14 censored lopsided).", "",
                  f"![Fig. 3]({FIGURES_FOLDER}/{figures['fig3']})", "", _entropy_table(seeds, by_id), ""]
    if "fig5" in figures:
        lines += ["### Sensitivity by lesion size (paper Fig. 5)", "",
                  f"![Fig. 5]({FIGURES_FOLDER}/{figures['fig5']})", ""]
    lines += _run_list(outcomes)
    path = out / REPORT_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _entropy_table(seeds: Sequence[int], outcomes: Dict[str, RunOutcome]) -> str:
    lines = ["| Model | Lesion-voxel entropy (bits) | Seeds |", "|---|---|---|"]
    for row in FIGURE3_ROWS:
        mean, sd, n = mean_sd([summary["lesion_entropy_bits"]
                               for summary in finished_summaries(row, seeds, outcomes).values()])
        lines.append(f"| {row.short_label} | {mean_sd_text(mean, sd, digits=2)} | {n} |")
    return "\n".join(lines)


def _run_list(outcomes: Sequence[RunOutcome]) -> List[str]:
    lines = ["### Runs", "", "| Run | Status | Steps | Selected epoch | Train (s) | Evaluate (s) | Notes |",
             "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        training = (o.evaluation or {}).get("training") or {}
        seconds = (o.evaluation or {}).get("seconds") or {}
        resumed = seconds.get("train_resumed_from_step")
        notes = "; ".join(filter(None, [o.error, o.progress, *(training.get("collapse") or []),
                                        None if resumed is None else f"resumed from step {resumed}: Train (s) counts from there"]))
        status = "finished earlier" if o.status == "skipped" else o.status
        train_s, evaluate_s = (seconds.get(key) for key in ("train", "evaluate"))
        train_text = "–" if train_s is None else f"{train_s:.0f}"
        evaluate_text = "–" if evaluate_s is None else f"{evaluate_s:.0f}"
        lines.append(f"| `{o.run.run_id}` | {status} | {training.get('steps', '–')} | "
                     f"{training.get('selected_epoch', '–')} | {train_text} | {evaluate_text} | "
                     f"{notes.replace('|', '/')} |")
    return lines
