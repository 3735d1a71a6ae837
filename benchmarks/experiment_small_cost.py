"""Cost of the `small` experiment preset's pieces on this machine: one training step, one
study's prediction, one case's preparation. The preset's steps per run were sized from these
numbers (README.md, "Reproducing the paper's experiments"), so rerun this after changing the network, the
trainer or the preset.

Volumes have the synthetic `--small` cohort's grid (synth_params.PRESETS["small"]) but simple
content (an ellipsoid brain, noise, bright spheres): the cost of a step depends on the frame
size, batch and backbone, not on what the images show.

Both wall-clock and CPU seconds are printed: on a shared machine the wall clock measures the
other jobs too, while CPU seconds / threads estimates the wall clock on idle cores.

    .venv/bin/python benchmarks/experiment_small_cost.py [--steps 20] [--output-stride 16] [--crop-size 0] [--preset paper]

`--preset paper` prices the full-size network's training step on this machine (why its key rows
wait for a GPU).

`--output-stride` prices the same preset at another output stride (how much a coarser network
would save; README says why the preset keeps stride 8). `--crop-size N` prices training on
N-pixel crops, `--crop-size 0` on whole frames.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainMetSeg"))

from BrainMetSegLib.dataset import CaseEntry, write_case, write_dataset_json  # noqa: E402
from BrainMetSegLib.experiment_grid import BASELINE  # noqa: E402
from BrainMetSegLib.experiment_presets import PRESETS  # noqa: E402
from BrainMetSegLib.predict import Predictor  # noqa: E402
from BrainMetSegLib.roles import ROLES  # noqa: E402
from BrainMetSegLib.synth_params import PRESETS as SYNTH_PRESETS  # noqa: E402
from BrainMetSegLib.train import train  # noqa: E402
from BrainMetSegLib.volumes import Volume, make_affine  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_cohort(root: Path, splits=("train", "train", "train", "val", "test")) -> None:
    params = SYNTH_PRESETS["small"]
    shape, spacing = params.shape, params.spacing
    grid = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) / (n / 2) for n in shape], indexing="ij")
    brain = (grid[0] / 0.7) ** 2 + (grid[1] / 0.85) ** 2 + (grid[2] / 0.8) ** 2 < 1
    index = np.indices(shape)
    entries = []
    for number, split in enumerate(splits):
        rng = np.random.default_rng(number)
        label = np.zeros(shape, dtype=np.uint8)
        for _ in range(5):
            centre = np.array(shape) // 2 + rng.integers(-20, 20, size=3)
            radius = rng.uniform(1.0, 4.0)
            ball = sum((i - c) ** 2 for i, c in zip(index, centre)) <= radius ** 2
            label[ball & brain] = 1
        volumes = {role: Volume(np.where(brain, 1.0 + 0.05 * rng.standard_normal(shape) + label, 0)
                                .astype(np.float32), make_affine(spacing)) for role in ROLES}
        case_id = f"Mets_{number + 1:03d}"
        folder = write_case(root, case_id, volumes, Volume(label, make_affine(spacing)))
        entries.append(CaseEntry(case_id, folder, split))
    write_dataset_json(root, entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice, one per core); 1 gives CPU seconds "
                             "free of the spin-waiting that inflates them when cores are shared")
    parser.add_argument("--output-stride", type=int, choices=(4, 8, 16), default=None,
                        help="price the preset at this output stride instead of its own")
    parser.add_argument("--crop-size", type=int, default=None, metavar="PIXELS",
                        help="price training on crops of this size instead of the preset's (0: whole frames)")
    args = parser.parse_args()
    if args.steps < 4:
        parser.error(f"--steps {args.steps}: at least 4 are needed (the first two warm up, the mean is "
                     "taken over the steps after them)")
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    if args.output_stride is not None:
        preset = dataclasses.replace(preset, output_stride=args.output_stride)
    if args.crop_size is not None:
        preset = dataclasses.replace(preset, crop_size=args.crop_size or None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_cohort(root)
        options = preset.train_options(root, Path(tmp) / "run", BASELINE, seed=0, device="cpu")
        options.epochs, options.steps_per_epoch, options.log_every = 1, args.steps, 1
        marks = []

        def progress(fraction: float, message: str) -> None:
            if message.startswith("step "):
                marks.append((time.perf_counter(), cpu_seconds()))

        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        model = train(options, progress=progress)
        total_wall, total_cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
        # skip the first two steps (allocator and thread-pool warm-up)
        (wall0, cpu0), (wall1, cpu1) = marks[2], marks[-1]
        steps = len(marks) - 3
        print(f"preset {preset.name}: {preset.backbone} at output stride {preset.output_stride}, "
              f"{preset.in_plane_size} px of {preset.pixel_spacing_mm:g} mm, batch {preset.batch_size}"
              f"{f' of {preset.crop_size} px crops' if preset.crop_size else ' of whole frames'}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"training step: {(wall1 - wall0) / steps:.3f} s wall, {(cpu1 - cpu0) / steps:.3f} s CPU "
              f"(mean over steps 3 to {len(marks)})")
        print(f"whole train() call ({args.steps} steps, 4 cases prepared, 1 validation): "
              f"{total_wall:.1f} s wall, {total_cpu:.1f} s CPU")
        from BrainMetSegLib.dataset import read_dataset

        case = read_dataset(root).split("test")[0].load()
        predictor = Predictor(model, device="cpu")
        predictor.predict(case)
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        predictor.predict(case)
        print(f"prediction of one study: {time.perf_counter() - start_wall:.2f} s wall, "
              f"{cpu_seconds() - start_cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
