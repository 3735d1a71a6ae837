"""`brainmetseg synth`: write a synthetic cohort, the built-in stand-in for BrainMetShare."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "synth"
HELP = ("Generate a synthetic cohort (four sequences + lesion label per case, dataset.json, synth.json) "
        "in the dataset layout; BrainMetShare-like by default, --small for fast CPU runs.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--cases", type=int, default=30, help="number of cases (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed; the same seed gives the same cohort (default 0)")
    parser.add_argument("--small", action="store_true",
                        help="small preset: ~100x100x80 voxels of 2 mm, well under a second per case")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing synthetic cohort in --out")
    parser.add_argument("--val-cases", type=int, metavar="N",
                        help="validation cases (default: the paper's share, 5 of 156, at least 1): the trainer "
                             "keeps the epoch of best validation AP, which one case cannot tell apart. The cases "
                             "and the test split stay those of the seed; training cases become validation cases")
    parser.add_argument("--workers", type=int, default=1,
                        help="generate cases in this many processes (default 1); the files are the same")


def run(args: argparse.Namespace) -> int:
    from ..synth import write_cohort
    from ..synth_params import preset

    name = "small" if args.small else "default"
    entries = write_cohort(args.out, args.cases, args.seed, preset(name), preset_name=name, overwrite=args.overwrite,
                           workers=args.workers, val_cases=args.val_cases)
    splits = {split: sum(entry.split == split for entry in entries) for split in ("train", "val", "test")}
    print(f"wrote {len(entries)} synthetic case(s) ({name} preset, seed {args.seed}) to {args.out}: "
          + ", ".join(f"{n} {split}" for split, n in splits.items()))
    print("synth.json records the parameters and every case's lesions; the data are synthetic, not patient scans")
    return 0
