"""Model folders: `<name>/model.safetensors` (weights) + `<name>/model.json` (ModelConfig).

Weights are safetensors, never a pickle: a pickled checkpoint can run arbitrary code when
loaded, and models are shared between sites. A folder dropped in the models directory
($BRAINMETSEG_MODELS, default ~/.brainmetseg/models) is found by name. Listing reads JSON
only, so Slicer can show the models before torch is installed; torch is imported only to
save or load weights.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple, Union

from .atomic import atomic_path, atomic_write_json
from .errors import BrainMetSegError
from .model_card import ModelConfig

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
MODELS_ENV = "BRAINMETSEG_MODELS"

_SHOWN_KEYS = 3
"""How many mismatched tensor names an error message lists."""

log = logging.getLogger(__name__)


def models_directory() -> Path:
    """Where models are found by name: $BRAINMETSEG_MODELS, else ~/.brainmetseg/models."""
    configured = os.environ.get(MODELS_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".brainmetseg" / "models"


def save_model_folder(
    folder: PathLike, state_dict: Mapping[str, "torch.Tensor"], config: ModelConfig, overwrite: bool = False
) -> Path:
    """Write weights then model.json, each atomically, so a listed model is always complete."""
    folder = Path(folder)
    weights_path, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if folder.exists() and not folder.is_dir():
        raise BrainMetSegError(f"{folder}: exists and is not a folder")
    if not overwrite and (weights_path.exists() or config_path.exists()):
        raise BrainMetSegError(
            f"{folder}: a model folder already exists there; pass overwrite=True (--overwrite) to replace it"
        )
    document = config.to_json()
    ModelConfig.from_json(document, str(config_path))  # refuse to write a model.json that could not be read back

    import torch
    from safetensors.torch import save_file

    bad = [key for key, value in state_dict.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise BrainMetSegError(
            f"{weights_path}: state_dict must map names to tensors; bad entries: {bad[:_SHOWN_KEYS]}"
        )
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(config_path, document)
    return folder


def read_model_config(folder: PathLike) -> ModelConfig:
    """model.json of a model folder, checked; reads no weights and needs no torch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BrainMetSegError(f"{folder}: not a model folder (no such folder)")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise BrainMetSegError(f"{config_path}: missing; a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise BrainMetSegError(f"{config_path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise BrainMetSegError(f"{config_path}: not valid JSON ({error})") from None
    return ModelConfig.from_json(document, str(config_path))


def _looks_pickled(path: Path) -> bool:
    """torch.save writes a zip archive (new) or a raw pickle starting with the PROTO opcode (old)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read_weights(path: Path) -> Dict[str, "torch.Tensor"]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise BrainMetSegError(f"{path}: missing; a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        hint = (
            "it looks like a pickled PyTorch checkpoint (torch.save), which BrainMetSeg never loads because "
            "unpickling can run arbitrary code"
            if _looks_pickled(path)
            else f"{error}"
        )
        raise BrainMetSegError(f"{path}: not a safetensors file; {hint}") from None


def _mismatch(expected: Mapping[str, "torch.Tensor"], found: Mapping[str, "torch.Tensor"]) -> List[str]:
    """Human-readable differences between the network's tensors and the file's, empty if none."""

    def names(keys: List[str]) -> str:
        more = f", ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
        return ", ".join(keys[:_SHOWN_KEYS]) + more

    def shape(tensor: "torch.Tensor") -> str:
        return "x".join(str(size) for size in tensor.shape) or "scalar"

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [key for key in expected if key in found and expected[key].shape != found[key].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: {names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {names(unexpected)}")
    if reshaped:
        listed = [f"{key} (file {shape(found[key])}, expected {shape(expected[key])})" for key in reshaped]
        problems.append(f"{len(reshaped)} tensor(s) of the wrong shape: {names(listed)}")
    return problems


def load_model_folder(
    folder: PathLike, device: Union[str, "torch.device"] = "cpu"
) -> Tuple["torch.nn.Module", ModelConfig]:
    """The network described by model.json with the folder's weights, in eval mode on `device`.

    The weights must match model.json exactly (no missing, extra or re-shaped tensor): a
    partial load would give a network that runs and silently predicts nonsense.
    """
    import torch

    from .network import build_network

    folder = Path(folder)
    config = read_model_config(folder)
    weights_path = folder / WEIGHTS_FILE
    weights = _read_weights(weights_path)
    network = build_network(config.backbone, in_channels=config.in_channels, num_classes=2,
                            output_stride=config.network_output_stride)
    problems = _mismatch(network.state_dict(), weights)
    if problems:
        raise BrainMetSegError(
            f"{weights_path}: weights do not match {folder / CONFIG_FILE} (backbone {config.backbone}, "
            f"{config.in_channels} input channels): " + "; ".join(problems)
        )
    network.load_state_dict(weights, strict=True)
    try:
        network.to(torch.device(device))
    except (RuntimeError, AssertionError) as error:
        raise BrainMetSegError(f"device {device!r}: {error}") from None
    return network.eval(), config


def list_models(directory: Optional[PathLike] = None) -> List[Tuple[Path, ModelConfig]]:
    """Model folders in `directory` (default: models_directory()), sorted by folder name.

    A folder that is not a readable model (no weights, bad model.json) is skipped with a
    logged warning, so one broken download does not hide the others.
    """
    root = Path(directory) if directory is not None else models_directory()
    if not root.is_dir():
        return []
    models = []
    for folder in sorted(root.iterdir(), key=lambda path: path.name):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            config = read_model_config(folder)
            if not (folder / WEIGHTS_FILE).is_file():
                raise BrainMetSegError(f"{folder / WEIGHTS_FILE}: missing")
        except BrainMetSegError as error:
            log.warning("skipping model folder %s: %s", folder, error)
            continue
        models.append((folder, config))
    return models


def resolve_model(name_or_path: PathLike) -> Path:
    """`--model` argument to a folder: an existing folder path, else a name in the models directory."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    directory = models_directory()
    name = os.fspath(name_or_path)
    is_name = bool(name) and not name.startswith(".") and os.sep not in name and "/" not in name
    if is_name and (directory / name).is_dir():
        return directory / name
    available = [folder.name for folder, _ in list_models(directory)]
    listing = f"available: {', '.join(available)}" if available else "it holds no models"
    raise BrainMetSegError(f"model {name!r}: no such folder, and no model of that name in {directory} ({listing})")
