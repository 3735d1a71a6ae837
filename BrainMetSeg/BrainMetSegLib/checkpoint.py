"""Training checkpoints without pickle: RUN/checkpoint.safetensors (+ a readable checkpoint.json).

A checkpoint holds the model weights, the optimiser state and the run's progress counters
(step, epoch, best validation AP, history). torch.save would pickle the optimiser state, and
loading a pickle can run code, so the optimiser's nested state is flattened instead: every
tensor goes into the safetensors file under a generated name, everything else into a JSON
"skeleton" that says where each tensor goes back. The skeleton and the progress live in the
safetensors header (its string metadata), so the one file is the whole checkpoint and a
single atomic rename makes it visible: a run killed while writing leaves the previous
checkpoint intact, never a new file with an old index. checkpoint.json is a copy of the
header for people and for the Slicer module; loading never reads it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch

from .atomic import atomic_path, atomic_write_json
from .errors import BrainMetSegError

PathLike = Union[str, "os.PathLike[str]"]

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
FORMAT = 1
_HEADER_KEY = "brainmetseg_checkpoint"
_MODEL_PREFIX = "model/"
_STATE_PREFIX = "optimizer/"


@dataclass
class Checkpoint:
    model: Dict[str, torch.Tensor]
    optimizer: Dict[str, Any]
    """A torch optimiser state_dict, ready for optimizer.load_state_dict (tensors on the CPU)."""
    progress: Dict[str, Any]
    """JSON: counters and whatever else the trainer needs to continue (see train.py)."""


def flatten_state(obj: Any, tensors: Dict[str, torch.Tensor], prefix: str = _STATE_PREFIX) -> Any:
    """JSON skeleton of `obj` (nested dicts, lists, tuples, scalars and tensors); tensors are
    moved into `tensors` under `prefix<n>`. Dict keys keep their type (optimiser state is keyed
    by parameter index, an int), which plain JSON objects would not."""
    if isinstance(obj, torch.Tensor):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()
        return {"tensor": name}
    if isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise BrainMetSegError(f"checkpoint: state key {key!r} is neither a string nor an integer")
            items.append([key, flatten_state(value, tensors, prefix)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        return {"tuple" if isinstance(obj, tuple) else "list": [flatten_state(item, tensors, prefix) for item in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise BrainMetSegError(f"checkpoint: cannot store a {type(obj).__name__} in the optimiser state")


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of flatten_state."""
    if not isinstance(skeleton, dict) or len(skeleton) != 1:
        raise BrainMetSegError(f"checkpoint: damaged state index entry {skeleton!r}")
    (kind, content), = skeleton.items()
    if kind == "tensor":
        if content not in tensors:
            raise BrainMetSegError(f"checkpoint: tensor {content!r} named in the index is missing from the file")
        return tensors[content]
    if kind == "dict":
        return {key: unflatten_state(value, tensors) for key, value in content}
    if kind == "list":
        return [unflatten_state(item, tensors) for item in content]
    if kind == "tuple":
        return tuple(unflatten_state(item, tensors) for item in content)
    if kind == "value":
        return content
    raise BrainMetSegError(f"checkpoint: unknown state index entry kind {kind!r}")


def save_checkpoint(folder: PathLike, model_state: Mapping[str, torch.Tensor], optimizer_state: Mapping[str, Any],
                    progress: Mapping[str, Any]) -> Path:
    """Write folder/checkpoint.safetensors atomically, then its readable copy checkpoint.json."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors: Dict[str, torch.Tensor] = {
        _MODEL_PREFIX + name: value.detach().to("cpu", copy=True).contiguous() for name, value in model_state.items()}
    state_tensors: Dict[str, torch.Tensor] = {}
    skeleton = flatten_state(dict(optimizer_state), state_tensors)
    tensors.update(state_tensors)
    header = {"format": FORMAT, "progress": dict(progress), "optimizer": skeleton}
    path = folder / CHECKPOINT_FILE
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_HEADER_KEY: json.dumps(header)})
    atomic_write_json(folder / CHECKPOINT_JSON, {"format": FORMAT, "file": CHECKPOINT_FILE, "progress": header["progress"]})
    return path


def load_checkpoint(folder: PathLike) -> Checkpoint:
    """Read folder/checkpoint.safetensors (tensors on the CPU); a damaged file is refused by name."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise BrainMetSegError(f"{path}: no checkpoint to resume from")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise BrainMetSegError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    if _HEADER_KEY not in metadata:
        raise BrainMetSegError(f"{path}: not a BrainMetSeg checkpoint (no {_HEADER_KEY} header)")
    try:
        header = json.loads(metadata[_HEADER_KEY])
    except json.JSONDecodeError as error:
        raise BrainMetSegError(f"{path}: damaged checkpoint header ({error})") from None
    if header.get("format") != FORMAT:
        raise BrainMetSegError(f"{path}: checkpoint format {header.get('format')!r}; this version reads {FORMAT}")
    model = {name[len(_MODEL_PREFIX):]: value for name, value in tensors.items() if name.startswith(_MODEL_PREFIX)}
    optimizer = unflatten_state(header["optimizer"], tensors)
    return Checkpoint(model, optimizer, header["progress"])



def read_checkpoint_progress(folder: PathLike) -> Dict[str, Any]:
    """The progress counters of folder/checkpoint.safetensors from its header alone (no tensor is
    read), or {} when there is no checkpoint yet."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = json.loads((handle.metadata() or {})[_HEADER_KEY])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise BrainMetSegError(f"{path}: not a readable BrainMetSeg checkpoint ({error})") from None
    return dict(header.get("progress", {}))
