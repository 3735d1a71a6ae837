"""Speed of BrainMetSeg inference and training, printed as one table with the machine named.

    python benchmarks/run.py [--device cpu|cuda] [--backbones resnet50 mobilenet_v3_large]
                             [--slices 200] [--quick] [--compile] [--cuda-graphs] [--explore]

What it measures (issue 7), on a synthetic study generated at SIZE x SIZE x SLICES
(default 256 x 256 x 200, the `default` preset's 0.9375 x 0.9375 x 1 mm voxels, written as
NIfTI files): per backbone, the real inference path (Predictor) stage by stage — reading the
files, preparing the model grid, the network stage (frames built on the device, network,
softmax, brain margin), mapping back, lesion extraction, writing the four outputs — with
frames/s, per-slice figures, peak host and GPU memory, the forward pass alone, and the naive
per-slice batch-1 fp32 loop as the baseline; then the real trainer's frames/s next to the raw
training step on random tensors. `--explore` (CPU) also times the forward pass under the
options tried: layout, batch size, threads, inference_mode, bf16.

Every measurement runs in a fresh process (`--worker`), after a warm-up. On a CPU the
process's CPU seconds are printed next to the wall clock: on a shared machine the wall clock
includes the other jobs' share. `--device cuda` on a machine without CUDA prints
"skipped: no CUDA device" and exits 0. `--quick` is a smoke run on a tiny study: its numbers
mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "BrainMetSeg"))
sys.path.insert(0, str(HERE))

BACKBONES = ("resnet50", "mobilenet_v3_large", "resnet101")
CPU_TARGET_S = {"resnet50": 60.0, "mobilenet_v3_large": 8.0}
"""Issue 7's 2-core CPU targets per 200-slice 256x256 study (end to end excluding file I/O)."""
GPU_TARGETS = {"network_s": 0.08, "speedup": 12.0, "e2e_s": 0.15, "trainer_share": 0.8, "lesions_s": 0.05}
HOST_RAM_TARGET_MB = 3 * 1024


