"""Training schedules for the experiment grid: `paper` for a GPU, `small` for two CPU cores.

Every run of a grid trains with the same schedule (the paper tuned its baseline and reused
its settings for every other row), so the schedule is a property of the experiment, not of
a row. The `small` numbers are the cheapest schedule measured to train networks that find
lesions on the synthetic `--small` cohort. Its training on 128-pixel crops of the 192-pixel
frames (2026-12-06) halves the cost of a step and, on the development cohort, trained better
networks than whole frames at the same 200 steps. README.md, "How the `small` preset was sized"
shows the measurements, among them the time of the whole grid (17 rows, plus two extra seeds
of the 5 key rows: 27 runs) on 2 CPU cores.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import BrainMetSegError
from .experiment_grid import Row
from .synth_params import PRESETS as SYNTH_PRESETS
from .train_options import TrainOptions, check_options

_SMALL_COHORT = SYNTH_PRESETS["small"]


@dataclass(frozen=True)
class ExperimentPreset:
    name: str
    backbone: str
    output_stride: int
    in_plane_size: int
    pixel_spacing_mm: float
    slice_spacing_mm: float
    epochs: int
    """Validation (and model selection on it) after each epoch."""
    steps_per_epoch: Optional[int]
    """None: the trainer's default, one pass over the training slices."""
    batch_size: int
    lr: float
    seeds: Tuple[int, ...]
    cases: int
    """Size of the synthetic cohort the schedule was sized for (`brainmetseg synth --cases`);
    the runner accepts any dataset, this only documents the intended one."""
    synthetic_preset: str
    """`brainmetseg synth` preset of that cohort ('small' is `--small`)."""
    crop_size: Optional[int] = None
    """Train on crops of this many pixels (`brainmetseg train --crop-size`); None: whole frames.
    The only optional field, so that preset files written before it existed still read."""

    @property
    def steps_per_run(self) -> Optional[int]:
        return None if self.steps_per_epoch is None else self.epochs * self.steps_per_epoch

    def train_options(self, dataset: Path, out: Path, row: Row, seed: int, device: str,
                      resume: bool = False) -> TrainOptions:
        """The trainer's options for one run of the grid: the paper's setting of one loss for
        every case (uniform loss), the row's censoring seeded like the run."""
        return TrainOptions(
            dataset=Path(dataset), out=Path(out), loss=row.loss, alpha=row.alpha, beta=row.beta,
            uniform_loss=True, backbone=self.backbone, output_stride=self.output_stride, epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch, batch_size=self.batch_size, lr=self.lr,
            censor_mode=row.censor, censor_rate=row.censor_rate,
            censor_seed=seed, seed=seed, in_plane_size=self.in_plane_size,
            pixel_spacing=self.pixel_spacing_mm, slice_spacing=self.slice_spacing_mm, crop_size=self.crop_size,
            device=device, resume=resume)

    def to_json(self) -> Dict[str, object]:
        values = dataclasses.asdict(self)
        values["seeds"] = list(self.seeds)
        return values


PRESETS: Dict[str, ExperimentPreset] = {
    "paper": ExperimentPreset(
        name="paper", backbone="resnet50", output_stride=8, in_plane_size=256, pixel_spacing_mm=0.9375,
        slice_spacing_mm=1.0, epochs=10, steps_per_epoch=None, batch_size=16, lr=1e-3, seeds=(0,), cases=156,
        synthetic_preset="default"),
    "small": ExperimentPreset(
        name="small", backbone="mobilenet_v3_large", output_stride=8, in_plane_size=192, pixel_spacing_mm=1.0,
        slice_spacing_mm=float(_SMALL_COHORT.spacing[2]), epochs=2, steps_per_epoch=100, batch_size=4, lr=3e-3,
        seeds=(0, 1, 2), cases=40, synthetic_preset="small", crop_size=128),
}


OPTIONAL_FIELDS = {"crop_size": None}
"""Fields a preset document may leave out, with the value it then has."""


def with_optional_fields(document: Dict[str, Any]) -> Dict[str, Any]:
    """A preset document as it reads today: an older one gains the fields added since."""
    return {**OPTIONAL_FIELDS, **document}


def preset(name: str) -> ExperimentPreset:
    """A built-in preset by name, or one read from a JSON file holding every field (a
    schedule of one's own: another GPU, another cohort size)."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name).expanduser()
    if path.suffix.lower() != ".json":
        raise BrainMetSegError(f"--preset {name!r}: unknown; expected one of {', '.join(PRESETS)} "
                               "or a preset .json file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrainMetSegError(f"--preset {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BrainMetSegError(f"--preset {path}: unreadable ({error})") from None
    return preset_from_json(document, str(path))


def preset_from_json(document: Any, source: str) -> ExperimentPreset:
    """Check a preset document field by field, naming the file and the field."""
    names = [field.name for field in dataclasses.fields(ExperimentPreset)]
    if not isinstance(document, dict):
        raise BrainMetSegError(f"{source}: expected a JSON object with the fields {', '.join(names)}")
    missing = [name for name in names if name not in document and name not in OPTIONAL_FIELDS]
    unknown = sorted(set(document) - set(names))
    if missing or unknown:
        raise BrainMetSegError(f"{source}: " + "; ".join(
            ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])))
    seeds = document["seeds"]
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                        for s in seeds):
        raise BrainMetSegError(f"{source}: seeds {seeds!r}; expected a list of integers >= 0")
    for name in ("name", "synthetic_preset"):
        if not isinstance(document[name], str) or not document[name]:
            raise BrainMetSegError(f"{source}: {name} {document[name]!r}; expected a non-empty string")
    if not isinstance(document["cases"], int) or isinstance(document["cases"], bool) or document["cases"] < 1:
        raise BrainMetSegError(f"{source}: cases {document['cases']!r}; expected a positive integer")
    values = dict(with_optional_fields(document), seeds=tuple(seeds))
    result = ExperimentPreset(**values)
    options = result.train_options(Path("dataset"), Path("run"), Row("none", 3.0, 1.0), seeds[0], "cpu")
    try:
        check_options(options)
    except BrainMetSegError as error:
        raise BrainMetSegError(f"{source}: {error}") from None
    return result
