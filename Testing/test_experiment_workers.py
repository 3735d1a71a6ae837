"""`brainmetseg experiment --workers N`: real worker processes train the micro preset's runs into
one folder. Every run is trained once with its share of the cores, Table 3's subsets are
written once, and a failing run, SIGTERM and a killed worker are each handled as the one-process
grid handles them: nothing finished is lost, and the same command continues."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import psutil
import pytest

from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.experiment import EVALUATION_FILE, claim_folder
from BrainMetSegLib.experiment_workers import check_workers, threads_per_worker
from helpers_experiment import MICRO, event_names, write_experiment_dataset, write_preset_json

TABLE3_RUNS = ["full-a3-b1-n010-s0", "full-a3-b1-n030-s0", "full-a3-b1-n100-s0", "stochastic50-a3-b0.1-n030-s0",
               "stochastic50-a3-b0.1-n100-s0", "size50-a3-b0.1-n030-s0", "size50-a3-b0.1-n100-s0"]
KEY_RUNS = ["full-a3-b1-n100-s0", "stochastic50-a3-b1-n100-s0", "stochastic50-a3-b0.1-n100-s0"]
LONG = {**MICRO.to_json(), "name": "micro-long", "steps_per_epoch": 100}
"""Long enough (several seconds of training per run) to be stopped or killed while training."""


def _command(data: Path, out: Path, preset_file: Path, *extra: str) -> List[str]:
    return [sys.executable, "-m", "BrainMetSegLib", "experiment", "--dataset", str(data), "--out", str(out),
            "--preset", str(preset_file), "--seeds", "0", "--device", "cpu", "--workers", "2", *extra]


def _events(run: Path) -> List[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines()]


def _start_long_key_rows(tmp_path: Path) -> Tuple[Path, List[str], subprocess.Popen]:
    """Table 1's key rows of the LONG preset by two workers, started in the background."""
    data = write_experiment_dataset(tmp_path / "data")
    out = tmp_path / "out"
    preset_file = tmp_path / "long.json"
    preset_file.write_text(json.dumps(LONG), encoding="utf-8")
    command = _command(data, out, preset_file, "--tables", "1", "--key-rows-only")
    return out, command, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the workers"
        time.sleep(0.2)


def _training(out: Path, run_id: str) -> bool:
    events = out / "runs" / run_id / "events.jsonl"
    return events.is_file() and "step" in event_names(events.parent)


def test_cores_are_shared_out_evenly_and_bad_worker_counts_are_refused():
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=16) == 5
    assert threads_per_worker(4, cores=2) == 1
    for bad in (0, -1, True, "2"):
        with pytest.raises(BrainMetSegError, match=r"--workers: expected a positive integer, got"):
            check_workers(bad)


