"""Size the GPU key-row schedule (issue 4) to the seconds left in a device lease.

A device lease is short and its speed unknown beforehand, so this script first trains the base
preset's network for a few steps on the cohort (a calibration run, timed like
benchmarks/experiment_small_cost.py), predicts one test case, and then writes a preset file: the
base preset with as many steps as fit in the seconds left for the runs to come, in epochs of
about one pass over the training slices.

    python benchmarks/gpu_schedule.py --cohort D --work DIR --seconds-left S [--runs 3] \
        [--parallel] [--base paper] [--device cuda] --out preset.json

A run's cost is priced from the calibration call: the head (loading the cases, up to the first
timed step), the seconds per step, and the tail after the last step (validation, a checkpoint,
saving the model), which a run pays again at every epoch and at every CHECKPOINT_EVERY steps.
The first lease (2026-11-27, H200) priced only the head, the steps and the evaluation: its
schedule of 10 epochs was meant to end the three runs in 274 s, but after 400 s the third
run had not finished.

With --parallel the runs are to train at the same time, one process each on the one GPU
(`brainmetseg experiment --only`), so that one run's loading, validation and evaluation overlap
the others' steps. Then the calibration runs `--runs` times at once too, one process each, and
the costs are the slowest process's: the GPU and the host's cores shared as the runs will share
them.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainMetSeg"))

from BrainMetSegLib.atomic import atomic_write_json  # noqa: E402
from BrainMetSegLib.dataset import read_dataset  # noqa: E402
from BrainMetSegLib.experiment_grid import BASELINE  # noqa: E402
from BrainMetSegLib.experiment_presets import PRESETS, ExperimentPreset  # noqa: E402
from BrainMetSegLib.predict import Predictor  # noqa: E402
from BrainMetSegLib.train import train  # noqa: E402
from BrainMetSegLib.train_options import TrainOptions  # noqa: E402

CHECKPOINT_EVERY = TrainOptions.__dataclass_fields__["checkpoint_every"].default
"""The trainer's default checkpoint interval, which the experiment keeps."""
WRITE_S = 2.0
"""Writing and scoring one full-size test case's outputs (compressed NIfTI): a generous guess."""
REPORT_S = 30.0
"""Writing report.md and the figures at the end of the experiment."""
MARGIN = 1.3
"""How much longer than priced a run may take and still end in time. The calibration steps ran
faster than the runs' steps: a CPU smoke run of the script (2026-12-04, 2 cores) calibrated
0.589 s per step, its first run then took 0.735 s per step (25% more), and the third run was
stopped 20 steps before its end."""


def run_seconds(steps: int, epochs: int, head_s: float, step_s: float, tail_s: float, case_s: float,
                test_cases: int) -> float:
    """Predicted wall clock of one experiment run: train, validate and checkpoint, then evaluate."""
    pauses = epochs + steps // CHECKPOINT_EVERY
    return head_s + steps * step_s + pauses * tail_s + case_s * test_cases


