"""Checkpoints without pickle: weights + AdamW state + counters round-trip exactly."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from torch import nn

from BrainMetSegLib.checkpoint import (CHECKPOINT_FILE, CHECKPOINT_JSON, flatten_state, load_checkpoint,
                                       read_checkpoint_progress, save_checkpoint, unflatten_state)
from BrainMetSegLib.errors import BrainMetSegError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, first: int, count: int) -> None:
    for step in range(first, first + count):
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(2, 3, 8, 8, generator=generator)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


def test_flatten_keeps_int_keys_tuples_and_values():
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
             "param_groups": [{"betas": (0.9, 0.999), "lr": 1e-3, "fused": None, "params": [0], "name": "x"}]}
    tensors = {}
    skeleton = flatten_state(state, tensors)
    assert json.loads(json.dumps(skeleton)) == skeleton  # plain JSON
    assert sorted(tensors) == ["optimizer/0", "optimizer/1"]
    back = unflatten_state(json.loads(json.dumps(skeleton)), tensors)
    assert list(back["state"]) == [0] and isinstance(list(back["state"])[0], int)
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["param_groups"][0]["fused"] is None and back["param_groups"][0]["name"] == "x"
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2))


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    _steps(model, optimizer, 0, 3)
    save_checkpoint(tmp_path, model.state_dict(), optimizer.state_dict(), {"step": 3, "best": None, "history": [1.5]})
    _steps(model, optimizer, 3, 2)  # the uninterrupted run

    restored = _model()
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-2, weight_decay=0.01)
    checkpoint = load_checkpoint(tmp_path)
    restored.load_state_dict(checkpoint.model)
    restored_optimizer.load_state_dict(checkpoint.optimizer)
    assert checkpoint.progress == {"step": 3, "best": None, "history": [1.5]}
    _steps(restored, restored_optimizer, 3, 2)

    for name, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[name]), name


def test_file_is_safetensors_with_its_index_in_the_header_and_a_readable_copy(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    _steps(model, optimizer, 0, 1)
    save_checkpoint(tmp_path, model.state_dict(), optimizer.state_dict(), {"step": 1})
    raw = (tmp_path / CHECKPOINT_FILE).read_bytes()
    header_length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_length])
    assert "brainmetseg_checkpoint" in header["__metadata__"]
    assert "model/0.weight" in header and "optimizer/0" in header
    assert json.loads((tmp_path / CHECKPOINT_JSON).read_text())["progress"] == {"step": 1}
    assert read_checkpoint_progress(tmp_path) == {"step": 1}
    assert read_checkpoint_progress(tmp_path / "elsewhere") == {}
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary left behind


def test_a_pickled_checkpoint_is_refused_not_loaded(tmp_path):
    torch.save({"model": _model().state_dict()}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(BrainMetSegError, match=r"checkpoint.safetensors: not a readable safetensors checkpoint"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_and_foreign_safetensors_are_refused(tmp_path):
    with pytest.raises(BrainMetSegError, match=r"checkpoint.safetensors: no checkpoint to resume from"):
        load_checkpoint(tmp_path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / CHECKPOINT_FILE))
    with pytest.raises(BrainMetSegError, match="not a BrainMetSeg checkpoint"):
        load_checkpoint(tmp_path)
