"""The main job on built-in data: synthetic cohort → half-censored labels → lopsided model → a study.

It is the product in miniature, sized for a laptop CPU: the `small` synthetic preset (2 mm
voxels, generated in seconds), MobileNetV3 at 1 mm pixels and a few hundred steps. Everything
is cached in the work folder, so a second run skips straight to segmenting; a training run
that was interrupted resumes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Union

from .dataset import read_dataset
from .errors import BrainMetSegError
from .lesions import format_lesion_table
from .synth import write_cohort
from .synth_params import preset

PathLike = Union[str, "os.PathLike[str]"]

DEMO_PRESET = "small"
PIXEL_SPACING_MM = 1.0
IN_PLANE_SIZE = 192
OUTPUT_STRIDE = 8
"""192 pixels of 1 mm cover the whole synthetic brain; logits every 8 mm. Frames at the data's
own 2 mm with 16-pixel logits (32 mm) found 0 of 9 lesions of the held-out study after 600
steps; the stem's first stride already halves a 2 mm grid, so lesions of a few mm got lost
before any layer could see them. At 1 mm and stride 8 the same budget finds most lesions of
6 mm and more (README, "What make demo does")."""
BATCH_SIZE = 4
LEARNING_RATE = 3e-3
STEPS_PER_EPOCH = 100
"""Validation, and with it model selection, every 100 steps."""
CENSOR_RATE = 0.5
"""Half of the training lesions removed from the labels: the situation the loss is built for."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_cohort(folder: Path, cases: int, seed: int) -> Path:
    if (folder / "dataset.json").exists():
        _say(f"[1/3] synthetic cohort: reusing {folder}")
    else:
        _say(f"[1/3] synthetic cohort: generating {cases} cases ({DEMO_PRESET} preset) in {folder}")
        write_cohort(folder, cases, seed, preset_name=DEMO_PRESET, overwrite=False)
    return folder


def ensure_model(dataset: Path, run: Path, steps: int, seed: int, device: str) -> Path:
    from .train import MODEL_FOLDER, train
    from .train_options import TrainOptions

    model = run / MODEL_FOLDER
    if _finished(run) and (model / "model.json").exists():
        _say(f"[2/3] model: reusing {model}")
        return model
    spacing = preset(DEMO_PRESET).spacing
    options = TrainOptions(
        dataset=dataset, out=run, loss="lopsided", alpha=3.0, beta=0.1,
        censor_mode="stochastic", censor_rate=CENSOR_RATE, censor_seed=seed, seed=seed,
        backbone="mobilenet_v3_large", output_stride=OUTPUT_STRIDE, max_steps=steps,
        epochs=max(1, -(-steps // STEPS_PER_EPOCH)), steps_per_epoch=STEPS_PER_EPOCH, batch_size=BATCH_SIZE,
        lr=LEARNING_RATE, in_plane_size=IN_PLANE_SIZE, pixel_spacing=PIXEL_SPACING_MM,
        slice_spacing=float(spacing[2]), model_name="demo-synthetic-lopsided", device=device,
        resume=run.exists())
    _say(f"[2/3] model: training MobileNetV3 DeepLabv3 for {steps} steps on labels with "
         f"{CENSOR_RATE:.0%} of lesions censored, lopsided bootstrap loss (α=3, β=0.1), in {run}")
    return train(options)


def _finished(run: Path) -> bool:
    from .events import read_events

    events = run / "events.jsonl"
    return events.exists() and any(event.get("event") == "finished" for event in read_events(events))


def segment_test_study(dataset: Path, model: Path, out: Path, device: str) -> Dict[str, Path]:
    from .metrics import evaluate_case
    from .predict import predict_case, write_prediction

    test = read_dataset(dataset).split("test")
    if not test:
        raise BrainMetSegError(f"{dataset}: no test case to segment")
    entry = test[0]
    case = entry.load()
    _say(f"[3/3] segmenting held-out study {entry.case_id} with {model.name}")
    prediction = predict_case(model, case, device=device)
    paths = write_prediction(prediction, out / entry.case_id, overwrite=True)
    print(f"\nLesions found in {entry.case_id} (synthetic data; research use only, not for diagnosis):")
    print(format_lesion_table(prediction.lesions))
    if case.label is not None:
        evaluation = evaluate_case(prediction.probability, case.label, case.affine, prediction.threshold,
                                   entry.case_id)
        found = len({p.lesion for p in evaluation.predictions if p.is_tp})
        false = sum(1 for p in evaluation.predictions if not p.is_tp)
        print(f"\nAgainst the ground truth: {found} of {evaluation.n_lesions} lesions found, "
              f"{false} false positive(s).")
    print("\nOutputs:")
    for kind, path in paths.items():
        print(f"  {kind:12s} {path}")
    return paths


def run_demo(workdir: PathLike, cases: int = 24, seed: int = 0, steps: int = 400,
             device: str = "auto") -> Dict[str, Path]:
    workdir = Path(workdir)
    dataset = ensure_cohort(workdir / "synthetic", cases, seed)
    model = ensure_model(dataset, workdir / "run", steps, seed, device)
    return segment_test_study(dataset, model, workdir / "output", device)
