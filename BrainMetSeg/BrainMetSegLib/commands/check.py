"""`brainmetseg check`: validate a case and show what the tool sees, before any long job.

Prints each file's geometry, the warnings validation raised (resampling, label values) and the
brain-voxel count, so that a wrong file, a registration problem or an image that is not
skull-stripped shows up in seconds rather than as a poor segmentation.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import BrainMetSegError
from ..roles import LABEL_ROLE, ROLES

NAME = "check"
HELP = ("Validate a case (four sequences, optional label and brain mask): print its geometry, warnings "
        "and brain-voxel count.")

NOT_STRIPPED_FRACTION = 0.9
"""Brain (non-zero bravo) share of the volume above which the image is likely not skull-stripped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for role in ROLES:
        parser.add_argument(f"--{role.replace('_', '-')}", dest=role, type=Path, metavar="FILE",
                            help=f"{role} volume (.nii, .nii.gz, .nrrd, .nhdr)")
    parser.add_argument("--seg", type=Path, metavar="FILE", help="label map (0 background, 1 lesion)")
    parser.add_argument("--mask", type=Path, metavar="FILE", help="brain mask (default: non-zero bravo voxels)")
    parser.add_argument("--case", type=Path, metavar="DIR",
                        help="a case folder holding t1_pre, t1_gd, bravo, flair [and seg] .nii.gz/.nii, "
                             "instead of the four file options")


def _input_paths(args: argparse.Namespace) -> Dict[str, Path]:
    given = [role for role in ROLES if getattr(args, role) is not None]
    if args.case is not None:
        from ..dataset import CaseEntry, find_case_file

        if given:
            raise BrainMetSegError("--case: give either a case folder or the four sequence files, not both")
        if not args.case.is_dir():
            raise BrainMetSegError(f"{args.case}: case folder not found")
        entry = CaseEntry(args.case.resolve().name, args.case)
        paths = dict(entry.image_paths())
        label = args.seg if args.seg is not None else find_case_file(args.case, LABEL_ROLE)
    else:
        missing = [f"--{role.replace('_', '-')}" for role in ROLES if role not in given]
        if missing:
            raise BrainMetSegError(f"missing {', '.join(missing)}: give the four sequence files or --case DIR")
        paths = {role: getattr(args, role) for role in ROLES}
        label = args.seg
    if label is not None:
        paths[LABEL_ROLE] = label
    if args.mask is not None:
        paths["mask"] = args.mask
    return paths


def _geometry_line(name: str, volume) -> str:
    from nibabel.orientations import aff2axcodes

    spacing = " x ".join(f"{s:.4g}" for s in volume.spacing)
    origin = "(" + ", ".join(f"{o:.1f}" for o in volume.origin) + ")"
    shape = "x".join(str(n) for n in volume.array.shape)
    return (f"  {name:<7} {shape:<13} {spacing + ' mm':<22} {''.join(aff2axcodes(volume.affine)):<6} "
            f"{origin:<24} {str(volume.array.dtype):<8} {volume.path}")


def run(args: argparse.Namespace) -> int:
    from ..case import case_from_volumes
    from ..volumes import read_volume

    paths = _input_paths(args)
    volumes = {name: read_volume(path) for name, path in paths.items()}
    case = case_from_volumes({role: volumes[role] for role in ROLES}, volumes.get(LABEL_ROLE),
                             volumes.get("mask"), case_id=(args.case.resolve().name if args.case else "case"))
    voxel_ml = float(np.prod(case.spacing)) / 1000.0
    print(f"case {case.case_id}: valid")
    print(f"  {'file':<7} {'shape':<13} {'spacing':<22} {'orient':<6} {'origin (RAS mm)':<24} {'type':<8} path")
    for name, volume in volumes.items():
        print(_geometry_line(name, volume))
    print(f"reference grid: bravo, {'x'.join(str(n) for n in case.shape)} voxels of "
          f"{' x '.join(f'{s:.4g}' for s in case.spacing)} mm")
    brain = int(case.brain.sum())
    source = "brain mask" if "mask" in volumes else "non-zero bravo voxels"
    print(f"brain voxels: {brain} ({brain * voxel_ml:.1f} mL, {source})")
    if case.label is not None:
        lesion = int(case.label.sum())
        print(f"lesion voxels: {lesion} ({lesion * voxel_ml * 1000:.1f} mm3)")
    notes: List[str] = list(case.warnings)
    if "mask" not in volumes and brain > NOT_STRIPPED_FRACTION * case.brain.size:
        notes.append(f"bravo is non-zero in {100 * brain / case.brain.size:.0f}% of the volume: is it "
                     "skull-stripped? Brain voxels are its non-zero voxels unless --mask is given")
    print(f"warnings: {len(notes)}")
    for note in notes:
        print(f"  - {note}")
    return 0