# ---------------------------------------------------------------------------------- options


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, help="default: resnet50 mobilenet_v3_large")
    parser.add_argument("--slices", type=int, help="axial slices of the study (default 200; --quick 24)")
    parser.add_argument("--size", type=int, help="in-plane size in pixels (default 256; --quick 64)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny study of the `small` preset (2 mm voxels), MobileNetV3, few steps")
    parser.add_argument("--batch-size", type=int, help="inference frames per batch (default: Predictor's, 32 GPU / 8 CPU)")
    parser.add_argument("--precision", default="auto", help="inference precision (fast_path.PRECISIONS; default auto)")
    parser.add_argument("--compile", action="store_true", help="inference with torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="inference with CUDA graphs")
    parser.add_argument("--naive-slices", type=int,
                        help="slices the naive loop is timed on, extrapolated to the study (default: all on a "
                             "GPU, 8 on a CPU)")
    parser.add_argument("--forward-batches", type=int, help="batches of the forward-only timing (default 20 GPU, 1 CPU)")
    parser.add_argument("--train-backbones", nargs="*", choices=BACKBONES,
                        help="backbones whose training speed is measured (default: all on a GPU, "
                             "mobilenet_v3_large on a CPU; none: skip training)")
    parser.add_argument("--train-batch", type=int, help="training batch (default 64 GPU, 4 CPU)")
    parser.add_argument("--train-steps", type=int, help="training steps, the first tenth not timed (default 60 GPU, 6 CPU)")
    parser.add_argument("--explore", action="store_true", help="CPU: also time the forward pass under each option tried")
    parser.add_argument("--explore-frames", type=int, default=8, help="frames per option with --explore (default 8)")
    parser.add_argument("--json", type=Path, help="also write every raw figure to this JSON file")
    parser.add_argument("--workdir", type=Path, help="where the study, models and outputs go (default: a temporary folder)")
    parser.add_argument("--worker", choices=("infer", "train", "explore"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    import torch

    cuda = args.device == "cuda" or (args.device is None and torch.cuda.is_available())
    args.device = "cuda" if cuda else "cpu"
    quick = args.quick
    args.backbones = args.backbones or (["mobilenet_v3_large"] if quick else ["resnet50", "mobilenet_v3_large"])
    args.slices = args.slices or (24 if quick else 200)
    args.size = args.size or (64 if quick else 256)
    args.preset = "small" if quick else "default"
    args.naive_slices = args.naive_slices or (args.slices if cuda else (4 if quick else 8))
    args.forward_batches = args.forward_batches or (20 if cuda else 1)
    if args.train_backbones is None:
        args.train_backbones = list(args.backbones) if cuda else ["mobilenet_v3_large"]
    args.train_batch = args.train_batch or (64 if cuda else (2 if quick else 4))
    args.train_steps = args.train_steps or (60 if cuda else (3 if quick else 6))
    for name in ("slices", "size", "naive_slices", "forward_batches", "train_batch", "train_steps", "explore_frames"):
        if getattr(args, name) < 1 or (name == "train_batch" and args.train_batch < 2):
            parser.error(f"--{name.replace('_', '-')}: {getattr(args, name)} is too small")
    return args


# ---------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str) -> List[str]:
    import torch

    lines = [f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), Python {platform.python_version()}"]
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {properties.name}, {properties.total_memory / 2 ** 30:.0f} GiB, CUDA {torch.version.cuda}")
    return lines


def load_average() -> str:
    try:
        return "{:.2f}".format(os.getloadavg()[0])
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------------- workers


def run_worker(name: str, **kwargs: Any) -> Any:
    """Run `name` from workers.py in a fresh process; its last stdout line is the JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-args",
               json.dumps(kwargs, default=str)]
    print(f"  running {name} {' '.join(f'{k}={v}' for k, v in kwargs.items() if k in ('backbone', 'model'))}...",
          file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"benchmark worker {name} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main(args: argparse.Namespace) -> int:
    import workers

    kwargs = json.loads(args.worker_args)
    for key in ("study", "model", "out"):
        if key in kwargs:
            kwargs[key] = Path(kwargs[key])
    result = getattr(workers, {"infer": "infer", "train": "train_speed", "explore": "explore"}[args.worker])(**kwargs)
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------- table


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def verdict(value: float, limit: float, at_most: bool = True) -> str:
    return "met" if (value <= limit if at_most else value >= limit) else "NOT met"


def inference_rows(args: argparse.Namespace, results: Dict[str, Dict[str, Any]],
                   standard: bool) -> List[List[str]]:
    cuda = args.device == "cuda"
    rows: List[List[str]] = []

    def row(label: str, cell, target: str = "", judge=None) -> None:
        cells = [cell(results[b]) for b in args.backbones]
        verdicts = [judge(b, results[b]) for b in args.backbones] if judge is not None and standard else []
        rows.append([label] + cells + [target, ", ".join(v for v in verdicts if v)])

    def e2e(r: Dict[str, Any]) -> float:
        return r["prepare_s"] + r["network_s"] + r["map_back_s"] + r["gt_lesion_extraction_s"]

    row("speed options (batch)", lambda r: f"{r['speed']} ({r['batch_size']})")
    row("study slices / slices with brain (= frames run)", lambda r: f"{r['model_slices']} / {r['frames']}")
    row("read the 4 NIfTI files", lambda r: seconds(r["read_s"]))
    row("prepare: reorient, resample, z-score", lambda r: seconds(r["prepare_s"]))
    row("network stage: frames on device, network, softmax, brain margin", lambda r: seconds(r["network_s"]),
        f"<= {GPU_TARGETS['network_s']} s" if cuda else "",
        (lambda b, r: verdict(r["network_s"], GPU_TARGETS["network_s"])) if cuda else None)
    row("  per frame run / per study slice", lambda r: f"{seconds(r['network_s'] / r['frames'])} / "
                                                      f"{seconds(r['network_s'] / r['model_slices'])}")
    row("  frames/s", lambda r: f"{r['frames'] / r['network_s']:.1f}")
    row("  forward pass alone, per frame", lambda r: seconds(r["forward_per_frame_s"]))
    row("map back to the input grid", lambda r: seconds(r["map_back_s"]))
    row("lesion extraction, network's map (lesions)",
        lambda r: f"{seconds(r['lesions_s'])} ({r['lesions_found']})")
    row("lesion extraction, ground-truth-like map (lesions)",
        lambda r: f"{seconds(r['gt_lesion_extraction_s'])} ({r['gt_lesions']})",
        f"<= {GPU_TARGETS['lesions_s']} s" if cuda else "",
        (lambda b, r: verdict(r["gt_lesion_extraction_s"], GPU_TARGETS["lesions_s"])) if cuda else None)
    row("write the 4 outputs", lambda r: seconds(r["write_s"]))
    if cuda:
        row("end to end excl. read/write", lambda r: seconds(e2e(r)), f"<= {GPU_TARGETS['e2e_s']} s",
            lambda b, r: verdict(e2e(r), GPU_TARGETS["e2e_s"]))
    else:
        row("end to end excl. read/write (wall)", lambda r: seconds(e2e(r)),
            "; ".join(f"{b} <= {CPU_TARGET_S[b]:g} s" for b in args.backbones if b in CPU_TARGET_S),
            lambda b, r: verdict(e2e(r), CPU_TARGET_S[b]) if b in CPU_TARGET_S else "")
        row("  predict call: CPU s (/ threads = idle-core estimate)",
            lambda r: f"{r['predict_cpu_s']:.1f} s ({r['predict_cpu_s'] / r['threads']:.1f} s)", "same",
            lambda b, r: (verdict(r["predict_cpu_s"] / r["threads"], CPU_TARGET_S[b]) + " (estimate)")
            if b in CPU_TARGET_S else "")
    row("end to end incl. read/write", lambda r: seconds(r["read_s"] + e2e(r) + r["write_s"]))
    row("naive loop: batch 1, fp32, NCHW, host frames, every slice",
        lambda r: f"{seconds(r['naive_study_s'])} (timed on {r['naive_slices_timed']})")
    row("  speed-up of the network stage over it", lambda r: f"{r['naive_study_s'] / r['network_s']:.1f}x",
        f">= {GPU_TARGETS['speedup']:g}x" if cuda else "",
        (lambda b, r: verdict(r["naive_study_s"] / r["network_s"], GPU_TARGETS["speedup"], at_most=False))
        if cuda else None)
    row("peak host RAM (inference process)", lambda r: f"{r['peak_host_mb'] / 1024:.2f} GB",
        "" if cuda else "<= 3 GB", None if cuda else (lambda b, r: verdict(r["peak_host_mb"], HOST_RAM_TARGET_MB)))
    if cuda:
        row("peak GPU memory (predict call)", lambda r: f"{r['peak_gpu_mb'] / 1024:.2f} GB")
    row("warm-up: first study or batch (compilation included)", lambda r: seconds(r["warm_up_s"]))
    return rows


def training_rows(args: argparse.Namespace, results: Dict[str, Dict[str, Any]], standard: bool) -> List[List[str]]:
    cuda = args.device == "cuda"
    rows: List[List[str]] = []
    for backbone in args.train_backbones:
        r = results[backbone]
        share = r["trainer_fps"] / r["raw_fps"]
        rows.append([f"{backbone}: real trainer (batch {r['train_batch']}, {r['train_steps_timed']} steps timed)",
                     f"{r['trainer_fps']:.1f} frames/s", "", ""])
        rows.append([f"{backbone}: raw step, random tensors, same batch", f"{r['raw_fps']:.1f} frames/s", "", ""])
        rows.append([f"{backbone}: trainer / raw", f"{100 * share:.0f}%", ">= 80%" if cuda else "",
                     verdict(share, GPU_TARGETS["trainer_share"], at_most=False) if cuda and standard else ""])
        if cuda:
            rows.append([f"{backbone}: peak GPU memory, trainer", f"{r['train_peak_gpu_mb'] / 1024:.2f} GB", "", ""])
    return rows


def markdown(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    import torch

    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"BrainMetSeg benchmark, {started}\n{describe_machine('cpu')[0]}\n"
              f"skipped: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              "every GPU figure is not measured")
        return 0
    load_start = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        from study import write_model, write_study

        print(f"generating the {args.size}x{args.size}x{args.slices} synthetic study...", file=sys.stderr, flush=True)
        study = write_study(work / "data", args.size, args.slices, args.preset)
        spacing = study["spacing_mm"]
        results: Dict[str, Dict[str, Any]] = {}
        for backbone in args.backbones:
            model = write_model(work / "models" / backbone, backbone, args.size, spacing)
            results[backbone] = run_worker(
                "infer", study=work / "data", model=model, device_name=args.device, batch_size=args.batch_size,
                precision=args.precision, compile=args.compile, cuda_graphs=args.cuda_graphs,
                naive_slices=args.naive_slices, forward_batches=args.forward_batches, out=work / "out" / backbone)
        training: Dict[str, Dict[str, Any]] = {}
        for backbone in args.train_backbones:
            training[backbone] = run_worker(
                "train", study=work / "data", backbone=backbone, device_name=args.device,
                batch_size=args.train_batch, steps=args.train_steps, log_every=max(1, args.train_steps // 10))
        explored: Dict[str, List[Dict[str, Any]]] = {}
        if args.explore and args.device == "cpu":
            for backbone in args.backbones:
                explored[backbone] = run_worker("explore", model=work / "models" / backbone,
                                                frames_per_variant=args.explore_frames,
                                                bf16_frames=1, size=args.size)
    load_end = load_average()

    standard = args.slices == 200 and args.size == 256 and not args.quick
    print(f"\nBrainMetSeg benchmark, {started}")
    for line in describe_machine(args.device):
        print(line)
    print(f"device: {args.device}; load average (1 min) at start {load_start}, at end {load_end}")
    print(f"command: {command}")
    print(f"study: synthetic `{study['preset']}` preset generated at {args.size}x{args.size}x{args.slices} "
          f"({' x '.join(f'{s:g}' for s in spacing)} mm, no padding), {study['slices_with_brain']} slices with brain, "
          f"{study['lesions']} lesions; untrained networks (random weights)")
    if not standard:
        print("targets: not judged (not the 200-slice 256x256 study of issue 7)")
    print()
    print(markdown(["inference, one study"] + list(args.backbones) + ["target", "verdict"],
                   inference_rows(args, results, standard)))
    if training:
        print()
        print(markdown(["training", "frames/s", "target", "verdict"], training_rows(args, training, standard)))
    if explored:
        print()
        header = ["forward pass per frame, CPU options tried"] + [f"{b} wall / CPU s" for b in explored]
        variants = [row["variant"] for row in next(iter(explored.values()))]
        rows = [[variant] + [f"{seconds(r[i]['wall_per_frame_s'])} / {seconds(r[i]['cpu_per_frame_s'])} "
                             f"({r[i]['frames']} frames)" for r in explored.values()]
                for i, variant in enumerate(variants)]
        print(markdown(header, rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"date": started, "command": command, "device": args.device,
                                         "machine": describe_machine(args.device), "load": [load_start, load_end],
                                         "study": study, "inference": results, "training": training,
                                         "explore": explored}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
