"""The host-side stages of inference, alone: preparing a study, mapping back, finding lesions.

`run.py` times them inside a whole prediction; this isolates them (no network, no torch
threads competing) so that a change to frames.py or lesions.py can be judged in a minute.
The study is run.py's (the synthetic `default` preset at SIZE x SIZE x SLICES, 0.9375 x
0.9375 x 1 mm) and the lesion map its ground-truth-like probability (study.py). Each stage is
run REPEATS times; the median is printed with the machine and its load.

    .venv/bin/python benchmarks/host_stages.py [--size 256] [--slices 200] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainMetSeg"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from BrainMetSegLib.dataset import read_dataset  # noqa: E402
from BrainMetSegLib.frames import prepare_case  # noqa: E402
from BrainMetSegLib.lesions import find_lesions  # noqa: E402
from run import cpu_model, load_average  # noqa: E402
from study import ground_truth_like_probability, write_study  # noqa: E402


def median_seconds(stage: Callable[[], object], repeats: int) -> float:
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        stage()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = write_study(Path(tmp), args.size, args.slices)
        case = read_dataset(tmp).split("train")[0].load()
    print(f"CPU: {cpu_model()}; load average (1 min) at start {load_average()}")
    print(f"study: {args.size}x{args.size}x{args.slices}, {study['lesions']} lesions; median of {args.repeats}")
    prepared = prepare_case(case)
    probability = ground_truth_like_probability(case.label)
    model_grid = np.zeros(prepared.shape, dtype=np.float32)
    rows = [
        ("prepare: reorient, resample, z-score", lambda: prepare_case(case)),
        ("map back to the input grid", lambda: prepared.to_input_grid(model_grid)),
        ("lesion extraction (ground-truth-like map)", lambda: find_lesions(probability, case.affine)),
    ]
    for name, stage in rows:
        print(f"{name}: {median_seconds(stage, args.repeats) * 1000:.0f} ms")
    print(f"load average (1 min) at end {load_average()}")


if __name__ == "__main__":
    main()
