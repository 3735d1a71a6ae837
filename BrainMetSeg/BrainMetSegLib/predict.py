"""Inference: a case in, a lesion probability map and the list of lesions out.

The case is put on the model's grid (frames.prepare_case), its 4-channel volume is copied to
the compute device once, and the 20-channel 2.5D frames are built there batch by batch, so
the host never holds five copies of every slice and the GPU never waits on a host copy.
Only axial slices that hold brain are run. The probability outside the brain, widened by a
margin, is set to 0 (brain_margin.py: inputs are skull-stripped). Probabilities are mapped
back onto the input's bravo grid, where lesions are the connected components above the
probability threshold. How the network runs (precision, layout, torch.compile, CUDA graphs)
is fast_path.py's business; every stage's time is kept in Prediction.timings.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch

from .brain_margin import DEFAULT_BRAIN_MARGIN_MM, brain_neighbourhood, check_brain_margin
from .case import Case
from .devices import resolve_device
from .errors import BrainMetSegError
from .fast_path import COMPILE_NOTICE, FastNetwork, SpeedOptions, is_channels_last
from .frames import prepare_case, stack_frames
from .lesions import Lesion, check_threshold, find_lesions, write_lesion_csv
from .model_card import SYNTHETIC_WARNING
from .model_folder import load_model_folder, resolve_model
from .roles import ROLES
from .seg_nrrd import write_segmentation_nrrd
from .volumes import Volume, write_volume

PathLike = Union[str, "os.PathLike[str]"]
Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

DEFAULT_BATCH_SIZE = {"cuda": 32, "cpu": 8}
"""Frames per forward pass when the caller does not say: large on a GPU, where a whole study
then takes a handful of passes; moderate on a CPU, where larger batches only cost memory."""

OUTPUT_FILES = {
    "probability": "probability.nii.gz",
    "lesions": "lesions.nii.gz",
    "segmentation": "lesions.seg.nrrd",
    "table": "lesions.csv",
}


class Cancelled(Exception):
    """Raised between batches when the caller's cancel() returns True."""


