"""Every option of a training run, with its default and the reason for it, in one place.

`brainmetseg train --help` is generated from the field metadata below, so the command line,
the Python API (`train(TrainOptions(...))`) and RUN/options.json always agree. Fields left
at None are chosen when the run starts (`resolve_options`): the backbone follows the device
(or the model being fine-tuned), the geometry follows the model being fine-tuned or the
BrainMetShare defaults, the model name follows the run folder.

A run remembers the options it was started with (RUN/options.json); `--resume` refuses to
continue with different ones, because the promise of a resumed run is the result the
uninterrupted run would have reached. Only options that cannot change that result (where to
run, how many loader threads) may differ.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import BrainMetSegError
from .events import EVENTS_FILE
from .model_card import OUTPUT_STRIDES, default_output_stride

LOSS_CHOICES = ("ce", "bootstrap", "lopsided")
CENSOR_MODES = ("none", "stochastic", "size")
BACKBONE_CHOICES = ("resnet50", "resnet101", "mobilenet_v3_large")
CPU_BACKBONE = "mobilenet_v3_large"
GPU_BACKBONE = "resnet50"
DEFAULT_PIXEL_SPACING_MM = 0.9375
DEFAULT_SLICE_SPACING_MM = 1.0
DEFAULT_IN_PLANE_SIZE = 256
OPTIONS_FILE = "options.json"
MODEL_FOLDER = "model"
CENSORING_FILE = "censoring.json"
RUN_FILES = (OPTIONS_FILE, EVENTS_FILE, "checkpoint.safetensors", "checkpoint.json", CENSORING_FILE, MODEL_FOLDER)
"""What the trainer writes in a run folder (checkpoint names as checkpoint.py, which imports
torch); any of them means the folder holds a run."""

RUNTIME_ONLY = ("resume", "device", "workers")
"""Options a resumed run may change: they decide where and how fast, not what is computed.
(A different device can still change the last bits of the arithmetic; a CPU run resumed on
the CPU reaches the same weights.)"""


def _option(default: Any, help: str, type: Any = None, choices: Optional[Tuple[str, ...]] = None,
            metavar: Optional[str] = None, flag: Optional[str] = None) -> Any:
    """A dataclass field carrying its command-line description."""
    metadata = {"help": help, "type": type, "choices": choices, "metavar": metavar, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainOptions:
    dataset: Path = _option(None, "dataset folder (Mets_XXX/<role>.nii.gz + optional dataset.json)",
                            type=Path, metavar="DIR")
    out: Path = _option(None, "run folder: events.jsonl, options.json, checkpoints, and the model folder "
                              "RUN/model; must not exist yet unless --resume", type=Path, metavar="RUN")
    loss: str = _option("lopsided", "loss for labels that may miss lesions: ce (eq. 1, weighted "
                                    "cross-entropy), bootstrap (eq. 2), lopsided (eq. 3, the paper's)",
                        choices=LOSS_CHOICES)
    alpha: float = _option(3.0, "weight α of voxels labelled lesion (paper: 3)", type=float)
    beta: float = _option(0.1, "share β of the bootstrap term that follows the label; 1 = plain "
                               "weighted CE (paper: 0.1)", type=float)
    uniform_loss: bool = _option(False, "apply --loss to every case, as the paper did; by default "
                                        "only cases whose label is 'partial' (or censored) get it and "
                                        "'complete' cases get weighted CE with the same α")
    warmup_fraction: float = _option(0.3, "share of the steps trained with β=1 before bootstrapping "
                                          "starts: from random weights the bootstrap loop can collapse "
                                          "to 'everything is lesion'", type=float)
    backbone: Optional[str] = _option(None, "DeepLabv3 backbone (default: mobilenet_v3_large on a "
                                            "CPU, resnet50 on a GPU, the fine-tuned model's with "
                                            "--init-model)", choices=BACKBONE_CHOICES)
    output_stride: Optional[int] = _option(None, "frame pixels per logit of the network: 8 for the ResNets; "
                                                 "16 (torchvision's, fastest), 8 or 4 for MobileNetV3. "
                                                 "Default: the backbone's (or the fine-tuned model's). A "
                                                 "logit must be fine enough to place a small lesion: "
                                                 "aim at <= 8 mm (stride x pixel spacing)", type=int,
                                           metavar="N")
    epochs: int = _option(10, "epochs (the paper trained about 10); validation and model "
                              "selection after each", type=int)
    max_steps: Optional[int] = _option(None, "stop after this many optimiser steps in total "
                                             "(default: epochs x steps per epoch)", type=int, metavar="N")
    steps_per_epoch: Optional[int] = _option(None, "optimiser steps per epoch (default: the training "
                                                   "cases' brain slices / batch size, at least 1)",
                                             type=int, metavar="N")
    batch_size: int = _option(16, "frames per optimiser step, over all processes (under torchrun "
                                  "each of the N processes takes batch/N; at least 2 per process)",
                              type=int)
    lr: float = _option(1e-3, "peak learning rate of AdamW", type=float)
    weight_decay: float = _option(1e-4, "AdamW weight decay", type=float)
    lr_warmup_fraction: float = _option(0.05, "share of the steps over which the learning rate "
                                              "rises linearly from 0; cosine decay to 1%% of the "
                                              "peak afterwards", type=float)
    lesion_fraction: float = _option(0.5, "share of each batch drawn from slices that hold a "
                                          "labelled lesion (the rest from all slices with brain)",
                                     type=float)
    augment: bool = _option(True, "augmentation on the device: left-right flip, per-sequence "
                                  "intensity scale and shift, small in-plane translation",
                            flag="--no-augment")
    censor_mode: str = _option("none", "simulate missed lesions on train and val labels (never "
                                       "test): stochastic (each lesion removed with probability "
                                       "--censor-rate) or size (the smallest --censor-rate share)",
                               choices=CENSOR_MODES)
    censor_rate: float = _option(0.5, "share of lesions censored", type=float)
    censor_seed: int = _option(0, "seed of stochastic censoring", type=int)
    checkpoint_every: int = _option(200, "steps between checkpoints inside an epoch (0: only at "
                                         "the end of each epoch)", type=int, metavar="K")
    log_every: int = _option(10, "steps between step events in events.jsonl", type=int, metavar="N")
    seed: int = _option(0, "seed of weights, sampling, augmentation and dropout; every draw is "
                           "a function of (seed, step), so --resume needs no saved RNG state",
                        type=int)
    in_plane_size: Optional[int] = _option(None, "frame size in pixels, square (default 256, or "
                                                 "the fine-tuned model's)", type=int, metavar="PIXELS")
    crop_size: Optional[int] = _option(None, "train on square crops of this many pixels cut from each "
                                             "frame, a frame holding a labelled lesion around one of its "
                                             "lesion pixels (default: whole frames). A step then costs "
                                             "about (crop / frame size)^2 of a whole frame's; validation "
                                             "and prediction still see whole frames", type=int,
                                       metavar="PIXELS")
    pixel_spacing: Optional[float] = _option(None, "in-plane voxel spacing of the model grid in mm "
                                                   "(default 0.9375 as BrainMetShare, or the "
                                                   "fine-tuned model's)", type=float, metavar="MM")
    slice_spacing: Optional[float] = _option(None, "slice spacing of the model grid in mm "
                                                   "(default 1, or the fine-tuned model's)",
                                             type=float, metavar="MM")
    init_model: Optional[str] = _option(None, "fine-tune: start from this model folder or name "
                                              "instead of random weights", type=str, metavar="MODEL")
    model_name: Optional[str] = _option(None, "name written in model.json (default: the run "
                                              "folder's name)", type=str, metavar="NAME")
    device: str = _option("auto", "auto, cpu, cuda or cuda:N (under torchrun: the local GPU)")
    workers: int = _option(2, "threads that read and resample cases before training", type=int)
    resume: bool = _option(False, "continue the run in --out from its last checkpoint, with the "
                                  "same options")

    def normalised(self) -> "TrainOptions":
        """A copy with absolute paths, so options.json compares across working folders."""
        values = dataclasses.asdict(self)
        for name in ("dataset", "out"):
            if values[name] is None:
                raise BrainMetSegError(f"{name} (--{name}): required")
            values[name] = Path(values[name]).expanduser().absolute()
        if values["init_model"] is not None:
            candidate = Path(values["init_model"]).expanduser()
            if candidate.exists():
                values["init_model"] = str(candidate.absolute())
        return TrainOptions(**values)

    def to_json(self) -> Dict[str, Any]:
        return {name: (str(value) if isinstance(value, Path) else value)
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, document: Mapping[str, Any], source: str) -> "TrainOptions":
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(document) - set(names))
        if unknown:
            raise BrainMetSegError(f"{source}: unknown option(s) {', '.join(unknown)}")
        values = dict(document)
        for name in ("dataset", "out"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        return cls(**values)


def cli_flag(field: "dataclasses.Field") -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _fail(name: str, reason: str) -> BrainMetSegError:
    return BrainMetSegError(f"{name} (--{name.replace('_', '-')}): {reason}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_options(options: TrainOptions) -> None:
    """Refuse impossible values before any work, naming the option and the reason."""
    o = options
    if o.loss not in LOSS_CHOICES:
        raise _fail("loss", f"{o.loss!r}; choose one of {', '.join(LOSS_CHOICES)}")
    if not _number(o.alpha) or o.alpha <= 0:
        raise _fail("alpha", f"{o.alpha!r}; must be a positive number")
    if not _number(o.beta) or not 0 < o.beta <= 1:
        raise _fail("beta", f"{o.beta!r}; must be in (0, 1]")
    for name in ("warmup_fraction", "lesion_fraction", "censor_rate", "lr_warmup_fraction"):
        value = getattr(o, name)
        if not _number(value) or not 0 <= value <= 1:
            raise _fail(name, f"{value!r}; must be a number in [0, 1]")
    if o.backbone is not None and o.backbone not in BACKBONE_CHOICES:
        raise _fail("backbone", f"{o.backbone!r}; choose one of {', '.join(BACKBONE_CHOICES)}")
    positive_integers = ["epochs", "batch_size", "log_every", "workers"]
    positive_integers += [name for name in ("max_steps", "steps_per_epoch", "in_plane_size", "output_stride")
                          if getattr(o, name) is not None]
    for name in positive_integers:
        value = getattr(o, name)
        if not _integer(value) or value < 1:
            raise _fail(name, f"{value!r}; must be a positive integer")
    if o.batch_size < 2:
        raise _fail("batch_size", f"{o.batch_size}; at least 2 frames (batch normalisation needs them)")
    if o.in_plane_size is not None and o.in_plane_size < 16:
        raise _fail("in_plane_size", f"{o.in_plane_size}; at least 16 pixels (the backbone downsamples 16x)")
    if o.crop_size is not None:
        _check_crop_size(o.crop_size, o.in_plane_size)
    if not _integer(o.checkpoint_every) or o.checkpoint_every < 0:
        raise _fail("checkpoint_every", f"{o.checkpoint_every!r}; must be 0 (epoch ends only) or a positive integer")
    for name in ("seed", "censor_seed"):
        if not _integer(getattr(o, name)) or getattr(o, name) < 0:
            raise _fail(name, f"{getattr(o, name)!r}; must be an integer >= 0")
    if not _number(o.lr) or o.lr <= 0:
        raise _fail("lr", f"{o.lr!r}; must be a positive number")
    if not _number(o.weight_decay) or o.weight_decay < 0:
        raise _fail("weight_decay", f"{o.weight_decay!r}; must be a number >= 0")
    for name in ("pixel_spacing", "slice_spacing"):
        value = getattr(o, name)
        if value is not None and (not _number(value) or value <= 0):
            raise _fail(name, f"{value!r}; must be a positive number of mm")
    if o.censor_mode not in CENSOR_MODES:
        raise _fail("censor_mode", f"{o.censor_mode!r}; choose one of {', '.join(CENSOR_MODES)}")
    if o.model_name is not None and not str(o.model_name).strip():
        raise _fail("model_name", "must not be empty")


MIN_CROP_SIZE = 32
"""Pixels of the smallest training crop: 2 x 2 logits at the coarsest output stride (16), so
that the network's context module still sees more than one position."""