def schedule(head_s: float, step_s: float, tail_s: float, case_s: float, test_cases: int, seconds_left: float,
             runs: int, pass_steps: int, parallel: bool = False) -> Tuple[int, int]:
    """(epochs, steps per epoch) for `runs` runs, one after the other or all at once
    (`parallel`), and the report within `seconds_left`: the most epochs (up to 10) whose steps
    still make at least three quarters of a pass each, with room for runs MARGIN times slower
    than priced."""
    per_run = (seconds_left - REPORT_S) / (1 if parallel else runs) / MARGIN
    best = None
    for epochs in range(1, 11):
        steps = 0
        while run_seconds(steps + epochs, epochs, head_s, step_s, tail_s, case_s, test_cases) <= per_run:
            steps += epochs
        if steps // epochs >= max(20, 0.75 * pass_steps) or (epochs == 1 and steps >= 20):
            best = (epochs, steps // epochs)
    if best is None:
        raise SystemExit(f"fewer than 20 steps per run fit in {seconds_left:.0f} s; not starting the runs")
    return best


def calibrate(cohort: Path, work: Path, base: ExperimentPreset, device: str, steps: int) -> Dict[str, float]:
    """Train `steps` steps of the base preset and predict one test case, timing each part."""
    started = time.perf_counter()
    options = base.train_options(cohort, work / "calibration", BASELINE, seed=0, device=device)
    options.epochs, options.steps_per_epoch, options.log_every = 1, steps, 1
    marks = []
    model = train(options, progress=lambda fraction, message: marks.append(time.perf_counter())
                  if message.startswith("step ") else None)
    ended = time.perf_counter()
    # the first steps hold cuDNN's autotuning and the allocator's growth
    first = min(5, len(marks) - 2)
    step_s = (marks[-1] - marks[first]) / (len(marks) - 1 - first)
    predictor = Predictor(model, device=device)
    case = read_dataset(cohort).split("test")[0].load()
    predictor.predict(case)
    clock = time.perf_counter()
    predictor.predict(case)
    return {"head_s": max(0.0, marks[0] - started - step_s), "step_s": step_s, "tail_s": ended - marks[-1],
            "case_s": time.perf_counter() - clock + WRITE_S}


def calibrate_side_by_side(args: argparse.Namespace) -> Dict[str, float]:
    """`args.runs` calibrations at once, one process each; the slowest figure of each cost."""
    processes = []
    for number in range(args.runs):
        work = args.work / f"calibration-{number}"
        command = [sys.executable, __file__, "--cohort", str(args.cohort), "--work", str(work),
                   "--base", args.base, "--device", args.device, "--calibration-steps", str(args.calibration_steps),
                   "--calibration-only", str(work / "costs.json")]
        processes.append((work, subprocess.Popen(command)))
    costs = []
    for work, process in processes:
        if process.wait() != 0:
            raise SystemExit(f"the calibration in {work} failed (exit status {process.returncode})")
        costs.append(json.loads((work / "costs.json").read_text(encoding="utf-8")))
    return {key: max(cost[key] for cost in costs) for key in costs[0]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, required=True, help="the synthetic cohort the runs will use")
    parser.add_argument("--work", type=Path, required=True, help="folder for the calibration run")
    parser.add_argument("--seconds-left", type=float, help="for the runs and the report")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", action="store_true", help="the runs train at the same time, one process each")
    parser.add_argument("--base", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--calibration-steps", type=int, default=40)
    parser.add_argument("--calibration-only", type=Path, metavar="JSON",
                        help="calibrate, write the costs to JSON and stop (one process of --parallel)")
    parser.add_argument("--out", type=Path, help="preset .json to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    base = PRESETS[args.base]
    if args.calibration_only is not None:
        atomic_write_json(args.calibration_only,
                          calibrate(args.cohort, args.work, base, args.device, args.calibration_steps))
        return 0
    if args.seconds_left is None or args.out is None:
        parser.error("--seconds-left and --out are needed unless --calibration-only")
    costs = calibrate_side_by_side(args) if args.parallel else \
        calibrate(args.cohort, args.work, base, args.device, args.calibration_steps)

    dataset = read_dataset(args.cohort)
    test = dataset.split("test")
    described = json.loads((args.cohort / "synth.json").read_text(encoding="utf-8"))["cases"]
    frames = sum(entry["shape"][2] for entry in described if entry["split"] == "train")
    pass_steps = math.ceil(frames / base.batch_size)
    seconds_left = args.seconds_left - (time.perf_counter() - started)
    epochs, steps_per_epoch = schedule(**costs, test_cases=len(test), seconds_left=seconds_left, runs=args.runs,
                                       pass_steps=pass_steps, parallel=args.parallel)
    atomic_write_json(args.out, dict(base.to_json(), name=f"{base.name}-gpu-lease", epochs=epochs,
                                     steps_per_epoch=steps_per_epoch, cases=len(dataset.cases)))
    side_by_side = f", {args.runs} processes at once" if args.parallel else ""
    print(f"calibration on {args.device}{side_by_side}: {costs['step_s'] * 1000:.0f} ms per step of "
          f"{base.batch_size} frames ({base.batch_size / costs['step_s']:.0f} frames/s per process), "
          f"{costs['head_s']:.0f} s before the first step, {costs['tail_s']:.1f} s per epoch end, "
          f"{costs['case_s']:.1f} s per test case; {seconds_left:.0f} s left for {args.runs} runs"
          f"{' side by side' if args.parallel else ''} -> {epochs} epoch(s) x {steps_per_epoch} steps "
          f"(one pass over the {frames} training slices is {pass_steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
