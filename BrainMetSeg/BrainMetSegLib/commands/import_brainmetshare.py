"""`brainmetseg import-brainmetshare`: convert Stanford's PNG release into the dataset layout."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import-brainmetshare"
HELP = ("Convert the official BrainMetShare release (Mets_XXX/{0,1,2,3,seg}/NNN.png) into the dataset "
        "layout Mets_XXX/{t1_pre,t1_gd,bravo,flair,seg}.nii.gz with a dataset.json.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", type=Path,
                        help="the release folder (case folders Mets_XXX are found at any depth)")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.94, 0.94, 1.0),
                        metavar=("COLUMN", "ROW", "SLICE"),
                        help="voxel spacing in mm, which PNG does not store (default 0.94 0.94 1.0)")
    parser.add_argument("--overwrite", action="store_true", help="replace cases that already exist in --out")


def run(args: argparse.Namespace) -> int:
    from ..brainmetshare import import_brainmetshare

    cases = import_brainmetshare(args.source, args.out, spacing=args.spacing, overwrite=args.overwrite)
    labelled = sum(case.label_status != "none" for case in cases)
    print(f"imported {len(cases)} case(s) ({labelled} labelled, {len(cases) - labelled} without label) "
          f"into {args.out}; dataset.json written")
    print("geometry assumed (PNG stores none): axial slices, spacing "
          + " x ".join(f"{s:g}" for s in args.spacing) + " mm")
    return 0
