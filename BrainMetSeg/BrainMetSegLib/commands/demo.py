"""`brainmetseg demo`: the main job on the built-in synthetic data, end to end.

Shows the product in CPU minutes: a synthetic cohort (made if absent), a small model trained on
it with the lopsided bootstrap loss on labels from which half the lesions were removed (cached
after the first run), then a held-out study segmented and its lesion table printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = ("Run the main job on built-in synthetic data: make a cohort, train a small model with the "
        "lopsided bootstrap loss on half-censored labels (cached), segment a held-out study.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=Path("demo"),
                        help="folder for the cohort, the training run and the outputs (default: ./demo)")
    parser.add_argument("--cases", type=int, default=24, help="synthetic cases to make (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.workdir, cases=args.cases, seed=args.seed, steps=args.steps, device=args.device)
    return 0
