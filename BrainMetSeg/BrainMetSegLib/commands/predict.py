"""`brainmetseg predict`: segment one study (four files or a case folder) or a dataset split.

Per study it writes probability.nii.gz, lesions.nii.gz, lesions.seg.nrrd and lesions.csv on
the bravo grid, in --out for one study or --out/<case id>/ for a dataset, and prints the
lesion table. Existing outputs are refused before any work starts, unless --overwrite.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..brain_margin import DEFAULT_BRAIN_MARGIN_MM
from ..errors import BrainMetSegError

NAME = "predict"
HELP = ("Segment brain metastases in a study (four co-registered sequences) or a dataset split; "
        "writes probability map, lesion label map, Slicer segmentation and lesion table.")

_FILE_OPTIONS = (("t1_pre", "--t1-pre"), ("t1_gd", "--t1-gd"), ("bravo", "--bravo"), ("flair", "--flair"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder, or the name of a model in the models directory "
                             "($BRAINMETSEG_MODELS, default ~/.brainmetseg/models)")
    files = parser.add_argument_group("one study from files (all four sequences, co-registered, skull-stripped)")
    files.add_argument("--t1-pre", type=Path, metavar="FILE", help="T1 spin echo, pre-contrast")
    files.add_argument("--t1-gd", type=Path, metavar="FILE", help="T1 spin echo, post-Gd (CUBE/SPACE/VISTA)")
    files.add_argument("--bravo", type=Path, metavar="FILE",
                       help="T1 3D gradient echo, post-Gd (BRAVO/MPRAGE/TFE); outputs use its grid")
    files.add_argument("--flair", type=Path, metavar="FILE", help="FLAIR")
    files.add_argument("--mask", type=Path, metavar="FILE",
                       help="brain mask (default: the non-zero voxels of bravo)")
    parser.add_argument("--case", type=Path, metavar="DIR",
                        help="one case folder of a dataset (t1_pre, t1_gd, bravo, flair .nii.gz)")
    parser.add_argument("--dataset", type=Path, metavar="DIR", help="a dataset folder: segment every case of --split")
    parser.add_argument("--split", default="test", help="split of --dataset to segment (default: test)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (for --dataset, one subfolder per case)")
    parser.add_argument("--threshold", type=float,
                        help="probability threshold for lesion voxels (default: the model's, usually 0.1)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N (default: auto)")
    parser.add_argument("--batch-size", type=int, help="frames per forward pass (default: 32 on GPU, 8 on CPU)")
    speed = parser.add_argument_group("speed (docs/benchmarks.md; none of these changes a lesion beyond rounding)")
    speed.add_argument("--precision", default="auto",
                       help="auto (bf16 autocast on a GPU, fp32 on a CPU), fp32, bf16, fp16 (GPU only) or "
                            "bf16-weights (default: auto)")
    speed.add_argument("--compile", action="store_true",
                       help="compile the network with torch.compile: the first study waits for the compilation "
                            "(about a minute on a GPU, several on a CPU), later ones run faster on a GPU")
    speed.add_argument("--cuda-graphs", action="store_true",
                       help="replay each batch's forward pass as one CUDA graph (GPU only)")
    parser.add_argument("--brain-margin", type=_margin, default=DEFAULT_BRAIN_MARGIN_MM, metavar="MM",
                        help="set the probability to 0 farther than MM from the brain mask (inputs are "
                             f"skull-stripped); 'none' keeps it everywhere (default: {DEFAULT_BRAIN_MARGIN_MM:g})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _margin(text: str) -> Optional[float]:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mm (or 'none')") from None


def _jobs(args: argparse.Namespace) -> List[Tuple[str, object, Path]]:
    """(case id, loader, output folder) per study; checks the input options without reading images."""
    from ..case import load_case
    from ..dataset import CaseEntry, read_dataset

    given_files = [option for role, option in _FILE_OPTIONS if getattr(args, role) is not None]
    modes = [name for name, used in (("--t1-pre/--t1-gd/--bravo/--flair", bool(given_files)),
                                     ("--case", args.case is not None),
                                     ("--dataset", args.dataset is not None)) if used]
    if len(modes) != 1:
        raise BrainMetSegError("input: give exactly one of the four sequence files (--t1-pre --t1-gd --bravo "
                               f"--flair), --case DIR or --dataset DIR; got {' and '.join(modes) or 'none'}")
    if args.mask is not None and not given_files:
        raise BrainMetSegError("--mask: only used with the four sequence files")
    if given_files:
        missing = [option for role, option in _FILE_OPTIONS if getattr(args, role) is None]
        if missing:
            raise BrainMetSegError(f"input: missing {', '.join(missing)}; a study needs all four sequences")
        paths = {role: getattr(args, role) for role, _ in _FILE_OPTIONS}
        for role, option in _FILE_OPTIONS:
            if not paths[role].is_file():
                raise BrainMetSegError(f"{paths[role]}: {option} file not found")
        if args.mask is not None and not args.mask.is_file():
            raise BrainMetSegError(f"{args.mask}: --mask file not found")
        case_id = Path(args.bravo).resolve().parent.name or "case"
        return [(case_id, lambda: load_case(paths, brain_mask=args.mask, case_id=case_id), args.out)]
    if args.case is not None:
        if not args.case.is_dir():
            raise BrainMetSegError(f"{args.case}: --case folder not found")
        entry = CaseEntry(args.case.resolve().name, args.case)
        entry.image_paths()
        return [(entry.case_id, lambda: entry.load(with_label=False), args.out)]
    entries = read_dataset(args.dataset).split(args.split)
    if not entries:
        raise BrainMetSegError(f"{args.dataset}: no case in split '{args.split}'")
    return [(entry.case_id, (lambda e=entry: e.load(with_label=False)), args.out / entry.case_id)
            for entry in entries]


def run(args: argparse.Namespace) -> int:
    from ..model_folder import resolve_model

    jobs = _jobs(args)  # input mistakes are reported before torch is imported
    model = resolve_model(args.model)

    from tqdm import tqdm

    from ..devices import device_description
    from ..lesions import format_lesion_table
    from ..model_card import RESEARCH_USE, SYNTHETIC_WARNING
    from ..predict import Predictor, check_outputs_free, write_prediction

    if not args.overwrite:
        for _, _, out in jobs:
            check_outputs_free(out)
    predictor = Predictor(model, device=args.device, threshold=args.threshold, batch_size=args.batch_size,
                          precision=args.precision, compile=args.compile, cuda_graphs=args.cuda_graphs,
                          brain_margin_mm=args.brain_margin)
    config = predictor.config
    print(f"model {config.name} ({config.backbone}) on {device_description(predictor.device)} "
          f"({predictor.speed.describe(predictor.device)}); threshold {predictor.threshold:g}; {RESEARCH_USE}")
    if config.synthetic_training_data:
        print(SYNTHETIC_WARNING, file=sys.stderr)
    for number, (case_id, load, out) in enumerate(jobs, start=1):
        label = f"{case_id} ({number}/{len(jobs)})" if len(jobs) > 1 else case_id
        with tqdm(total=1.0, desc=label, unit="study", disable=not sys.stderr.isatty(),
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}") as bar:
            def progress(fraction: float, message: str) -> None:
                bar.n = fraction
                bar.set_postfix_str(message.split(": ", 1)[-1], refresh=True)

            prediction = predictor.predict(load(), progress=progress)
        for warning in prediction.warnings:
            if warning != SYNTHETIC_WARNING:
                named = warning if warning.startswith(f"{case_id}: ") else f"{case_id}: {warning}"
                print(f"warning: {named}", file=sys.stderr)
        paths = write_prediction(prediction, out, overwrite=args.overwrite)
        shown = sum(1 for lesion in prediction.lesions if lesion.confidence >= config.operating_point)
        print(f"\n{case_id}: {len(prediction.lesions)} lesion(s) at probability >= {prediction.threshold:g}; "
              f"{shown} with confidence >= {config.operating_point:.3g} (the model's operating point)")
        print(format_lesion_table(prediction.lesions))
        for path in paths.values():
            print(f"  wrote {path}")
    return 0
