"""Size the GPU key-row schedule (issue 4) to the seconds left in a device lease.

A device lease is short and its speed unknown beforehand, so this script first trains the base
preset's network for a few steps on the cohort (a calibration run, timed like
benchmarks/experiment_small_cost.py), predicts one test case, and then writes a preset file: the
base preset with as many steps as fit in the seconds left for the runs to come, in epochs of
about one pass over the training slices.

    python benchmarks/gpu_schedule.py --cohort D --work DIR --seconds-left S [--runs 3] \
        [--base paper] [--device cuda] --out preset.json

A run's cost is priced from the calibration call: the head (loading the cases, up to the first
timed step), the seconds per step, and the tail after the last step (validation, a checkpoint,
saving the model), which a run pays again at every epoch and at every CHECKPOINT_EVERY steps.
The first lease (2026-11-27, H200) priced only the head, the steps and the evaluation: its
schedule of 10 epochs was meant to end the three runs in 274 s, but after 400 s the third
run had not finished.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainMetSeg"))

from BrainMetSegLib.atomic import atomic_write_json  # noqa: E402
from BrainMetSegLib.dataset import read_dataset  # noqa: E402
from BrainMetSegLib.experiment_grid import BASELINE  # noqa: E402
from BrainMetSegLib.experiment_presets import PRESETS  # noqa: E402
from BrainMetSegLib.predict import Predictor  # noqa: E402
from BrainMetSegLib.train import train  # noqa: E402
from BrainMetSegLib.train_options import TrainOptions  # noqa: E402

CHECKPOINT_EVERY = TrainOptions.__dataclass_fields__["checkpoint_every"].default
"""The trainer's default checkpoint interval, which the experiment keeps."""
WRITE_S = 2.0
"""Writing and scoring one full-size test case's outputs (compressed NIfTI): a generous guess."""
REPORT_S = 30.0
"""Writing report.md and the figures at the end of the experiment."""


def run_seconds(steps: int, epochs: int, head_s: float, step_s: float, tail_s: float, case_s: float,
                test_cases: int) -> float:
    """Predicted wall clock of one experiment run: train, validate and checkpoint, then evaluate."""
    pauses = epochs + steps // CHECKPOINT_EVERY
    return head_s + steps * step_s + pauses * tail_s + case_s * test_cases


def schedule(head_s: float, step_s: float, tail_s: float, case_s: float, test_cases: int, seconds_left: float,
             runs: int, pass_steps: int) -> Tuple[int, int]:
    """(epochs, steps per epoch) for `runs` runs and the report within `seconds_left`: the most
    epochs (up to 10) whose steps still make at least three quarters of a pass each."""
    per_run = (seconds_left - REPORT_S) / runs
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, required=True, help="the synthetic cohort the runs will use")
    parser.add_argument("--work", type=Path, required=True, help="folder for the calibration run")
    parser.add_argument("--seconds-left", type=float, required=True, help="for the runs and the report")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--calibration-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True, help="preset .json to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    base = PRESETS[args.base]
    options = base.train_options(args.cohort, args.work / "calibration", BASELINE, seed=0, device=args.device)
    options.epochs, options.steps_per_epoch, options.log_every = 1, args.calibration_steps, 1
    marks = []
    model = train(options, progress=lambda fraction, message: marks.append(time.perf_counter())
                  if message.startswith("step ") else None)
    ended = time.perf_counter()
    # the first steps hold cuDNN's autotuning and the allocator's growth
    first = min(5, len(marks) - 2)
    step_s = (marks[-1] - marks[first]) / (len(marks) - 1 - first)
    head_s = max(0.0, marks[0] - started - step_s)
    tail_s = ended - marks[-1]

    dataset = read_dataset(args.cohort)
    test = dataset.split("test")
    predictor = Predictor(model, device=args.device)
    case = test[0].load()
    predictor.predict(case)
    clock = time.perf_counter()
    predictor.predict(case)
    case_s = time.perf_counter() - clock + WRITE_S

    described = json.loads((args.cohort / "synth.json").read_text(encoding="utf-8"))["cases"]
    frames = sum(entry["shape"][2] for entry in described if entry["split"] == "train")
    pass_steps = math.ceil(frames / base.batch_size)
    seconds_left = args.seconds_left - (time.perf_counter() - started)
    epochs, steps_per_epoch = schedule(head_s, step_s, tail_s, case_s, len(test), seconds_left, args.runs, pass_steps)
    atomic_write_json(args.out, dict(base.to_json(), name=f"{base.name}-gpu-lease", epochs=epochs,
                                     steps_per_epoch=steps_per_epoch, cases=len(dataset.cases)))
    print(f"calibration on {args.device}: {step_s * 1000:.0f} ms per step of {base.batch_size} frames "
          f"({base.batch_size / step_s:.0f} frames/s), {head_s:.0f} s before the first step, {tail_s:.1f} s "
          f"per epoch end, "
          f"{case_s:.1f} s per test case; {seconds_left:.0f} s left for {args.runs} runs -> {epochs} epoch(s) "
          f"x {steps_per_epoch} steps (one pass over the {frames} training slices is {pass_steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
