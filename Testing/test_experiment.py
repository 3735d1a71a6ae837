"""The experiment runner: the paper's grids, run ids, subsets, the report's arithmetic, and a
micro grid that really trains, predicts, evaluates and reports (two rows, two steps each)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.experiment import (EVALUATION_FILE, EXPERIMENT_FILE, RunOutcome, run_folder, run_grid)
from BrainMetSegLib.experiment_grid import BASELINE, KEY_ROWS, TABLES, Row, Run, plan_runs, rows_of
from BrainMetSegLib.experiment_presets import PRESETS, preset, preset_from_json
from BrainMetSegLib.experiment_report import format_table, percent_of_baseline, table_results, write_report
from BrainMetSegLib.experiment_subsets import subset_size, training_subset, write_subset_dataset
from BrainMetSegLib.seed_statistics import mean_sd
from BrainMetSegLib.synth_changelog import COHORT_CHANGES
from BrainMetSegLib.train import TrainingStopped, train
from helpers_experiment import (CASES, MICRO, TEST_LESIONS, event_names, write_experiment_dataset,
                                write_preset_json)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ---------------------------------------------------------------------------------- the grid

PAPER_TABLES = {
    # (training data, alpha, beta, share of the training patients), in the paper's row order
    1: [("none", 3, 1, 1.0), ("stochastic", 3, 1, 1.0), ("stochastic", 10, 1, 1.0), ("stochastic", 3, 0.5, 1.0),
        ("stochastic", 10, 0.5, 1.0), ("stochastic", 3, 0.1, 1.0), ("stochastic", 10, 0.1, 1.0)],
    2: [("none", 3, 1, 1.0), ("size", 3, 1, 1.0), ("size", 10, 1, 1.0), ("size", 3, 0.5, 1.0),
        ("size", 10, 0.5, 1.0), ("size", 3, 0.1, 1.0), ("size", 10, 0.1, 1.0)],
    3: [("none", 3, 1, 0.1), ("none", 3, 1, 0.3), ("none", 3, 1, 1.0), ("stochastic", 3, 0.1, 0.3),
        ("stochastic", 3, 0.1, 1.0), ("size", 3, 0.1, 0.3), ("size", 3, 0.1, 1.0)],
}


@pytest.mark.parametrize("table", [1, 2, 3])
def test_tables_enumerate_exactly_the_papers_rows(table):
    assert [(r.censor, r.alpha, r.beta, r.fraction) for r in TABLES[table]] == PAPER_TABLES[table]
    assert all(r.loss == ("ce" if r.beta == 1 else "lopsided") for r in TABLES[table])
    assert all(r.censor_rate == (0.0 if r.censor == "none" else 0.5) for r in TABLES[table])


def test_shared_rows_are_run_once_and_key_rows_with_every_seed():
    assert len(rows_of([1])) == 7 and len(rows_of([1, 2])) == 13 and len(rows_of([1, 2, 3])) == 17
    runs = plan_runs([1, 2, 3], [0, 1, 2])
    assert len(runs) == 17 + 2 * 5
    seeds_by_row = {}
    for run in runs:
        seeds_by_row.setdefault(run.row, []).append(run.seed)
    assert {row for row, seeds in seeds_by_row.items() if seeds == [0, 1, 2]} == set(KEY_ROWS)
    assert all(seeds == [0] for row, seeds in seeds_by_row.items() if row not in KEY_ROWS)
    # every first-seed run before any extra seed: an interrupted grid fills the tables first
    assert [run.seed for run in runs] == [0] * 17 + [1] * 5 + [2] * 5


def test_key_rows_only_keeps_the_three_comparisons_of_a_table_with_every_seed():
    runs = plan_runs([1], [0, 1, 2], key_rows_only=True)
    assert [run.run_id for run in runs] == [f"{key}-s{seed}" for seed in (0, 1, 2) for key in (
        "full-a3-b1-n100", "stochastic50-a3-b1-n100", "stochastic50-a3-b0.1-n100")]
    assert len(plan_runs([1, 2, 3], [0, 1, 2], key_rows_only=True)) == 3 * 5


def test_run_ids_are_unique_and_stable():
    runs = plan_runs([1, 2, 3], [0, 1, 2])
    ids = [run.run_id for run in runs]
    assert len(set(ids)) == len(ids)
    assert ids[:7] == ["full-a3-b1-n100-s0", "stochastic50-a3-b1-n100-s0", "stochastic50-a10-b1-n100-s0",
                       "stochastic50-a3-b0.5-n100-s0", "stochastic50-a10-b0.5-n100-s0",
                       "stochastic50-a3-b0.1-n100-s0", "stochastic50-a10-b0.1-n100-s0"]
    assert "size50-a3-b0.1-n030-s0" in ids and "full-a3-b1-n010-s0" in ids and "size50-a3-b0.1-n100-s2" in ids
    assert Run(Row("stochastic", 3.0, 0.1), 1).run_id == Run(Row("stochastic", 3, 0.1, 1.0), 1).run_id


def test_grid_refuses_unknown_tables_and_bad_seeds():
    with pytest.raises(BrainMetSegError, match=r"--tables: 4; expected some of 1, 2, 3"):
        plan_runs([1, 4], [0])
    with pytest.raises(BrainMetSegError, match=r"--seeds: \[-1\]; expected one or more distinct integers >= 0"):
        plan_runs([1], [-1])


# ---------------------------------------------------------------------------------- presets


def test_presets_give_the_trainer_the_paper_setting():
    options = PRESETS["small"].train_options(Path("d"), Path("r"), Row("size", 10.0, 0.5), seed=2, device="cpu")
    assert (options.loss, options.alpha, options.beta, options.uniform_loss) == ("lopsided", 10.0, 0.5, True)
    assert (options.censor_mode, options.censor_rate, options.censor_seed, options.seed) == ("size", 0.5, 2, 2)
    assert (options.backbone, options.output_stride, options.in_plane_size, options.pixel_spacing,
            options.crop_size) == ("mobilenet_v3_large", 8, 192, 1.0, 128)
    assert options.epochs * options.steps_per_epoch == PRESETS["small"].steps_per_run == 200
    paper = PRESETS["paper"].train_options(Path("d"), Path("r"), BASELINE, seed=0, device="cuda")
    assert (paper.loss, paper.backbone, paper.output_stride, paper.in_plane_size, paper.pixel_spacing,
            paper.slice_spacing, paper.crop_size) == ("ce", "resnet50", 8, 256, 0.9375, 1.0, None)


def test_preset_files_are_checked_field_by_field(tmp_path):
    assert preset(str(write_preset_json(tmp_path / "micro.json"))) == MICRO
    with pytest.raises(BrainMetSegError, match=r"--preset 'huge': unknown; expected one of paper, small"):
        preset("huge")
    with pytest.raises(BrainMetSegError, match=r"--preset .*nothere\.json: file not found"):
        preset(str(tmp_path / "nothere.json"))
    document = MICRO.to_json()
    with pytest.raises(BrainMetSegError, match=r"p\.json: batch_size \(--batch-size\): 1; at least 2 frames"):
        preset_from_json(dict(document, batch_size=1), "p.json")
    with pytest.raises(BrainMetSegError, match=r"p\.json: missing field\(s\) lr; unknown field\(s\) rate"):
        preset_from_json({**{k: v for k, v in document.items() if k != "lr"}, "rate": 1}, "p.json")
    with pytest.raises(BrainMetSegError, match=r"p\.json: seeds \[\]; expected a list of integers >= 0"):
        preset_from_json(dict(document, seeds=[]), "p.json")


# ---------------------------------------------------------------------------------- subsets


def test_training_subsets_are_sized_nested_and_seeded():
    assert [subset_size(27, f) for f in (0.1, 0.3, 1.0)] == [3, 8, 27]
    assert [subset_size(100, f) for f in (0.1, 0.3, 1.0)] == [10, 30, 100]
    assert subset_size(4, 0.1) == 1
    ids = [f"Mets_{i:03d}" for i in range(1, 28)]
    small, medium, whole = (training_subset(ids, f, seed=0) for f in (0.1, 0.3, 1.0))
    assert set(small) < set(medium) < set(whole) == set(ids)
    assert training_subset(ids, 0.3, seed=0) == medium
    assert training_subset(ids, 0.3, seed=1) != medium
    assert medium == sorted(medium)
    with pytest.raises(BrainMetSegError, match=r"training fraction 0: expected a number in \(0, 1\]"):
        subset_size(10, 0)


def test_subset_dataset_keeps_val_test_and_the_sources_fields(tmp_path):
    source = write_experiment_dataset(tmp_path / "data")
    index = json.loads((source / "dataset.json").read_text())
    (source / "dataset.json").write_text(json.dumps(dict(index, synthetic=True)))
    dataset = read_dataset(source)
    out = write_subset_dataset(dataset, ["Mets_002", "Mets_004"], tmp_path / "subset")
    subset = read_dataset(out)
    assert [e.case_id for e in subset.split("train")] == ["Mets_002", "Mets_004"]
    assert [e.case_id for e in subset.split("val")] == ["Mets_005"]
    assert [e.case_id for e in subset.split("test")] == ["Mets_006", "Mets_007"]
    assert json.loads((out / "dataset.json").read_text())["synthetic"] is True
    assert (out / "synth.json").read_bytes() == (source / "synth.json").read_bytes()
    linked = out / "Mets_002" / "bravo.nii.gz"
    assert linked.read_bytes() == (source / "Mets_002" / "bravo.nii.gz").read_bytes()
    assert write_subset_dataset(dataset, ["Mets_002", "Mets_004"], out) == out  # the same subset is reused
    with pytest.raises(BrainMetSegError, match=r"subset.dataset\.json: a different subset .* already lies here"):
        write_subset_dataset(dataset, ["Mets_001"], out)


# ---------------------------------------------------------------------------------- arithmetic


def _outcome(row: Row, seed: int, ap: float, sensitivity: float, dice: float = 0.7) -> RunOutcome:
    summary = {"ap": ap, "ap_ci95": [ap - 0.02, ap + 0.02], "ap_strict": ap, "max_sensitivity": sensitivity,
               "tp_dice": dice, "fp_per_case": 1.0, "lesion_entropy_bits": 2.0,
               "sensitivity_by_diameter": {"0-3": None, "3-6": sensitivity, "6-10": 1.0, "10-20": 1.0, "20+": None}}
    return RunOutcome(Run(row, seed), "finished", {"summary": summary})


def test_percent_of_baseline_on_the_papers_numbers():
    assert percent_of_baseline(0.08, 0.80) == pytest.approx(10.0)   # Table 1, censored CE: "10% of the baseline"
    assert percent_of_baseline(0.78, 0.80) == pytest.approx(97.5)   # Table 1, lopsided (3, 0.1): "97%"
    assert percent_of_baseline(0.71, 0.80) == pytest.approx(88.75)  # Table 2, lopsided (3, 0.1): "88%"
    assert percent_of_baseline(0.5, None) is None and percent_of_baseline(0.5, 0.0) is None
    assert percent_of_baseline(None, 0.8) is None
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_sd([None, 5.0]) == (5.0, None, 1)
    assert mean_sd([None]) == (None, None, 0)


def test_table_keeps_the_ratio_of_means_to_the_baseline():
    censored_ce, wide_ce = Row("stochastic", 3.0, 1.0), Row("stochastic", 10.0, 1.0)
    outcomes = [_outcome(BASELINE, 0, 0.46, 0.8), _outcome(BASELINE, 1, 0.44, 0.9), _outcome(BASELINE, 2, 0.48, 0.7),
                _outcome(censored_ce, 0, 0.23, 0.08), _outcome(censored_ce, 1, 0.23, 0.10),
                _outcome(censored_ce, 2, 0.23, 0.06), _outcome(wide_ce, 0, 0.12, 0.4)]
    by_id = {o.run.run_id: o for o in outcomes}
    results = table_results(1, [0, 1, 2], by_id)
    assert results[0]["percent_of_baseline"] == {"max_sensitivity": pytest.approx(100.0), "ap": pytest.approx(100.0)}
    assert results[1]["percent_of_baseline"] == {"max_sensitivity": pytest.approx(10.0), "ap": pytest.approx(50.0)}
    assert results[2]["percent_of_baseline"] == {"max_sensitivity": pytest.approx(50.0),
                                                  "ap": pytest.approx(100 * 0.12 / 0.46)}
    assert results[1]["mean"]["max_sensitivity"] == pytest.approx(0.08)
    assert results[1]["sd"]["max_sensitivity"] == pytest.approx(0.02)
    assert results[3]["per_seed"] == [] and results[3]["percent_of_baseline"]["ap"] is None
    text = format_table(1, results, train_cases=27)
    lines = text.splitlines()
    assert "| 1/2 censored (stochastic) | 3, 1 | 23 ± 0.0 | 8 ± 2.0 | 70 ± 0.0 | 10% | 50% | 0, 1, 2 |" in lines
    assert "| 1/2 censored (stochastic) | 10, 1 | 12 (10, 14) | 40 | 70 | 50% | 26% | 0 |" in lines
    assert "| 1/2 censored (stochastic) | 3, 0.5 | – | – | – | – | – | none (seed 0 not run) |" in lines
    assert any(line.startswith("- 1/2 censored (stochastic), (3, 1): seed 0: mAP 23 (21, 25), max sens. 8")
               for line in lines)


# ---------------------------------------------------------------------------------- micro grid


MICRO_RUNS = [Run(BASELINE, 0), Run(Row("stochastic", 3.0, 0.1), 0)]


@pytest.fixture(scope="module")
def micro_grid(tmp_path_factory):
    """The micro preset's grid, two rows of Table 1, trained and evaluated once for the module."""
    root = tmp_path_factory.mktemp("experiment")
    data = write_experiment_dataset(root / "data")
    out = root / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcomes = run_grid(data, out, MICRO, tables=[1], device="cpu", runs=MICRO_RUNS, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    report = write_report(out, MICRO, read_dataset(data), [1], [0], outcomes, "brainmetseg experiment (micro)")
    return data, out, outcomes, report


def test_micro_grid_trains_predicts_evaluates_and_reports(micro_grid):
    data, out, outcomes, report = micro_grid
    assert [o.status for o in outcomes] == ["finished", "finished"]
    for outcome in outcomes:
        folder = run_folder(out, outcome.run)
        evaluation = json.loads((folder / EVALUATION_FILE).read_text())
        assert evaluation["summary"]["n_cases"] == 2 and evaluation["summary"]["n_lesions"] == TEST_LESIONS
        assert [case["case_id"] for case in evaluation["cases"]] == ["Mets_006", "Mets_007"]
        assert sum(evaluation["background_histogram"]) > 0
        given = json.loads((folder / "options.json").read_text())["given"]
        row = outcome.run.row
        assert (given["loss"], given["alpha"], given["beta"], given["censor_mode"], given["uniform_loss"]) == \
            (row.loss, row.alpha, row.beta, row.censor, True)
        assert event_names(folder)[-1] == "finished"
        assert json.loads((folder / "model" / "model.json").read_text())["synthetic_training_data"] is True
        assert evaluation["seconds"]["train_resumed_from_step"] is None
    censoring = json.loads((run_folder(out, MICRO_RUNS[1]) / "censoring.json").read_text())
    assert censoring["mode"] == "stochastic" and censoring["lesions"] == 8  # train + val, never test

    text = report.read_text()
    assert "### Table 1: stochastic lesion censoring with FN rate 50%" in text
    assert "| Full | 3, 1 |" in text and "| 1/2 censored (stochastic) | 3, 0.1 |" in text
    assert "| 1/2 censored (stochastic) | 10, 1 | – | – | – | – | – | none (seed 0 not run) |" in text
    assert "symmetric" in text and "Hanley" in text
    assert "**Synthetic data.**" in text
    # the helper's synth.json records no generation: the report says so instead of failing
    assert "- Cohort: synthetic (Testing/helpers_experiment.py); its synth.json does not record" in text
    assert all(f"  - {change.sentence()}" in text for change in COHORT_CHANGES)  # the log of preset changes
    figures = ["pr_table1.png", "fig3_probability_histograms.png", "fig5_sensitivity_by_diameter.png"]
    for name in figures:
        assert f"(figures/{name})" in text
        with Image.open(out / "figures" / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    results = json.loads((out / "results.json").read_text())
    assert results["cohort"]["preset"] is None
    assert [c["date"] for c in results["cohort"]["change_log"]] == [c.date for c in COHORT_CHANGES]
    rows = results["tables"]["1"]
    assert len(rows) == 7 and [r["seeds_done"] for r in rows] == [[0], [], [], [], [], [0], []]
    summary = outcomes[1].evaluation["summary"]
    assert rows[5]["percent_of_baseline"]["max_sensitivity"] == pytest.approx(
        percent_of_baseline(summary["max_sensitivity"], outcomes[0].evaluation["summary"]["max_sensitivity"]))
    # the key rows at matched FP rates: the two rows that ran, their real FROC, no pair without censored CE
    assert "### Key rows at matched false positives (FROC)" in text
    froc = results["key_rows"]["froc"]
    assert [r["label"] for r in froc] == ["full (3, 1)", "stochastic (3, 1)", "stochastic (3, 0.1)"]
    assert [r["seeds_done"] for r in froc] == [[0], [], [0]]
    assert froc[2]["froc@2"]["mean"] == pytest.approx(summary["froc"]["2"])
    assert froc[2]["fp_per_case"] == {"mean": pytest.approx(summary["fp_per_case"]), "sd": None}
    assert results["key_rows"]["paired"] == []


def test_rerun_skips_finished_runs(micro_grid):
    data, out, _, _ = micro_grid
    folders = [run_folder(out, run) for run in MICRO_RUNS]
    before = [((f / EVALUATION_FILE).stat().st_mtime_ns, len(event_names(f))) for f in folders]
    outcomes = run_grid(data, out, MICRO, tables=[1], device="cpu", runs=MICRO_RUNS, log=lambda m: None)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert [((f / EVALUATION_FILE).stat().st_mtime_ns, len(event_names(f))) for f in folders] == before


def test_a_trained_run_without_evaluation_is_only_evaluated(micro_grid):
    data, out, _, _ = micro_grid
    folder = run_folder(out, MICRO_RUNS[0])
    previous = json.loads((folder / EVALUATION_FILE).read_text())
    events = event_names(folder)
    (folder / EVALUATION_FILE).unlink()
    outcomes = run_grid(data, out, MICRO, tables=[1], device="cpu", runs=MICRO_RUNS[:1], log=lambda m: None)
    assert outcomes[0].status == "finished"
    assert event_names(folder) == events  # not trained again
    assert json.loads((folder / EVALUATION_FILE).read_text())["summary"] == previous["summary"]


def test_an_interrupted_run_resumes_from_its_checkpoint(micro_grid, tmp_path):
    """Table 3's full-data 30% row: its subset dataset is made, training is stopped after the
    first step, and the grid continues it with the trainer's resume."""
    data, out, _, _ = micro_grid
    run = Run(Row("none", 3.0, 1.0, 0.3), 0)
    folder = run_folder(out, run)
    from BrainMetSegLib.experiment import training_dataset

    source = training_dataset(read_dataset(data), out, run.row, run.seed)
    kept = [e.case_id for e in read_dataset(source).split("train")]
    assert len(kept) == 1 and kept == training_subset(["Mets_001", "Mets_002", "Mets_003", "Mets_004"], 0.3, 0)
    options = MICRO.train_options(source, folder, run.row, run.seed, "cpu")
    with pytest.raises(TrainingStopped):
        train(options, cancel=lambda: True)
    assert event_names(folder)[-1] == "stopped"
    # a report made now says how far the stopped run got, in its table and its run list
    stopped = run_grid(data, out, MICRO, tables=[3], runs=[run], report_only=True)
    assert [(o.status, o.progress) for o in stopped] == [("missing", "last checkpoint at step 1 of 2")]
    text = write_report(tmp_path / "stopped", MICRO, read_dataset(data), [3], [0], stopped, "micro").read_text()
    assert "| Full | 1 (30%) | 3, 1 | – | – | – | – | – | none (seed 0 not finished, last checkpoint at step 1 of 2) |" \
        in text.splitlines()
    assert f"| `{run.run_id}` | missing | – | – | – | – | last checkpoint at step 1 of 2 |" in text.splitlines()
    outcomes = run_grid(data, out, MICRO, tables=[3], device="cpu", runs=[run], log=lambda m: None)
    assert outcomes[0].status == "finished"
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    started = [e for e in events if e["event"] == "started"]
    assert len(started) == 2 and started[1]["resumed_from"] == 1
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 2
    evaluation = json.loads((folder / EVALUATION_FILE).read_text())
    training = evaluation["training"]
    assert training["data"]["train_cases"] == 1
    # the train seconds are those of the resumed part only, and the report says so
    assert evaluation["seconds"]["train_resumed_from_step"] == 1
    report = write_report(tmp_path, MICRO, read_dataset(data), [3], [0], outcomes, "brainmetseg experiment (micro)")
    line = next(line for line in report.read_text().splitlines() if line.startswith(f"| `{run.run_id}` |"))
    assert "resumed from step 1: Train (s) counts from there |" in line
    assert training["synthetic_training_data"] is True  # the subset carries the source's synth.json


def test_report_only_rebuilds_the_report_without_training(micro_grid, tmp_path):
    data, out, _, report = micro_grid
    expected = report.read_text()
    events = {run.run_id: event_names(run_folder(out, run)) for run in MICRO_RUNS}
    for path in (out / "report.md", out / "results.json"):
        path.unlink()
    shutil.rmtree(out / "figures")
    preset_file = write_preset_json(tmp_path / "micro.json")
    result = subprocess.run(
        [sys.executable, "-m", "BrainMetSegLib", "experiment", "--dataset", str(data), "--out", str(out),
         "--preset", str(preset_file), "--tables", "1", "--seeds", "0", "--report-only"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "5 run(s) not finished yet" in result.stderr
    rebuilt = (out / "report.md").read_text()
    command = f"brainmetseg experiment --dataset {data} --out {out} --preset {preset_file} --seeds 0 --tables 1"
    tables, runs = rebuilt.split("### Runs")
    assert tables == expected.split("### Runs")[0].replace("brainmetseg experiment (micro)", command)
    assert runs.count("| finished earlier |") == 2 and runs.count("| missing |") == 5
    assert (out / "figures" / "fig3_probability_histograms.png").is_file()
    assert {run.run_id: event_names(run_folder(out, run)) for run in MICRO_RUNS} == events

    key_only = subprocess.run(
        [sys.executable, "-m", "BrainMetSegLib", "experiment", "--dataset", str(data), "--out", str(out),
         "--preset", str(preset_file), "--tables", "1", "--seeds", "0", "--report-only", "--key-rows-only"],
        capture_output=True, text=True, timeout=300)
    assert key_only.returncode == 0, key_only.stderr
    assert "1 run(s) not finished yet" in key_only.stderr  # censored CE; the other two key rows are done
    assert f"{command} --key-rows-only" in (out / "report.md").read_text()


def test_two_processes_share_one_grid_with_only(micro_grid, tmp_path):
    """Two real processes at once, each training its own run into one folder (a GPU lease runs
    the key rows side by side so): neither touches the other's run, the report holds both."""
    data, micro_out, _, _ = micro_grid
    out = tmp_path / "shared"  # the micro grid's two runs (other tests add runs to that folder)
    (out / "runs").mkdir(parents=True)
    shutil.copy(micro_out / EXPERIMENT_FILE, out / EXPERIMENT_FILE)
    for run in MICRO_RUNS:
        shutil.copytree(run_folder(micro_out, run), run_folder(out, run))
    preset_file = write_preset_json(tmp_path / "micro.json")
    grid = ["--dataset", str(data), "--out", str(out), "--preset", str(preset_file), "--tables", "1", "--seeds", "0",
            "--device", "cpu"]
    mine = ["stochastic50-a3-b1-n100-s0", "stochastic50-a10-b1-n100-s0"]
    processes = [subprocess.Popen([sys.executable, "-m", "BrainMetSegLib", "experiment", *grid, "--only", run_id],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}) for run_id in mine]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        assert "run(s) not finished yet; they are not among --only" in stderr  # Table 1's other rows
    trained = sorted(p.name for p in (out / "runs").iterdir())
    assert trained == sorted([run.run_id for run in MICRO_RUNS] + mine)
    for run_id in mine:
        assert event_names(out / "runs" / run_id).count("started") == 1
        assert (out / "runs" / run_id / EVALUATION_FILE).is_file()
    for run in MICRO_RUNS:  # finished before: not trained again
        assert event_names(out / "runs" / run.run_id) == event_names(run_folder(micro_out, run))
    rebuilt = subprocess.run([sys.executable, "-m", "BrainMetSegLib", "experiment", *grid, "--report-only"],
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 run(s) not finished yet" in rebuilt.stderr  # 7 rows in Table 1, 4 of them trained
    assert (out / "report.md").read_text().count("| finished earlier |") == 4


def test_only_refuses_a_run_outside_the_grid(micro_grid):
    data, out, _, _ = micro_grid
    result = _cli("--dataset", str(data), "--out", str(out), "--preset", "small", "--tables", "1", "--seeds", "0",
                  "--key-rows-only", "--only", "size50-a3-b0.1-n100-s0")
    assert result.returncode == 2
    assert ("error: --only: size50-a3-b0.1-n100-s0 not a run of this grid (check --tables, --seeds and "
            "--key-rows-only); its runs are full-a3-b1-n100-s0, stochastic50-a3-b1-n100-s0, "
            "stochastic50-a3-b0.1-n100-s0") in result.stderr


# ---------------------------------------------------------------------------------- refusals


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", "experiment", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_refuses_a_dataset_without_test_cases(tmp_path):
    data = write_experiment_dataset(tmp_path / "data", with_json=False)  # scanned: every case 'train'
    result = _cli("--dataset", str(data), "--out", str(tmp_path / "out"), "--preset", "small")
    assert result.returncode == 2
    assert f"error: {data}: no labelled test case (split 'test' in dataset.json)" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_folder_of_another_preset(micro_grid):
    data, out, _, _ = micro_grid
    result = _cli("--dataset", str(data), "--out", str(out), "--preset", "small", "--report-only")
    assert result.returncode == 2
    assert f"error: {out / EXPERIMENT_FILE}: this folder holds runs of preset 'micro'" in result.stderr


def test_cli_refuses_negative_seeds(tmp_path):
    result = _cli("--dataset", str(tmp_path), "--out", str(tmp_path / "out"), "--preset", "small", "--seeds", "-1")
    assert result.returncode == 2
    assert "error: --seeds: [-1]; expected one or more distinct integers >= 0" in result.stderr


def test_report_only_needs_an_experiment_folder(tmp_path):
    data = write_experiment_dataset(tmp_path / "data")
    with pytest.raises(BrainMetSegError, match=r"out: no experiment\.json; nothing to report"):
        run_grid(data, tmp_path / "out", MICRO, report_only=True)


def test_a_folder_of_another_dataset_is_refused(micro_grid, tmp_path):
    _, out, _, _ = micro_grid
    other = write_experiment_dataset(tmp_path / "other")
    with pytest.raises(BrainMetSegError, match=r"experiment\.json: this folder holds runs on the dataset .*; choose"):
        run_grid(other, out, MICRO, report_only=True)


def test_the_test_dataset_matches_its_description():
    """Guards the numbers the tests above rely on (lesion counts of the tiny dataset)."""
    assert sum(len(centres) for split, centres in CASES.values() if split == "test") == TEST_LESIONS
    assert sum(len(centres) for split, centres in CASES.values() if split in ("train", "val")) == 8
    assert np.isclose(MICRO.steps_per_run, 2)
