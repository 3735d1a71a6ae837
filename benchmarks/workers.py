"""The measured work of benchmarks/run.py. Each function runs in a process of its own (run.py
starts `run.py --worker NAME ...`), so that peak host memory is that work's alone and no
compiled or cached state leaks from one measurement into the next.

Timing: wall clock (time.perf_counter) with the GPU synchronised at every boundary, plus the
process's CPU seconds, which on a shared CPU estimate what idle cores would take.
"""
from __future__ import annotations

import re
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from BrainMetSegLib.dataset import CaseEntry
from BrainMetSegLib.devices import autocast, resolve_device
from BrainMetSegLib.fast_path import FastNetwork, SpeedOptions
from BrainMetSegLib.frames import prepare_case
from BrainMetSegLib.lesions import find_lesions
from BrainMetSegLib.model_folder import load_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.predict import Predictor, write_prediction
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import read_volume
from study import CASE_ID, ground_truth_like_probability

SLICES = 5


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_host_mb() -> float:
    """Peak resident memory of this process (Linux reports kB, macOS bytes)."""
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def timed(function: Callable[[], Any], device: torch.device) -> Tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    sync(device)
    return result, time.perf_counter() - start, time.process_time() - cpu


def median_time(function: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    return statistics.median(timed(function, device)[1] for _ in range(repeats))


# ---------------------------------------------------------------------------------- inference


def naive_loop(model: Path, prepared, device: torch.device, count: int) -> Dict[str, float]:
    """The authors' kind of inference: every slice alone (batch 1), fp32, NCHW, its 20-channel
    frame built on the host and copied to the device, softmax copied back. Timed on `count`
    slices spread over the study; per study = per slice x all slices."""
    network, _ = load_model_folder(model, device)
    network.eval()
    images = prepared.images
    depth = images.shape[1]
    chosen = np.unique(np.linspace(0, depth - 1, min(count, depth)).round().astype(int))

    def one(z: int) -> np.ndarray:
        index = np.clip(np.arange(z - SLICES // 2, z + SLICES // 2 + 1), 0, depth - 1)
        frame = np.ascontiguousarray(images[:, index].reshape(len(ROLES) * SLICES, *images.shape[2:]))
        logits = network(torch.from_numpy(frame)[None].to(device))
        return torch.softmax(logits, dim=1)[0, 1].cpu().numpy()

    with torch.no_grad():
        one(int(chosen[0]))
        _, wall, cpu = timed(lambda: [one(int(z)) for z in chosen], device)
    return {"naive_slices_timed": int(len(chosen)), "naive_per_slice_s": wall / len(chosen),
            "naive_study_s": wall / len(chosen) * depth, "naive_cpu_per_slice_s": cpu / len(chosen)}


def infer(study: Path, model: Path, device_name: str, batch_size: int, precision: str, compile: bool,
          cuda_graphs: bool, naive_slices: int, forward_batches: int, out: Path) -> Dict[str, Any]:
    device = resolve_device(device_name)
    entry = CaseEntry(CASE_ID, study / CASE_ID)
    case, read_s, _ = timed(lambda: entry.load(with_label=False), device)
    predictor = Predictor(model, device=device, batch_size=batch_size, precision=precision, compile=compile,
                          cuda_graphs=cuda_graphs)
    result: Dict[str, Any] = {"speed": predictor.speed.describe(device), "batch_size": predictor.batch_size,
                              "threads": torch.get_num_threads(), "read_s": read_s}
    _, warm_s, _ = timed(lambda: _warm_up(predictor, case, device), device)
    result["warm_up_s"] = warm_s
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prediction, total_s, cpu_s = timed(lambda: predictor.predict(case), device)
    result.update({f"{stage}_s": seconds for stage, seconds in prediction.timings.items()})
    result.update(predict_s=total_s, predict_cpu_s=cpu_s, frames=prediction.frames,
                  model_slices=prediction.model_slices, lesions_found=len(prediction.lesions))
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    _, result["write_s"], _ = timed(lambda: write_prediction(prediction, out, overwrite=True), device)
    result["peak_host_mb"] = peak_host_mb()

    fast = predictor.fast_network()
    size = predictor.config.in_plane_size
    frames = torch.randn(predictor.batch_size, len(ROLES) * SLICES, size[0], size[1], device=device)
    with torch.inference_mode():
        _, wall, cpu = timed(lambda: [fast(frames) for _ in range(forward_batches)], device)
    result["forward_per_frame_s"] = wall / (forward_batches * predictor.batch_size)
    result["forward_cpu_per_frame_s"] = cpu / (forward_batches * predictor.batch_size)

    label = read_volume(entry.label_path()).array
    probability = ground_truth_like_probability(label)
    result["gt_lesions"] = len(find_lesions(probability, case.affine, 0.1)[1])
    result["gt_lesion_extraction_s"] = median_time(lambda: find_lesions(probability, case.affine, 0.1), device)

    config = predictor.config
    prepared = prepare_case(case, config.pixel_spacing_mm, config.slice_spacing_mm, config.in_plane_size)
    result.update(naive_loop(model, prepared, device, naive_slices))
    return result


def _warm_up(predictor: Predictor, case, device: torch.device) -> None:
    """On a GPU (and whenever compiling) one whole study: compilation, graph capture, cuDNN's
    choices. On a CPU one small batch, which creates oneDNN's kernels at the study's frame size,
    and one lesion extraction (its first call imports cc3d)."""
    if device.type == "cuda" or predictor.speed.static_shapes:
        predictor.predict(case)
        return
    find_lesions(np.zeros((2, 2, 2), dtype=np.float32), np.eye(4))
    size = predictor.config.in_plane_size
    with torch.inference_mode():
        predictor.fast_network()(torch.zeros(2, len(ROLES) * SLICES, size[0], size[1]))


# ---------------------------------------------------------------------------------- training


def train_speed(study: Path, backbone: str, device_name: str, batch_size: int, steps: int,
                log_every: int) -> Dict[str, Any]:
    """Frames/s of the real trainer (BrainMetSegLib.train: slices in device memory, frames and
    augmentation built there, lopsided loss, AdamW) between its first and last step reports,
    and of the raw step (network + cross-entropy + AdamW on random tensors), same batch, same
    number of steps after the same warm-up."""
    from BrainMetSegLib.train import train
    from BrainMetSegLib.train_options import TrainOptions

    device = resolve_device(device_name)
    marks: List[Tuple[int, float]] = []

    def progress(fraction: float, message: str) -> None:
        match = re.match(r"step (\d+) of", message)
        if match:  # reported after the trainer's own host synchronisation
            marks.append((int(match.group(1)), time.perf_counter()))

    bravo = read_volume(study / CASE_ID / "bravo.nii.gz")
    size, spacing = int(bravo.shape[0]), [float(s) for s in bravo.spacing]
    with tempfile.TemporaryDirectory() as run:
        if device.type == "cuda":
            torch.cuda.init()  # the memory counters refuse a device that CUDA has not initialised yet
            torch.cuda.reset_peak_memory_stats(device)
        options = TrainOptions(dataset=study, out=Path(run) / "run", backbone=backbone, device=device_name,
                               batch_size=batch_size, max_steps=steps, steps_per_epoch=steps, epochs=1,
                               log_every=log_every, checkpoint_every=0, workers=1,
                               in_plane_size=size, pixel_spacing=spacing[0], slice_spacing=spacing[2])
        train(options, progress=progress)
    (first_step, first_time), (last_step, last_time) = marks[0], marks[-1]
    result: Dict[str, Any] = {"train_batch": batch_size, "train_steps_timed": last_step - first_step,
                              "trainer_fps": (last_step - first_step) * batch_size / (last_time - first_time)}
    if device.type == "cuda":
        result["train_peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    result["raw_fps"] = raw_step_fps(backbone, device, batch_size, size, first_step,
                                     last_step - first_step)
    return result


def raw_step_fps(backbone: str, device: torch.device, batch_size: int, size: int, warm: int, timed_steps: int) -> float:
    torch.manual_seed(0)
    network = build_network(backbone, in_channels=len(ROLES) * SLICES).to(device)
    frames = torch.randn(batch_size, len(ROLES) * SLICES, size, size, device=device)
    if device.type == "cuda":
        network.to(memory_format=torch.channels_last)
        frames = frames.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (batch_size, size, size), device=device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))
    network.train()

    def step() -> None:
        with autocast(device):
            logits = network(frames)
        loss = F.cross_entropy(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warm):
        step()
    _, wall, _ = timed(lambda: [step() for _ in range(timed_steps)], device)
    return timed_steps * batch_size / wall


# ---------------------------------------------------------------------------------- CPU options


def explore(model: Path, frames_per_variant: int, bf16_frames: int, size: int) -> List[Dict[str, Any]]:
    """Forward-pass cost per frame on the CPU under the options issue 7 asks about: memory
    layout, batch size, threads, inference_mode, bf16 (and skipping slices without brain,
    which is a count, reported by the inference rows)."""
    device = torch.device("cpu")
    threads = torch.get_num_threads()
    rows = []

    def measure(name: str, options: SpeedOptions, batch: int, frames: int, thread_count: int = threads,
                grad_mode: Callable[[], Any] = torch.inference_mode) -> None:
        network, _ = load_model_folder(model, device)
        fast = FastNetwork(network, device, options)
        torch.set_num_threads(thread_count)
        x = torch.randn(batch, len(ROLES) * SLICES, size, size)
        batches = max(1, frames // batch)
        with grad_mode():
            fast(x[: min(batch, 2)])
            _, wall, cpu = timed(lambda: [fast(x) for _ in range(batches)], device)
        torch.set_num_threads(threads)
        rows.append({"variant": name, "frames": batches * batch, "wall_per_frame_s": wall / (batches * batch),
                     "cpu_per_frame_s": cpu / (batches * batch)})

    fp32 = SpeedOptions(precision="fp32")
    measure(f"NCHW (torch default), batch 8, {threads} threads", SpeedOptions(precision="fp32", channels_last=False),
            8, frames_per_variant)
    measure(f"channels_last (default), batch 8, {threads} threads", fp32, 8, frames_per_variant)
    measure("channels_last, batch 1", fp32, 1, frames_per_variant)
    measure("channels_last, batch 16", fp32, 16, max(16, frames_per_variant))
    measure("channels_last, batch 8, 1 thread", fp32, 8, frames_per_variant, thread_count=1)
    measure("channels_last, batch 8, no_grad instead of inference_mode", fp32, 8, frames_per_variant,
            grad_mode=torch.no_grad)
    measure("bf16 autocast, channels_last", SpeedOptions(precision="bf16"), bf16_frames, bf16_frames)
    return rows