def test_two_workers_train_every_run_once_with_their_share_of_the_cores(tmp_path):
    data = write_experiment_dataset(tmp_path / "data")
    out = tmp_path / "out"
    result = subprocess.run(_command(data, out, write_preset_json(tmp_path / "micro.json"), "--tables", "3"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    threads = threads_per_worker(2)
    assert f"7 run(s) in 2 worker processes of {threads} thread(s) each" in result.stderr
    assert "worker 1: " in result.stderr and "worker 2: " in result.stderr  # both took runs
    assert sorted(path.name for path in (out / "runs").iterdir()) == sorted(TABLE3_RUNS)
    for run_id in TABLE3_RUNS:
        run = out / "runs" / run_id
        assert event_names(run).count("started") == 1 and (run / EVALUATION_FILE).is_file()
        assert _events(run)[0]["device"].startswith(f"cpu ({threads} thread")
        log = (out / "logs" / f"{run_id}.log").read_text(encoding="utf-8")
        assert f"[1/1] {run_id}: training and evaluating" in log and f"[1/1] {run_id}: AP " in log
        assert f"{run_id} finished: AP " in result.stderr
    assert sorted(path.name for path in (out / "data").iterdir()) == ["train010-s0", "train030-s0"]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [row["seeds_done"] for row in results["tables"]["3"]] == [[0]] * 7
    assert results["command"].endswith("--tables 3 --device cpu --workers 2")  # the runs' threads follow from it


def test_a_failing_run_is_reported_and_the_other_runs_finish(tmp_path):
    data = write_experiment_dataset(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    claim_folder(out, MICRO, read_dataset(data))  # a folder this grid started, with one run gone wrong
    broken = out / "runs" / KEY_RUNS[1]
    broken.mkdir(parents=True)
    (broken / "options.json").write_text("{not json", encoding="utf-8")
    result = subprocess.run(_command(data, out, write_preset_json(tmp_path / "micro.json"), "--tables", "1",
                                     "--key-rows-only"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert f"error: 1 run(s) failed: {KEY_RUNS[1]}" in result.stderr
    assert f"{KEY_RUNS[1]} failed: " in result.stderr and "options.json" in result.stderr
    assert "FAILED" in (out / "logs" / f"{KEY_RUNS[1]}.log").read_text(encoding="utf-8")
    assert (broken / "options.json").read_text(encoding="utf-8") == "{not json"  # left for the user to look at
    for run_id in (KEY_RUNS[0], KEY_RUNS[2]):
        assert (out / "runs" / run_id / EVALUATION_FILE).is_file()


def test_sigterm_stops_the_workers_after_a_checkpoint_and_the_same_command_continues(tmp_path):
    out, command, grid = _start_long_key_rows(tmp_path)
    _wait_for(lambda: _training(out, KEY_RUNS[0]) and _training(out, KEY_RUNS[1]))
    grid.send_signal(signal.SIGTERM)
    _, stderr = grid.communicate(timeout=300)
    assert grid.returncode == 130, stderr
    assert "rerun the same command to continue the grid" in stderr
    for run_id in KEY_RUNS[:2]:
        events = _events(out / "runs" / run_id)
        assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "SIGTERM"
        assert events[-2]["event"] == "checkpoint" and events[-2]["reason"] == "stop"
        assert not (out / "runs" / run_id / EVALUATION_FILE).exists()
    assert not (out / "runs" / KEY_RUNS[2]).exists()  # never started

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    for run_id in KEY_RUNS[:2]:
        started = [event for event in _events(out / "runs" / run_id) if event["event"] == "started"]
        assert len(started) == 2 and started[1]["resumed_from"] > 0
    assert all((out / "runs" / run_id / EVALUATION_FILE).is_file() for run_id in KEY_RUNS)


def test_a_killed_worker_fails_its_run_and_the_other_worker_finishes_the_grid(tmp_path):
    """SIGKILL (as the out-of-memory killer sends) leaves no chance to report: the parent sees
    the worker gone, names its run as failed with the exit code, and the rest is done; the same
    command then trains the killed run again."""
    out, command, grid = _start_long_key_rows(tmp_path)
    _wait_for(lambda: _training(out, KEY_RUNS[0]) or _training(out, KEY_RUNS[1]))
    workers = [child for child in psutil.Process(grid.pid).children()
               if "spawn_main" in " ".join(child.cmdline())]
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    _, stderr = grid.communicate(timeout=600)
    assert grid.returncode == 1, stderr
    failed = [line for line in stderr.splitlines() if "during the run" in line]
    assert len(failed) == 1 and "(exit code -9)" in failed[0]
    killed = next(run_id for run_id in KEY_RUNS if f"{run_id} failed" in failed[0])
    assert f"error: 1 run(s) failed: {killed}" in stderr
    for run_id in KEY_RUNS:
        assert (out / "runs" / run_id / EVALUATION_FILE).is_file() == (run_id != killed)

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # continues the killed run
    assert again.returncode == 0, again.stderr
    assert "worker processes" not in again.stderr  # one run left: trained in this process
    assert event_names(out / "runs" / killed).count("started") == 2
    assert all((out / "runs" / run_id / EVALUATION_FILE).is_file() for run_id in KEY_RUNS)
