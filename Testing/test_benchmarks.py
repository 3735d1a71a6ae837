"""benchmarks/run.py runs end to end as a real process and prints its table (no timing is
asserted: speed is measured by the benchmark, not by tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

INFERENCE_ROWS = (
    "study slices / slices with brain (= frames run)",
    "read the 4 NIfTI files",
    "prepare: reorient, resample, z-score",
    "network stage: frames on device, network, softmax, brain margin",
    "per frame run / per study slice",
    "frames/s",
    "forward pass alone, per frame",
    "map back to the input grid",
    "lesion extraction, network's map (lesions)",
    "lesion extraction, ground-truth-like map (lesions)",
    "write the 4 outputs",
    "end to end excl. read/write (wall)",
    "predict call: CPU s (/ threads = idle-core estimate)",
    "end to end incl. read/write",
    "naive loop: batch 1, fp32, NCHW, host frames, every slice",
    "speed-up of the network stage over it",
    "peak host RAM (inference process)",
)
TRAINING_ROWS = ("mobilenet_v3_large: real trainer (batch 2, ", "mobilenet_v3_large: raw step, random tensors",
                 "mobilenet_v3_large: trainer / raw")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def _cells(stdout: str, label: str) -> list:
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(label):
            return cells
    raise AssertionError(f"no row {label!r} in:\n{stdout}")


def test_quick_run_prints_the_machine_and_every_row(tmp_path):
    result = _run("--quick", "--device", "cpu", "--naive-slices", "2", "--json", str(tmp_path / "figures.json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "CPU: " in out and " cores; torch " in out and "device: cpu; load average (1 min) at start" in out
    assert "command: python benchmarks/run.py --quick" in out
    assert "generated at 64x64x24" in out and "targets: not judged" in out
    assert "| inference, one study | mobilenet_v3_large | target | verdict |" in out
    for label in INFERENCE_ROWS:
        cells = _cells(out, label)
        assert len(cells) == 4 and cells[1], f"{label}: {cells}"
    assert _cells(out, "study slices / slices with brain")[1] == "24 / 19"
    assert _cells(out, "naive loop")[1].endswith("(timed on 2)")
    for label in TRAINING_ROWS:
        assert _cells(out, label)[1]
    figures = json.loads((tmp_path / "figures.json").read_text())
    run = figures["inference"]["mobilenet_v3_large"]
    assert run["frames"] == 19 and run["model_slices"] == 24 and run["naive_slices_timed"] == 2
    assert run["gt_lesions"] == figures["study"]["lesions"] == 6
    assert 0 < run["network_s"] < run["predict_s"]


def test_cuda_request_without_a_gpu_says_skipped():
    result = _run("--device", "cuda")
    assert result.returncode == 0, result.stderr
    assert "skipped: no CUDA device" in result.stdout and "CPU: " in result.stdout


def test_equivalence_script_compares_each_fast_path_on_the_cpu():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "equivalence.py"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fp32 reference on cpu: 3 lesions, confidences ")
    assert lines[1].startswith("bf16 autocast: same lesions (3 lesions; lesion Dice >= ")
    assert lines[2].startswith("bf16 weights: same lesions (3 lesions; lesion Dice >= ")
    assert len(lines) == 3
    skipped = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "equivalence.py"), "--device", "cuda"],
                             capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert skipped.returncode == 0 and skipped.stdout.startswith("skipped: no CUDA device")


def test_fold_benchmark_names_the_machine_and_compares_both_passes():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fold_batch_norm.py"), "--repeats", "1",
                           "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    machine, difference, timing = done.stdout.splitlines()
    assert f"{os.cpu_count()} cores; torch {torch.__version__}; mobilenet_v3_large, output stride 8" in machine
    assert 0 < float(difference.rsplit(" ", 1)[1]) < 1e-4  # folded: another order of the same sums
    assert timing.startswith("1 thread(s), median of 1 batches: plain ") and "of the CPU time" in timing


def test_gpu_schedule_fits_the_lease_and_pays_for_every_epoch():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_schedule import MARGIN, REPORT_S, run_seconds, schedule

    # the first H200 lease's calibration: 27 ms a step, 2.8 s a test case, 6 test cases
    costs = dict(head_s=18.0, step_s=0.027, case_s=2.8, test_cases=6)
    chosen = {}
    for tail_s in (0.5, 6.0):
        epochs, steps_per_epoch = chosen[tail_s] = schedule(tail_s=tail_s, seconds_left=274, runs=3,
                                                            pass_steps=130, **costs)
        priced = run_seconds(epochs * steps_per_epoch, epochs, tail_s=tail_s, **costs)
        assert 3 * MARGIN * priced + REPORT_S <= 274  # runs up to MARGIN slower than priced still fit
        assert steps_per_epoch >= 0.75 * 130
    assert chosen[0.5][0] > chosen[6.0][0]  # validation and checkpoints at each epoch end buy fewer epochs
    # side by side, each run has the whole window (its costs measured with the others running)
    epochs, steps_per_epoch = schedule(tail_s=6.0, seconds_left=274, runs=3, pass_steps=130, parallel=True, **costs)
    assert MARGIN * run_seconds(epochs * steps_per_epoch, epochs, tail_s=6.0, **costs) + REPORT_S <= 274
    assert epochs * steps_per_epoch > 3 * chosen[6.0][0] * chosen[6.0][1]
    with pytest.raises(SystemExit, match="fewer than 20 steps per run fit in 60 s"):
        schedule(tail_s=6.0, seconds_left=60, runs=3, pass_steps=130, **costs)
