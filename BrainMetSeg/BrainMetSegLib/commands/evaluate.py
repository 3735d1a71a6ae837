"""`brainmetseg evaluate`: lesion metrics of predicted probability maps against a dataset's labels."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "evaluate"
HELP = ("Evaluate DIR/<case id>/probability.nii.gz (as `predict` writes them) against the labels of a "
        "dataset: AP with its Hanley-McNeil confidence interval, sensitivity, TP Dice, FP per case, FROC, sensitivity by lesion size.")
PROBABILITY_FILE = "probability.nii.gz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, type=Path, metavar="DIR",
                        help=f"folder with one subfolder per case holding {PROBABILITY_FILE}")
    parser.add_argument("--dataset", required=True, type=Path, metavar="D", help="dataset folder with the labels")
    parser.add_argument("--json", required=True, type=Path, metavar="OUT",
                        help="write the metrics (and per-case details under 'cases') as JSON to OUT")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="probability at or above which a voxel belongs to a predicted lesion (default 0.1)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..atomic import atomic_write_json
    from ..dataset import read_dataset
    from ..errors import BrainMetSegError
    from ..lesions import check_threshold
    from ..metrics import evaluate_case, format_summary, summarise

    threshold = check_threshold(args.threshold, "--threshold")
    if not args.predictions.is_dir():
        raise BrainMetSegError(f"{args.predictions}: predictions folder not found")
    dataset = read_dataset(args.dataset)
    files = sorted(args.predictions.glob(f"*/{PROBABILITY_FILE}"))
    if not files:
        raise BrainMetSegError(f"{args.predictions}: no <case id>/{PROBABILITY_FILE} inside; expected the "
                               "output folder of `brainmetseg predict`")
    evaluations = []
    for path in tqdm(files, desc="evaluating", unit="case", disable=not sys.stderr.isatty()):
        case_id = path.parent.name
        probability, label, affine = _read_pair(path, dataset.get(case_id))
        evaluations.append(evaluate_case(probability, label, affine, threshold, case_id))
    summary = summarise(evaluations)
    atomic_write_json(args.json, {**summary, "threshold": threshold,
                                  "cases": [evaluation.to_dict() for evaluation in evaluations]})
    print(_case_table(evaluations))
    print()
    print(format_summary(summary))
    print(f"\nmetrics written to {args.json}")
    return 0


def _read_pair(probability_path: Path, entry):
    """The probability map and the case's label on the same grid (label resampled, nearest, if needed)."""
    import numpy as np

    from ..errors import BrainMetSegError
    from ..volumes import overlaps, read_volume, resample_like, same_grid

    label_path = entry.label_path()
    if label_path is None:
        raise BrainMetSegError(f"{entry.folder}: case {entry.case_id} has no seg.nii.gz or seg.nii; "
                               "it cannot be evaluated")
    probability = read_volume(probability_path)
    values = probability.array
    if values.min() < 0 or values.max() > 1:
        raise BrainMetSegError(f"{probability_path}: values {values.min():g} to {values.max():g}; "
                               "expected probabilities in [0, 1]")
    label = read_volume(label_path)
    if not np.array_equal(label.array, np.round(label.array)) or label.array.min() < 0:
        raise BrainMetSegError(f"{label_path}: negative or non-integer values; expected a label map "
                               "(0 background, > 0 lesion)")
    if not same_grid(label, probability):
        if not overlaps(label, probability):
            raise BrainMetSegError(f"{probability_path}: does not overlap its label {label_path} in physical space")
        print(f"warning: {label_path}: grid differs from {probability_path}; label resampled onto it (nearest)",
              file=sys.stderr)
        label = resample_like(label, probability, order=0)
    return values, label.array, probability.affine


def _case_table(evaluations) -> str:
    headers = ("case", "lesions", "detected", "predictions", "TP", "FP")
    rows = []
    for e in evaluations:
        tp = sum(p.is_tp for p in e.predictions)
        detected = len({p.lesion for p in e.predictions if p.is_tp})
        rows.append((e.case_id, str(e.n_lesions), str(detected), str(len(e.predictions)), str(tp),
                     str(len(e.predictions) - tp)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines)
