"""What folding batch normalisation into the convolutions (fast_path.fold_batch_norm, on by
default) saves in a CPU forward pass, and how much it changes the logits.

The `small` experiment preset's network (MobileNetV3-Large DeepLabv3, output stride 8) and a
batch of 8 frames of 192 x 192 pixels, or `--preset paper` (ResNet-50, 256 x 256). Batch norms
get statistics far from their initial 0/1 (as after training) so that folding is not a no-op;
the cost of a forward pass does not depend on the weights. Folded and plain passes alternate,
so that a change in the machine's load hits both; medians of the process's CPU seconds and of
the wall clock are printed with the machine.

    .venv/bin/python benchmarks/fold_batch_norm.py [--repeats 8] [--threads 1 2] [--preset paper]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BrainMetSeg"))

from BrainMetSegLib.experiment_presets import PRESETS  # noqa: E402
from BrainMetSegLib.fast_path import FastNetwork, SpeedOptions  # noqa: E402
from BrainMetSegLib.network import build_network  # noqa: E402
from run import cpu_model  # noqa: E402  (benchmarks/run.py)


def trained_looking(network: nn.Module) -> nn.Module:
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
    return network.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    torch.manual_seed(0)
    network = trained_looking(build_network(preset.backbone, output_stride=preset.output_stride))
    cpu = torch.device("cpu")
    plain = FastNetwork(copy.deepcopy(network), cpu, SpeedOptions(precision="fp32", fold_batch_norm=False))
    folded = FastNetwork(copy.deepcopy(network), cpu, SpeedOptions(precision="fp32"))
    frames = torch.randn(8, 20, preset.in_plane_size, preset.in_plane_size)
    print(f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; {preset.backbone}, output stride "
          f"{preset.output_stride}, batch of 8 frames of {preset.in_plane_size} px, channels_last, fp32; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    with torch.inference_mode():
        difference = float((plain(frames) - folded(frames)).abs().max())
        print(f"largest logit difference, folded vs plain: {difference:.2e}")
        for threads in args.threads:
            torch.set_num_threads(threads)
            plain(frames), folded(frames)  # warm-up at this thread count
            seconds = {"plain": [], "folded": []}
            for _ in range(args.repeats):
                for name, fast in (("plain", plain), ("folded", folded)):
                    wall, cpu_time = time.perf_counter(), time.process_time()
                    fast(frames)
                    seconds[name].append((time.perf_counter() - wall, time.process_time() - cpu_time))
            medians = {name: [statistics.median(values[i] for values in pairs) for i in (0, 1)]
                       for name, pairs in seconds.items()}
            print(f"{threads} thread(s), median of {args.repeats} batches: plain {medians['plain'][0]:.3f} s wall / "
                  f"{medians['plain'][1]:.3f} s CPU, folded {medians['folded'][0]:.3f} s wall / "
                  f"{medians['folded'][1]:.3f} s CPU: folded takes {medians['folded'][1] / medians['plain'][1]:.0%} "
                  "of the CPU time")


if __name__ == "__main__":
    main()
