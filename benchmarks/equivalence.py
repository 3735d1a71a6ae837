"""Faster must not mean different, on any device: each fast path against plain fp32.

    python benchmarks/equivalence.py [--device cpu|cuda] [--compile]

The check of Testing/test_fast_path.py (which runs on the CPU) for the device at hand, so a
GPU run can show that bf16 autocast, bf16 weights, torch.compile and CUDA graphs find the
same lesions there: the fixed network SpotNetwork on the three-sphere study spot_case
(Testing/helpers_fast_path.py), the whole Predictor path, lesions matched one to one with
Dice >= 0.99 of the binarised maps and confidences within 0.02. The fp32 reference runs
with TF32 off. Prints one line per option; exits 1 when one differs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "BrainMetSeg"))
sys.path.insert(0, str(HERE.parent / "Testing"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--compile", action="store_true", help="also torch.compile on a CPU (minutes)")
    args = parser.parse_args()
    import numpy as np
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device; the fast-path equivalence on a GPU is not measured")
        return 0
    from BrainMetSegLib.predict import Predictor
    from helpers_fast_path import SpotNetwork, dice, matched_lesions, spot_case, spot_model_folder

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    options = [("bf16 autocast", {"precision": "bf16"}), ("bf16 weights", {"precision": "bf16-weights"})]
    if args.device == "cuda":
        options += [("fp16 autocast", {"precision": "fp16"}), ("auto + CUDA graphs", {"cuda_graphs": True})]
    if args.device == "cuda":
        options.append(("auto + compile + CUDA graphs", {"compile": True, "cuda_graphs": True}))
    elif args.compile:
        options.append(("auto + torch.compile", {"compile": True}))

    with tempfile.TemporaryDirectory() as scratch:
        folder = spot_model_folder(Path(scratch) / "spot")

        def predict(**speed):
            predictor = Predictor(folder, device=args.device, batch_size=4, **speed)
            predictor.network = SpotNetwork().to(predictor.device)
            predictor.predict(spot_case())  # warm-up: compilation, graph capture
            return predictor.predict(spot_case())

        reference = predict(precision="fp32")
        print(f"fp32 reference on {args.device}: {len(reference.lesions)} lesions, confidences "
              + ", ".join(f"{lesion.confidence:.3f}" for lesion in reference.lesions))
        failed = 0
        for name, speed in options:
            fast = predict(**speed)
            try:
                pairs = matched_lesions(reference.components, reference.lesions, fast.components, fast.lesions)
                worst_dice = min(d for _, _, d in pairs)
                worst_confidence = max(abs(a.confidence - b.confidence) for a, b, _ in pairs)
                same = worst_dice >= 0.99 and worst_confidence <= 0.02 and len(pairs) == len(reference.lesions)
                detail = f"lesion Dice >= {worst_dice:.4f}, confidence within {worst_confidence:.4f}"
            except AssertionError as error:
                same, detail = False, f"lesions differ: {error}"
            overall = dice(reference.components > 0, fast.components > 0)
            largest = float(np.abs(fast.probability - reference.probability).max())
            print(f"{name}: {'same lesions' if same else 'DIFFERENT'} ({len(fast.lesions)} lesions; {detail}; "
                  f"Dice of the binarised maps {overall:.4f}; largest probability difference {largest:.4f})")
            failed += not same
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
