"""`brainmetseg lesions`: the lesion table of a label map or a probability map."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "lesions"
HELP = ("Print the lesions (26-connected components) of a label map or a probability map: volume, "
        "diameters, RAS centroid and, for a probability map, confidence.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path,
                        help="label map (integer values; every non-zero voxel is lesion) or probability "
                             "map (values in [0, 1]); .nii, .nii.gz, .nrrd or .nhdr")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="probability at or above which a voxel is lesion (default 0.1; "
                             "probability maps only)")
    parser.add_argument("--csv", type=Path, metavar="OUT", help="also write the table as CSV to OUT")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import BrainMetSegError
    from ..lesions import (check_threshold, connected_components, find_lesions, format_lesion_table,
                           measure_lesions, write_lesion_csv)
    from ..volumes import read_volume

    check_threshold(args.threshold, "--threshold")
    volume = read_volume(args.file)
    values = volume.array
    if np.array_equal(values, np.round(values)):
        if values.min() < 0:
            raise BrainMetSegError(f"{args.file}: negative label value {values.min():g}; expected a label map "
                                   "(0 background, > 0 lesion) or a probability map (values in [0, 1])")
        components, _ = connected_components(values)
        lesions = measure_lesions(components, volume.affine)
        kind = "label map"
    else:
        if values.min() < 0 or values.max() > 1:
            raise BrainMetSegError(f"{args.file}: non-integer values outside [0, 1] ({values.min():g} to "
                                   f"{values.max():g}); expected a label map (integers) or a probability map")
        _, lesions = find_lesions(values, volume.affine, args.threshold)
        kind = f"probability map, threshold {args.threshold:g}"
    print(f"{args.file}: {len(lesions)} lesion(s) ({kind})")
    print(format_lesion_table(lesions))
    if args.csv is not None:
        write_lesion_csv(lesions, args.csv)
        print(f"table written to {args.csv}")
    return 0
