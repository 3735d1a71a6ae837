"""`brainmetseg experiment`: train and evaluate the paper's Tables 1-3 on a dataset, resumably."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

Progress = Callable[[float, str], None]

NAME = "experiment"
HELP = ("Reproduce the paper's experiments (Tables 1-3, Figures 3 and 5) on a dataset with train/val/test "
        "splits: train every row, evaluate on the test split, write DIR/report.md and DIR/results.json. "
        "Finished runs are skipped, so rerunning the command continues an interrupted grid.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..experiment_presets import PRESETS

    parser.add_argument("--dataset", required=True, type=Path, metavar="D",
                        help="dataset folder with dataset.json (train, val and test splits)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="experiment folder (created)")
    parser.add_argument("--preset", required=True, metavar="NAME|FILE",
                        help="training schedule: 'small' (MobileNetV3, small frames, 200 steps; the whole grid "
                             "took 1 h 9 min on 2 CPU cores with the synthetic --small cohort and --workers 2), "
                             "'paper' (ResNet-50, 256x256 at 0.94 mm, 10 epochs; for a GPU), or a .json file with "
                             "every field of "
                             f"a preset ({', '.join(sorted(PRESETS))} are documented in "
                             "README.md)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="S",
                        help="seeds of the key rows (full CE, censored CE, censored lopsided 3/0.1, both "
                             "censoring modes); other rows use the first (default: the preset's)")
    parser.add_argument("--tables", type=int, nargs="+", choices=(1, 2, 3), metavar="T",
                        help="tables to run, of 1 2 3 (default: all)")
    parser.add_argument("--key-rows-only", action="store_true",
                        help="train only the key rows (full and censored CE, censored lopsided 3/0.1), with "
                             "every seed; the other rows show as not run")
    parser.add_argument("--only", nargs="+", metavar="RUN_ID",
                        help="train and evaluate only these runs of the grid (ids as in report.md, e.g. "
                             "full-a3-b1-n100-s0): several processes or GPUs share one grid and folder, each "
                             "with its own runs; the report shows every finished run of the grid")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="train N runs at once, each in a process of its own with 1/N of the cores (on 2 CPU "
                             "cores the small grid took 1 h 9 min with 2 workers, 1 h 18 min in one process: "
                             "README, 'Several runs at once'); each run's output goes to DIR/logs/<run id>.log "
                             "(default 1: one run after the other, in this process)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rebuild report.md, results.json and the figures from the finished runs")


def run(args: argparse.Namespace) -> int:
    from ..dataset import read_dataset
    from ..experiment import GridStopped, run_grid
    from ..experiment_grid import check_seeds, check_tables, plan_runs, select_runs
    from ..experiment_presets import preset as find_preset
    from ..experiment_report import write_report

    preset = find_preset(args.preset)
    seeds = check_seeds(list(preset.seeds) if args.seeds is None else args.seeds)
    tables = check_tables(args.tables)
    command = grid_command(args, seeds, tables)
    grid = plan_runs(tables, seeds, args.key_rows_only)
    chosen = grid if args.only is None else select_runs(grid, args.only)
    try:
        with _runs_bar(args.workers, len(chosen)) as (log, progress):
            outcomes = run_grid(args.dataset, args.out, preset, seeds, tables, args.device, args.report_only,
                                runs=chosen, workers=args.workers, log=log, progress=progress)
    except GridStopped as stopped:
        print(f"stopped: {stopped}\nrerun the same command to continue the grid", file=sys.stderr)
        return 130
    if args.only is not None:  # the report covers the whole grid: the other runs as they stand now
        own = {outcome.run.run_id: outcome for outcome in outcomes}
        outcomes = [own.get(outcome.run.run_id, outcome) for outcome in
                    run_grid(args.dataset, args.out, preset, seeds, tables, report_only=True, runs=grid)]
    report = write_report(args.out, preset, read_dataset(args.dataset), tables, seeds, outcomes, command)
    failed = [o for o in outcomes if o.status == "failed"]
    missing = [o for o in outcomes if o.status == "missing"]
    print(f"report written to {report}")
    if missing:
        hint = "they are not among --only" if args.only and not args.report_only else \
            "rerun without --report-only to train them"
        print(f"{len(missing)} run(s) not finished yet; {hint}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} run(s) failed: " + ", ".join(o.run.run_id for o in failed), file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _runs_bar(workers: int, runs: int) -> Iterator[Tuple[Callable[[str], None], Optional[Progress]]]:
    """With workers, a bar of finished runs (each trainer's own bar goes to its log); one process
    shows its trainer's bar instead. Log lines are written above the bar."""
    if workers <= 1:
        yield (lambda message: print(message, file=sys.stderr)), None
        return
    from tqdm import tqdm

    with tqdm(total=runs, unit="run", desc="grid", disable=not sys.stderr.isatty()) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = round(fraction * runs)
            bar.refresh()

        yield (lambda message: tqdm.write(message, file=sys.stderr)), progress


def grid_command(args: argparse.Namespace, seeds, tables) -> str:
    """The command line that trains this grid (shown in the report; --report-only left out)."""
    parts = ["brainmetseg", "experiment", "--dataset", str(args.dataset), "--out", str(args.out),
             "--preset", args.preset, "--seeds", *map(str, seeds), "--tables", *map(str, tables)]
    if args.key_rows_only:
        parts.append("--key-rows-only")
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.workers > 1:  # the runs' thread count, which their numbers depend on
        parts += ["--workers", str(args.workers)]
    return " ".join(shlex.quote(p) for p in parts)
