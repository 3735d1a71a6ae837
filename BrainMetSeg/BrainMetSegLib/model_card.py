"""model.json: what a trained model expects of its input and how it was made.

Everything needed to run a model besides its weights lives here, so that inference
reproduces the training geometry (spacing, size, orientation, normalisation) and a user
sees what the model is (backbone, data, loss, validation metrics, intended use) before
trusting it. This module does not import torch: Slicer lists models before torch is
installed.
"""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from .errors import BrainMetSegError
from .roles import ROLES

FORMAT = 1
"""model.json format this version reads and writes; a newer one is refused, not guessed at."""

BACKBONES = ("resnet50", "resnet101", "mobilenet_v3_large")
"""DeepLabv3 backbones (network.build_network); here so that model.json is checked without torch."""

BACKBONE_TITLES = {
    "resnet50": "DeepLabv3, ResNet-50 backbone (the paper's)",
    "resnet101": "DeepLabv3, ResNet-101 backbone",
    "mobilenet_v3_large": "DeepLabv3, MobileNetV3-Large backbone (for CPUs)",
}

ORIENTATIONS = ("closest-axial",)
BRAIN_MASK_POLICIES = ("supplied-or-nonzero-bravo",)
NORMALISATIONS = ("zscore-brain",)

RESEARCH_USE = "Research use only. Not for diagnosis."

SYNTHETIC_WARNING = (
    "WARNING: SYNTHETIC DATA. This model was trained on synthetic images, not on patient scans; "
    "its findings on real MRI are meaningless."
)

OUTPUT_STRIDES = {"resnet50": (8,), "resnet101": (8,), "mobilenet_v3_large": (16, 8, 4)}
"""Output strides each backbone can be built with, torchvision's default first. The network's
logits are computed at 1/stride of the frame and upsampled bilinearly: at stride 16 on 2 mm
pixels a logit covers 32 mm, too coarse to place a 5 mm lesion (whose predicted centroid must
fall inside it); the paper's ResNet-50 works at 8 (7.5 mm at 0.94 mm pixels). MobileNetV3 is
made finer by dilating its later stages instead of striding (as DeepLabv3 does for ResNets);
the weights are the same at any stride."""


def default_output_stride(backbone: str) -> int:
    return OUTPUT_STRIDES[backbone][0]