def _check_crop_size(crop_size: Any, in_plane_size: Optional[int]) -> None:
    if not _integer(crop_size) or crop_size < MIN_CROP_SIZE:
        raise _fail("crop_size", f"{crop_size!r}; must be an integer of at least {MIN_CROP_SIZE} pixels")
    if in_plane_size is not None and crop_size > in_plane_size:
        raise _fail("crop_size", f"{crop_size}; larger than the {in_plane_size}-pixel frames (--in-plane-size) "
                                 "it is cut from")


def differences(stored: TrainOptions, given: TrainOptions) -> List[str]:
    """'name: stored -> given' for every option that a resumed run may not change."""
    old, new = stored.to_json(), given.to_json()
    return [f"{cli_flag(field)}: {old[field.name]!r} in the run, {new[field.name]!r} now"
            for field in dataclasses.fields(TrainOptions)
            if field.name not in RUNTIME_ONLY and old[field.name] != new[field.name]]


def read_options_file(run: Path) -> Tuple[TrainOptions, TrainOptions]:
    """(options as given, options as resolved) of an existing run."""
    path = Path(run) / OPTIONS_FILE
    if not path.is_file():
        raise BrainMetSegError(f"{path}: missing; {run} is not a training run folder (or its start failed "
                               "before writing it): cannot resume")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        given, resolved = document["given"], document["resolved"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise BrainMetSegError(f"{path}: unreadable run options ({error})") from None
    return TrainOptions.from_json(given, str(path)), TrainOptions.from_json(resolved, str(path))


def resolve_options(options: TrainOptions, device_type: str, init_config: Any = None) -> TrainOptions:
    """Fill the options left at None: from the model being fine-tuned (`init_config`, a
    ModelConfig), else from the device (backbone) and the BrainMetShare geometry."""
    values = dataclasses.asdict(options)
    if init_config is not None:
        rows, cols = init_config.in_plane_size
        row_mm, col_mm = init_config.pixel_spacing_mm
        if values["backbone"] is not None and values["backbone"] != init_config.backbone:
            raise _fail("backbone", f"{values['backbone']!r}, but the model to fine-tune ({options.init_model}) "
                                    f"is a {init_config.backbone}; leave --backbone out or use that backbone")
        if rows != cols or row_mm != col_mm:
            raise _fail("init_model", f"{options.init_model}: frames {rows}x{cols} of {row_mm}x{col_mm} mm; the "
                                      "trainer uses square frames and pixels")
        defaults = {"backbone": init_config.backbone, "in_plane_size": int(rows), "pixel_spacing": float(row_mm),
                    "slice_spacing": float(init_config.slice_spacing_mm),
                    "output_stride": init_config.network_output_stride}
    else:
        defaults = {"backbone": GPU_BACKBONE if device_type == "cuda" else CPU_BACKBONE,
                    "in_plane_size": DEFAULT_IN_PLANE_SIZE, "pixel_spacing": DEFAULT_PIXEL_SPACING_MM,
                    "slice_spacing": DEFAULT_SLICE_SPACING_MM}
    for name, value in defaults.items():
        if values[name] is None:
            values[name] = value
    if values["output_stride"] is None:
        values["output_stride"] = default_output_stride(values["backbone"])
    if values["output_stride"] not in OUTPUT_STRIDES[values["backbone"]]:
        strides = ", ".join(map(str, OUTPUT_STRIDES[values["backbone"]]))
        raise _fail("output_stride", f"{values['output_stride']!r}; a {values['backbone']} is built with output "
                                     f"stride {strides}")
    if values["model_name"] is None:
        values["model_name"] = Path(values["out"]).name or "model"
    return TrainOptions(**values)


def check_run_folder(options: TrainOptions) -> None:
    """Refuse, before anything is read or written, a run folder that holds a run (unless
    resuming) or a resume whose options differ from the run's. `options` as normalised().

    Only the trainer's own files make a folder a run: a launcher (jobs.py) may create the
    folder with its log and job record before the trainer starts."""
    run = Path(options.out)
    if options.resume:
        stored_given, _ = read_options_file(run)
        changed = differences(stored_given, options)
        if changed:
            raise BrainMetSegError(f"{run}: --resume with options that differ from the run's {OPTIONS_FILE}: "
                                   + "; ".join(changed))
    elif run.exists() and (not run.is_dir() or any((run / name).exists() for name in RUN_FILES)):
        raise BrainMetSegError(f"{run}: already exists; pass --resume to continue the run in it, or choose "
                               "another --out")