def _report(progress: Optional[Progress], fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BrainMetSegError(f"batch size: expected a positive integer, got {batch_size!r}")
    return batch_size


def _device_volume(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(4, D, H, W) host array -> (D, 4, H, W) tensor on `device`, copied once (pinned on CUDA)."""
    host = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True).permute(1, 0, 2, 3).contiguous()


def _padded(centres: torch.Tensor, size: int) -> torch.Tensor:
    """`centres` filled up to `size` by repeating the last one (whose outputs are dropped)."""
    missing = size - centres.shape[0]
    return centres if missing <= 0 else torch.cat([centres, centres[-1:].expand(missing)])


def predict_probability(network: Union[torch.nn.Module, FastNetwork], prepared, device: torch.device,
                        batch_size: int = 16, slices: int = 5, progress: Optional[Progress] = None,
                        cancel: Optional[CancelCheck] = None,
                        brain_margin_mm: Optional[float] = None) -> np.ndarray:
    """Lesion probability (softmax of class 1) on the model grid, (D, H, W) float32.

    Slices without brain are not run and stay 0. With `brain_margin_mm`, voxels farther than
    that from the brain are set to 0 too (brain_margin.py). `cancel` is polled before every
    batch and stops the work with `Cancelled`, so a user's Stop takes effect within one batch.
    A plain module runs with the default precision (bf16 autocast on CUDA, fp32 on the CPU), in
    channels_last on CUDA or when it already is (the trainer's network), and is otherwise left as
    it is, since training may share it (the trainer passes fast_path.inference_copy instead)."""
    _check_batch_size(batch_size)
    brain_margin_mm = check_brain_margin(brain_margin_mm)
    device = torch.device(device)
    fast = network if isinstance(network, FastNetwork) else FastNetwork(network, device, SpeedOptions(
        channels_last=device.type == "cuda" or is_channels_last(network), skip_padding_taps=False,
        fold_batch_norm=False))
    fast.module.eval()
    brain_slices = np.flatnonzero(np.asarray(prepared.brain).any(axis=(1, 2)))
    depth, height, width = prepared.images.shape[1:]
    with torch.inference_mode():
        volume = _device_volume(prepared.images, device)
        probability = torch.zeros((depth, height, width), dtype=torch.float32, device=device)
        batches = torch.as_tensor(brain_slices, dtype=torch.long).to(device).split(batch_size)
        for number, centres in enumerate(batches):
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {number} of {len(batches)} batches")
            run = _padded(centres, batch_size) if fast.static_shapes else centres
            logits = fast(stack_frames(volume, run, slices=slices))[: centres.shape[0]]
            probability[centres] = torch.softmax(logits, dim=1)[:, 1]
            _report(progress, (number + 1) / len(batches), f"segmenting: batch {number + 1} of {len(batches)}")
        if brain_margin_mm is not None:
            probability *= brain_neighbourhood(prepared.brain, prepared.affine, brain_margin_mm, device)
    return probability.cpu().numpy()


@dataclass
class Prediction:
    """What one study's segmentation produced, on the input's bravo grid."""

    case_id: str
    probability: np.ndarray  # float32 (I, J, K)
    components: np.ndarray  # int32 (I, J, K): label i = lesions[i - 1], 1 = most confident
    lesions: List[Lesion]
    affine: np.ndarray  # bravo's affine
    threshold: float
    model_name: str
    warnings: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    """Seconds per stage: prepare (resample, normalise), network (frames, network, softmax,
    brain margin; device transfers included), map_back, lesions."""
    frames: int = 0
    """Frames run through the network: the model grid's slices that hold brain."""
    model_slices: int = 0
    """Axial slices of the model grid."""


class Predictor:
    """A model loaded once on one device, to segment many studies (Slicer, `--dataset`)."""

    def __init__(self, model: Union[str, Path], device: Union[str, torch.device] = "auto",
                 threshold: Optional[float] = None, batch_size: Optional[int] = None, *,
                 precision: str = "auto", compile: bool = False, cuda_graphs: bool = False,
                 brain_margin_mm: Optional[float] = DEFAULT_BRAIN_MARGIN_MM) -> None:
        """`precision`, `compile` and `cuda_graphs`: see fast_path.py (compile makes the first
        prediction wait, minutes on a CPU). `brain_margin_mm`: probability farther than this
        from the brain is set to 0 (None keeps it; see brain_margin.py)."""
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.speed = SpeedOptions(precision=precision, compile=compile, cuda_graphs=cuda_graphs).checked(self.device)
        self.brain_margin_mm = check_brain_margin(brain_margin_mm)
        self.folder = resolve_model(model)
        self.network, self.config = load_model_folder(self.folder, self.device)
        if list(self.config.input_roles) != list(ROLES):
            raise BrainMetSegError(
                f"{self.folder}: the model takes {', '.join(self.config.input_roles)}; "
                f"inference needs all of {', '.join(ROLES)}")
        self.threshold = check_threshold(self.config.probability_threshold if threshold is None else threshold)
        self.batch_size = _check_batch_size(
            DEFAULT_BATCH_SIZE.get(self.device.type, 8) if batch_size is None else batch_size)
        self.network.eval()
        self._fast: Optional[FastNetwork] = None

    def fast_network(self) -> FastNetwork:
        """The network wrapped with this predictor's speed options (rebuilt when `network` is
        replaced); the wrapper keeps a compiled network or captured graphs between studies."""
        if self._fast is None or self._fast.module is not self.network:
            self._fast = FastNetwork(self.network, self.device, self.speed)
        return self._fast

    @property
    def model_name(self) -> str:
        return self.config.name

    def predict(self, case: Case, progress: Optional[Progress] = None,
                cancel: Optional[CancelCheck] = None) -> Prediction:
        """Segment one case: probability map, lesion components and lesion list."""
        config = self.config
        timings: Dict[str, float] = {}
        _report(progress, 0.0, f"{case.case_id}: resampling to the model grid")
        start = time.perf_counter()
        prepared = prepare_case(case, config.pixel_spacing_mm, config.slice_spacing_mm, config.in_plane_size)
        timings["prepare"] = time.perf_counter() - start
        if cancel is not None and cancel():
            raise Cancelled("cancelled before segmenting")
        fast = self.fast_network()
        if fast.compiling_next:
            _report(progress, 0.1, f"{case.case_id}: {COMPILE_NOTICE}")

        def network_progress(fraction: float, message: str) -> None:
            _report(progress, 0.1 + 0.8 * fraction, f"{case.case_id}: {message}")

        start = time.perf_counter()
        model_probability = predict_probability(fast, prepared, self.device, self.batch_size,
                                                config.slices_per_frame, network_progress, cancel,
                                                brain_margin_mm=self.brain_margin_mm)
        timings["network"] = time.perf_counter() - start
        _report(progress, 0.9, f"{case.case_id}: mapping back to the input grid")
        start = time.perf_counter()
        probability = np.asarray(prepared.to_input_grid(model_probability), dtype=np.float32)
        timings["map_back"] = time.perf_counter() - start
        _report(progress, 0.95, f"{case.case_id}: finding lesions")
        start = time.perf_counter()
        components, lesions = find_lesions(probability, case.affine, threshold=self.threshold)
        timings["lesions"] = time.perf_counter() - start
        warnings = list(case.warnings) + list(prepared.warnings)
        if config.synthetic_training_data:
            warnings.append(SYNTHETIC_WARNING)
        _report(progress, 1.0, f"{case.case_id}: {len(lesions)} lesion(s)")
        return Prediction(case.case_id, probability, components, lesions, case.affine.copy(),
                          self.threshold, config.name, warnings, timings,
                          int(np.asarray(prepared.brain).any(axis=(1, 2)).sum()), prepared.shape[0])


def predict_case(model: Union[str, Path], case: Case, device: Union[str, torch.device] = "auto",
                 threshold: Optional[float] = None, progress: Optional[Progress] = None,
                 cancel: Optional[CancelCheck] = None) -> Prediction:
    """Segment one case with the model named or found at `model` (loads it each call; keep a
    Predictor to segment several)."""
    return Predictor(model, device=device, threshold=threshold).predict(case, progress=progress, cancel=cancel)


def output_paths(out_dir: PathLike) -> Dict[str, Path]:
    """The four files write_prediction writes in `out_dir`, by kind."""
    return {kind: Path(out_dir) / name for kind, name in OUTPUT_FILES.items()}


def check_outputs_free(out_dir: PathLike) -> None:
    """Refuse, before any work, an output folder that already holds prediction files."""
    existing = [str(path) for path in output_paths(out_dir).values() if path.exists()]
    if existing:
        raise BrainMetSegError(f"{existing[0]}: already exists"
                               + (f" (and {len(existing) - 1} more output file(s))" if len(existing) > 1 else "")
                               + "; pass --overwrite (overwrite=True) to replace previous results")


def _label_array(components: np.ndarray, count: int) -> np.ndarray:
    for dtype in (np.uint8, np.uint16):
        if count <= np.iinfo(dtype).max:
            return components.astype(dtype)
    return components.astype(np.int32)


def write_prediction(prediction: Prediction, out_dir: PathLike,
                     overwrite: bool = False) -> Dict[str, Path]:
    """Write probability.nii.gz, lesions.nii.gz, lesions.seg.nrrd and lesions.csv (each atomic)
    on the bravo grid and geometry; existing outputs are refused unless `overwrite`."""
    if not overwrite:
        check_outputs_free(out_dir)
    paths = output_paths(out_dir)
    paths["probability"].parent.mkdir(parents=True, exist_ok=True)
    affine = prediction.affine
    write_volume(Volume(prediction.probability.astype(np.float32, copy=False), affine), paths["probability"])
    write_volume(Volume(_label_array(prediction.components, len(prediction.lesions)), affine), paths["lesions"])
    write_segmentation_nrrd(prediction.components, affine, prediction.lesions, paths["segmentation"])
    write_lesion_csv(prediction.lesions, paths["table"])
    return paths