LOSS_TITLES = {
    "ce": "weighted cross-entropy (eq. 1)",
    "bootstrap": "bootstrap (eq. 2)",
    "lopsided": "lopsided bootstrap (eq. 3)",
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class ModelConfig:
    """Every field of model.json (DESIGN.md §Model folder)."""

    name: str
    backbone: str = "resnet50"
    format: int = FORMAT
    input_roles: List[str] = dataclasses.field(default_factory=lambda: list(ROLES))
    slices_per_frame: int = 5
    pixel_spacing_mm: List[float] = dataclasses.field(default_factory=lambda: [0.9375, 0.9375])  # [row, col]
    slice_spacing_mm: float = 1.0
    in_plane_size: List[int] = dataclasses.field(default_factory=lambda: [256, 256])  # [rows, cols]
    output_stride: Optional[int] = None
    """Frame pixels per logit (OUTPUT_STRIDES); None = the backbone's torchvision default. Models
    written before this field existed have none and were built with that default."""
    orientation: str = "closest-axial"
    brain_mask: str = "supplied-or-nonzero-bravo"
    normalisation: str = "zscore-brain"
    probability_threshold: float = 0.1
    operating_point: float = 0.1
    """Confidence cut-off shown by default; the trainer sets the one chosen on validation
    (0.1, the probability threshold, shows every lesion found)."""
    intended_use: str = RESEARCH_USE
    synthetic_training_data: bool = False
    training: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """Training summary: loss, alpha, beta, censoring, data, epochs, validation metrics, ..."""
    created: str = dataclasses.field(default_factory=_now)

    @property
    def network_output_stride(self) -> int:
        return default_output_stride(self.backbone) if self.output_stride is None else self.output_stride

    @property
    def in_channels(self) -> int:
        """Network input channels: slices_per_frame slices of each input role."""
        return len(self.input_roles) * self.slices_per_frame

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict (lists and dicts copied), "format" first as a reader expects."""
        fields = dataclasses.asdict(self)
        return {"format": fields.pop("format"), **fields}

    @classmethod
    def from_json(cls, obj: Any, source: str) -> "ModelConfig":
        """Check every field of a parsed model.json; `source` (the file) starts every error."""
        return _parse(obj, source)


_FIELDS = tuple(field.name for field in dataclasses.fields(ModelConfig))
_OPTIONAL_FIELDS = ("output_stride",)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(obj: Any, source: str) -> ModelConfig:
    def fail(field: str, reason: str) -> BrainMetSegError:
        return BrainMetSegError(f"{source}: field '{field}': {reason}")

    if not isinstance(obj, Mapping):
        raise BrainMetSegError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    if "format" in obj and _is_int(obj["format"]) and obj["format"] > FORMAT:
        newer = f"format {obj['format']} is newer than this BrainMetSeg reads ({FORMAT}); update BrainMetSeg"
        raise fail("format", newer)
    unknown = [key for key in obj if key not in _FIELDS]
    if unknown:
        raise BrainMetSegError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [field for field in _FIELDS if field not in obj and field not in _OPTIONAL_FIELDS]
    if missing:
        raise BrainMetSegError(f"{source}: missing field(s) {', '.join(missing)}")

    if not _is_int(obj["format"]) or obj["format"] != FORMAT:
        raise fail("format", f"expected {FORMAT}, got {obj['format']!r}")
    for field in ("name", "intended_use", "created"):
        if not isinstance(obj[field], str) or not obj[field].strip():
            raise fail(field, f"expected a non-empty string, got {obj[field]!r}")
    try:
        datetime.fromisoformat(obj["created"].replace("Z", "+00:00"))
    except ValueError:
        raise fail("created", f"not an ISO 8601 time: {obj['created']!r}") from None
    for field, allowed in (
        ("backbone", BACKBONES),
        ("orientation", ORIENTATIONS),
        ("brain_mask", BRAIN_MASK_POLICIES),
        ("normalisation", NORMALISATIONS),
    ):
        if obj[field] not in allowed:
            raise fail(field, f"{obj[field]!r} is not one of {', '.join(allowed)}")

    roles = obj["input_roles"]
    if (
        not isinstance(roles, list)
        or not roles
        or any(role not in ROLES for role in roles)
        or len(set(roles)) != len(roles)
        or sorted(roles, key=ROLES.index) != roles
    ):
        raise fail("input_roles", f"expected distinct roles from {', '.join(ROLES)}, in that order; got {roles!r}")
    slices = obj["slices_per_frame"]
    if not _is_int(slices) or slices < 1 or slices % 2 == 0:
        odd = f"expected an odd positive integer (slices centred on the predicted one), got {slices!r}"
        raise fail("slices_per_frame", odd)
    spacing = obj["pixel_spacing_mm"]
    if not isinstance(spacing, list) or len(spacing) != 2 or not all(_is_number(v) and v > 0 for v in spacing):
        raise fail("pixel_spacing_mm", f"expected [row, column] spacing, two positive numbers, got {spacing!r}")
    if not _is_number(obj["slice_spacing_mm"]) or obj["slice_spacing_mm"] <= 0:
        raise fail("slice_spacing_mm", f"expected a positive number, got {obj['slice_spacing_mm']!r}")
    size = obj["in_plane_size"]
    if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
        raise fail("in_plane_size", f"expected [rows, columns], two positive integers, got {size!r}")
    stride = obj.get("output_stride")
    if stride is not None and (not _is_int(stride) or stride not in OUTPUT_STRIDES[obj["backbone"]]):
        strides = ", ".join(map(str, OUTPUT_STRIDES[obj["backbone"]]))
        raise fail("output_stride", f"{stride!r}; a {obj['backbone']} is built with output stride {strides}")
    threshold = obj["probability_threshold"]
    if not _is_number(threshold) or not 0 < threshold < 1:
        raise fail("probability_threshold", f"expected a number in (0, 1), got {threshold!r}")
    if not _is_number(obj["operating_point"]) or not 0 <= obj["operating_point"] <= 1:
        raise fail("operating_point", f"expected a confidence in [0, 1], got {obj['operating_point']!r}")
    if not isinstance(obj["synthetic_training_data"], bool):
        raise fail("synthetic_training_data", f"expected true or false, got {obj['synthetic_training_data']!r}")
    training = obj["training"]
    if not isinstance(training, Mapping) or not all(isinstance(key, str) for key in training):
        raise fail("training", f"expected a JSON object, got {type(training).__name__}")

    return ModelConfig(
        format=obj["format"],
        name=obj["name"],
        backbone=obj["backbone"],
        input_roles=list(roles),
        slices_per_frame=slices,
        pixel_spacing_mm=[float(v) for v in spacing],
        slice_spacing_mm=float(obj["slice_spacing_mm"]),
        in_plane_size=list(size),
        output_stride=stride,
        orientation=obj["orientation"],
        brain_mask=obj["brain_mask"],
        normalisation=obj["normalisation"],
        probability_threshold=float(threshold),
        operating_point=float(obj["operating_point"]),
        intended_use=obj["intended_use"],
        synthetic_training_data=obj["synthetic_training_data"],
        training=dict(training),
        created=obj["created"],
    )


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "none"}[value]
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {_format_value(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) for item in value)
    return str(value)


def card_text(config: ModelConfig) -> str:
    """The model card a user reads before trusting a model (CLI `models`, Slicer panel)."""
    training = dict(config.training)
    lines = [f"Model: {config.name}"]
    if config.synthetic_training_data:
        lines.append(SYNTHETIC_WARNING)
    lines.append(f"Intended use: {config.intended_use}")
    lines.append(f"Network: {BACKBONE_TITLES.get(config.backbone, config.backbone)}, output stride "
                 f"{config.network_output_stride}")
    row, col = config.pixel_spacing_mm
    lines.append(
        f"Input: {', '.join(config.input_roles)}; {config.slices_per_frame} axial slices each "
        f"({config.in_channels} channels); {row:g} x {col:g} x {config.slice_spacing_mm:g} mm voxels; "
        f"{config.in_plane_size[0]} x {config.in_plane_size[1]} frames; {config.orientation}; "
        f"normalisation {config.normalisation}; brain mask {config.brain_mask}"
    )
    lines.append(
        f"Lesions: probability >= {config.probability_threshold:g}; "
        f"confidence cut-off shown by default {config.operating_point:.3g}"
    )
    data = training.pop("data", None)
    data_text = _format_value(data) if data is not None else "not recorded"
    if config.synthetic_training_data:
        data_text += " (synthetic)"
    lines.append(f"Training data: {data_text}")
    if "loss" in training:
        loss = training.pop("loss")
        parameters = [
            f"{greek}={_format_value(training.pop(key))}"
            for key, greek in (("alpha", "α"), ("beta", "β"))
            if key in training
        ]
        lines.append(f"Loss: {LOSS_TITLES.get(loss, loss)}" + (f" ({', '.join(parameters)})" if parameters else ""))
    if "censoring" in training:
        lines.append(f"Censoring: {_format_value(training.pop('censoring'))}")
    if "epochs" in training:
        lines.append(f"Epochs: {_format_value(training.pop('epochs'))}")
    validation = training.pop("validation", None)
    lines.append(f"Validation: {_format_value(validation) if validation else 'not recorded'}")
    lines.extend(f"{key.replace('_', ' ').capitalize()}: {_format_value(value)}" for key, value in training.items())
    lines.append(f"Created: {config.created}")
    return "\n".join(lines) + "\n"
