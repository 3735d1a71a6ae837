"""`brainmetseg censor`: a copy of a dataset with lesions removed from its training labels.

This simulates incomplete annotation (the paper's experiments): train and val labels are
censored and marked partial, test cases are untouched. The report of lesions kept and
removed is printed and saved as censoring.json in the copy. The trainer can censor on the fly
with the same options, so experiments do not need the copy; it is there to inspect and share.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "censor"
HELP = ("Write a copy of a dataset whose train and val labels miss lesions (stochastic or size-based "
        "censoring), to simulate incomplete annotation; test cases are copied untouched.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..censor import MODES

    parser.add_argument("--dataset", type=Path, required=True, metavar="DIR", help="source dataset folder")
    parser.add_argument("--mode", required=True, choices=MODES,
                        help="stochastic: each lesion removed with probability RATE; size: the RATE share "
                             "of smallest lesions over train and val together")
    parser.add_argument("--rate", type=float, required=True, help="fraction of lesions to remove, 0 to 1 (e.g. 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of stochastic censoring (default 0)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of the censored copy")
    parser.add_argument("--copy", action="store_true",
                        help="copy image files instead of hard-linking them (default: hard links where possible)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing copy in --out")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..censored_copy import REPORT_FILE, write_censored_copy

    with tqdm(total=1.0, desc="censor", disable=not sys.stderr.isatty(),
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}") as bar:
        def progress(fraction: float, message: str) -> None:
            bar.n = fraction
            bar.set_postfix_str(message, refresh=True)

        report = write_censored_copy(args.dataset, args.out, args.mode, args.rate, args.seed,
                                     overwrite=args.overwrite, link=not args.copy, progress=progress)
    print(report.to_text())
    print(f"wrote {args.out} (train and val labels censored and marked partial; test untouched)")
    print(f"report: {args.out / REPORT_FILE}")
    return 0
