"""Several processes under torchrun (gloo on the CPU): they train together, only rank 0 writes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.events import read_events
from BrainMetSegLib.model_folder import load_model_folder
from BrainMetSegLib.train import check_batch_split
from helpers_train import TRAIN_ARGS, write_tiny_dataset


def test_two_processes_train_a_few_steps_and_only_rank_0_writes(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "BrainMetSegLib", "train", "--dataset", str(dataset), "--out", str(run), *TRAIN_ARGS,
               "--epochs", "1", "--steps-per-epoch", "3", "--log-every", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]

    events = read_events(run / "events.jsonl")
    names = [event["event"] for event in events]
    assert names.count("started") == 1 and names.count("epoch") == 1 and names.count("finished") == 1
    assert [event["step"] for event in events if event["event"] == "step"] == [1, 2, 3]  # one writer, no repeats
    assert events[0]["world_size"] == 2
    finished = events[-1]
    assert finished["event"] == "finished" and finished["summary"]["world_size"] == 2
    assert sorted(path.name for path in run.iterdir()) == [
        "checkpoint.json", "checkpoint.safetensors", "events.jsonl", "model", "options.json"]
    assert result.stdout.count("model: ") == 1  # printed by rank 0 only
    _, config = load_model_folder(run / "model")
    assert config.training["batch_size"] == 4 and config.training["steps"] == 3


def test_a_batch_that_cannot_be_shared_between_processes_is_refused():
    assert check_batch_split(16, 4) == 4
    with pytest.raises(BrainMetSegError, match=r"batch_size \(--batch-size\): 4 frames cannot be split into 3 equal"):
        check_batch_split(4, 3)
    with pytest.raises(BrainMetSegError, match="parts of at least 2 frames"):
        check_batch_split(4, 4)
