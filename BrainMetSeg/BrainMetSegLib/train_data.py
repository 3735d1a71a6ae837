"""Training data in memory: every training slice as one tensor, the sampler and augmentation.

All training cases, already on the model grid (frames.prepare_case), are stacked along the
slice axis into one (S, 4, H, W) tensor kept on the GPU when it fits (else in host memory,
each batch gathered into pinned memory and copied asynchronously) so that a batch is a few gathers on the device: the 2.5D frames (5 neighbouring
slices of the same case, edge slices repeated, channel = role * 5 + offset as
frames.stack_frames), their labels, known negatives and brain masks. Nothing is built per
frame on the host and no loader process is needed; this is what lets the trainer run near the
network's own speed on a GPU.

Every random draw is a pure function of (seed, step): which slices a step trains on, how
they are flipped, shifted and rescaled. A resumed run therefore draws exactly what the
uninterrupted run drew, without saving any random-generator state, and under torchrun every
process draws the same global batch and takes its own disjoint part of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import BrainMetSegError

STREAM_SAMPLE, STREAM_AUGMENT, STREAM_DROPOUT, STREAM_INIT, STREAM_CROP = 1, 2, 3, 4, 5
"""Independent random streams, so that e.g. turning augmentation off does not change sampling."""

FLIP_PROBABILITY = 0.5
"""Left-right flip: metastases occur in both hemispheres alike."""
INTENSITY_SCALE = 0.1
"""Each sequence of a frame is multiplied by exp(u), u uniform in [-0.1, 0.1] (about ±10%)..."""
INTENSITY_SHIFT = 0.1
"""...and shifted by v uniform in [-0.1, 0.1] standard deviations, inside the brain only (the
images are z-scored over the brain and 0 outside it, which stays 0)."""
TRANSLATION_FRACTION = 0.05
"""In-plane translation by up to 5% of the frame size (±12 pixels, about 12 mm, at 256 pixels
of 0.94 mm): the brain is centred by prepare_case, so positions should not be learnt."""
GPU_STORE_SHARE = 0.5
"""The slices stay on the GPU when they need at most this share of its free memory; the rest
is left to the network's activations. Otherwise they stay in host memory."""


def seed_for(seed: int, stream: int, *keys: int) -> int:
    """A 63-bit seed drawn from (seed, stream, keys) by numpy's SeedSequence hashing: nearby
    steps get unrelated streams."""
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(stream),) + tuple(int(k) for k in keys))
    low, high = state.generate_state(2, dtype=np.uint32)
    return int((int(high) << 32 | int(low)) & 0x7FFF_FFFF_FFFF_FFFF)


def generator(seed: int, stream: int, *keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(seed, stream, *keys))


@dataclass
class Batch:
    """One process's part of a step, on the compute device."""

    frames: torch.Tensor  # (N, 4 * slices, H, W)
    target: torch.Tensor  # (N, H, W) uint8
    known_negative: Optional[torch.Tensor]  # (N, H, W) bool, or None when the data have none
    brain: torch.Tensor  # (N, H, W) bool
    bootstrap: torch.Tensor  # (N,) bool: the frame's case gets the chosen loss (label may miss lesions)
    centres: torch.Tensor  # (N,) long, global slice indices (CPU)


@dataclass
class Augmentation:
    """Per-frame draws for one step (CPU tensors, one row per frame of the global batch)."""

    flip: torch.Tensor  # (N,) bool
    scale: torch.Tensor  # (N, 4) multiplicative, per sequence
    shift: torch.Tensor  # (N, 4) additive, per sequence
    translation: torch.Tensor  # (N, 2) long, rows and columns

    def part(self, rank: int, world: int) -> "Augmentation":
        return Augmentation(self.flip[rank::world], self.scale[rank::world], self.shift[rank::world],
                            self.translation[rank::world])


def draw_augmentation(seed: int, step: int, count: int, size: Tuple[int, int], channels: int = 4) -> Augmentation:
    g = generator(seed, STREAM_AUGMENT, step)
    flip = torch.rand(count, generator=g) < FLIP_PROBABILITY
    scale = torch.exp((torch.rand(count, channels, generator=g) * 2 - 1) * INTENSITY_SCALE)
    shift = (torch.rand(count, channels, generator=g) * 2 - 1) * INTENSITY_SHIFT
    limits = torch.tensor([max(0, int(round(TRANSLATION_FRACTION * n))) for n in size])
    translation = torch.stack([torch.randint(-int(m), int(m) + 1, (count,), generator=g) for m in limits], dim=1)
    return Augmentation(flip, scale, shift, translation)


def draw_crops(seed: int, step: int, count: int) -> torch.Tensor:
    """(N, 3) uniforms in [0, 1) per frame of the global batch: which lesion pixel a crop holds,
    and where in the crop that pixel (or, without a lesion, the crop itself) lies."""
    return torch.rand(count, 3, generator=generator(seed, STREAM_CROP, step))


def crop_origins(target: torch.Tensor, draws: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 2) top-left corners of square `size` crops of (N, H, W) labels.

    A frame holding a labelled lesion is cropped around one of its lesion pixels, drawn
    uniformly, at a uniformly drawn position inside the crop: the lesions the sampler went out
    of its way to show are never cropped away. Any other frame gets a uniformly placed crop.
    """
    count, height, width = target.shape
    draws = draws.to(target.device)
    origins = torch.stack([(draws[:, 1] * (height - size + 1)).long(), (draws[:, 2] * (width - size + 1)).long()], 1)
    lesion = (target > 0).flatten(1)
    counts = lesion.sum(dim=1)
    pick = torch.minimum((draws[:, 0] * counts).long(), (counts - 1).clamp(min=0))
    position = torch.searchsorted(lesion.long().cumsum(dim=1), (pick + 1)[:, None]).squeeze(1)
    pixel = torch.stack([position // width, position % width], dim=1)
    inside = torch.stack([(draws[:, 1] * size).long(), (draws[:, 2] * size).long()], dim=1)
    around_lesion = (pixel - inside).clamp(min=0)
    around_lesion = torch.minimum(around_lesion, torch.tensor([height - size, width - size], device=target.device))
    return torch.where((counts > 0)[:, None], around_lesion, origins)


def crop(tensor: torch.Tensor, origins: torch.Tensor, size: int) -> torch.Tensor:
    """The (size, size) windows at `origins` of an (N, H, W) or (N, C, H, W) tensor, in one
    gather (channels-last memory for frames, as the network takes them)."""
    n = torch.arange(tensor.shape[0], device=tensor.device)[:, None, None]
    span = torch.arange(size, device=tensor.device)
    rows = (origins[:, :1] + span[None, :])[:, :, None]
    columns = (origins[:, 1:] + span[None, :])[:, None, :]
    if tensor.dim() == 3:
        return tensor[n, rows, columns]
    return tensor.permute(0, 2, 3, 1)[n, rows, columns].permute(0, 3, 1, 2)


class SliceStore:
    """The training slices of all cases, stacked; see the module docstring."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor,
                 known_negative: Optional[torch.Tensor], case_start: torch.Tensor, case_end: torch.Tensor,
                 bootstrap: torch.Tensor, case_ids: Sequence[str], pin: bool = False) -> None:
        self.images = images  # (S, 4, H, W)
        self.labels = labels  # (S, H, W) uint8
        self.brain = brain  # (S, H, W) bool
        self.known_negative = known_negative  # (S, H, W) bool or None
        self.case_start = case_start  # (S,) long: first slice of the slice's case
        self.case_end = case_end  # (S,) long: last slice of the slice's case
        self.bootstrap = bootstrap  # (S,) bool
        self.case_ids = list(case_ids)
        host_brain = brain.any(dim=(1, 2)).cpu()
        host_lesion = (labels > 0).any(dim=(1, 2)).cpu() & host_brain
        self.brain_slices = torch.nonzero(host_brain).flatten()
        self.lesion_slices = torch.nonzero(host_lesion).flatten()
        self.pin = pin  # gather host slices into pinned memory (they feed a GPU)

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def slices(self) -> int:
        return int(self.images.shape[0])

    def frames_at(self, centres: torch.Tensor, slices: int) -> torch.Tensor:
        """(N, 4 * slices, H, W) frames around global slice indices, on the store's device;
        neighbours beyond either end of a case repeat that case's edge slice."""
        centres = centres.to(self.case_start.device)
        half = slices // 2
        offsets = torch.arange(-half, half + 1, device=centres.device)
        index = torch.minimum(torch.maximum(centres[:, None] + offsets[None, :], self.case_start[centres][:, None]),
                              self.case_end[centres][:, None]).reshape(-1)
        count, channels, (height, width) = centres.shape[0], self.images.shape[1], self.size
        gathered = self._gather(self.images, index)
        return gathered.view(count, slices, channels, height, width).transpose(1, 2).reshape(
            count, channels * slices, height, width)

    def _gather(self, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """source[index]; for a host store feeding a GPU, into pinned memory so that the copy to
        the GPU is asynchronous (PyTorch's pinned-memory cache reuses a buffer only after its
        copy has finished, so a fresh one per call is cheap and safe)."""
        if source.device.type == "cpu" and self.pin:
            out = torch.empty((index.shape[0],) + tuple(source.shape[1:]), dtype=source.dtype, pin_memory=True)
            return torch.index_select(source, 0, index, out=out)
        return source.index_select(0, index)

    def batch(self, centres: torch.Tensor, augmentation: Optional[Augmentation], device: torch.device,
              slices: int = 5, crops: Optional[Tuple[torch.Tensor, int]] = None) -> Batch:
        """The frames and targets of `centres` (CPU long tensor) on `device`, augmented, then
        cut to crops when `crops` gives (draw_crops's rows for these frames, crop size)."""
        index = _to(centres, self.images.device)
        frames = self.frames_at(index, slices).to(device, non_blocking=True)
        target = self._gather(self.labels, index).to(device, non_blocking=True)
        brain = self._gather(self.brain, index).to(device, non_blocking=True)
        known = None if self.known_negative is None else \
            self._gather(self.known_negative, index).to(device, non_blocking=True)
        bootstrap = self.bootstrap[index].to(device, non_blocking=True)
        if augmentation is not None:
            frames, target, brain, known = _augment(frames, target, brain, known, augmentation, slices)
        if crops is not None:
            draws, size = crops
            origins = crop_origins(target, draws, size)
            frames, target, brain = crop(frames, origins, size), crop(target, origins, size), crop(brain, origins, size)
            known = None if known is None else crop(known, origins, size)
        return Batch(frames, target, known, brain, bootstrap, centres)


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on `device`; through pinned memory for a GPU, so the copy neither
    waits for the GPU's queue nor makes the next step wait for it."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _augment(frames: torch.Tensor, target: torch.Tensor, brain: torch.Tensor, known: Optional[torch.Tensor],
             augmentation: Augmentation, slices: int):
    """Intensity change per sequence inside the brain, then one gather that translates and flips
    frames and masks together (edge pixels repeated; the frame border is background)."""
    device = frames.device
    count, channels, height, width = frames.shape
    scale = _to(augmentation.scale, device).to(frames.dtype)
    shift = _to(augmentation.shift, device).to(frames.dtype)
    by_role = frames.view(count, channels // slices, slices, height, width)
    inside = by_role != 0
    by_role = torch.where(inside, by_role * scale[:, :, None, None, None] + shift[:, :, None, None, None], by_role)
    frames = by_role.view(count, channels, height, width)

    translation = _to(augmentation.translation, device)
    rows = (torch.arange(height, device=device)[None, :] - translation[:, :1]).clamp(0, height - 1)
    columns = (torch.arange(width, device=device)[None, :] - translation[:, 1:]).clamp(0, width - 1)
    flip = _to(augmentation.flip, device)[:, None]
    columns = torch.where(flip, width - 1 - columns, columns)
    n = torch.arange(count, device=device)[:, None, None]
    r, c = rows[:, :, None], columns[:, None, :]
    frames = frames.permute(0, 2, 3, 1)[n, r, c].permute(0, 3, 1, 2)  # (N, C, H, W), channels-last memory
    target = target[n, r, c]
    brain = brain[n, r, c]
    known = None if known is None else known[n, r, c]
    return frames, target, brain, known


def draw_batch(seed: int, step: int, store: SliceStore, batch_size: int, lesion_fraction: float) -> torch.Tensor:
    """Global slice indices of one step's batch (CPU long tensor, batch_size of them).

    round(batch_size * lesion_fraction) frames come from slices holding a labelled lesion
    (lesions are rare: uniform sampling would show the network almost none), the rest from
    all slices holding brain (slices without brain teach nothing and are never run at
    inference). The order is shuffled so that every process's part mixes both kinds.
    """
    g = generator(seed, STREAM_SAMPLE, step)
    lesions = int(round(batch_size * lesion_fraction)) if len(store.lesion_slices) else 0
    picked_lesions = store.lesion_slices[torch.randint(max(1, len(store.lesion_slices)), (lesions,), generator=g)]
    picked_brain = store.brain_slices[torch.randint(len(store.brain_slices), (batch_size - lesions,), generator=g)]
    batch = torch.cat([picked_lesions, picked_brain])
    return batch[torch.randperm(batch_size, generator=g)]


class SliceStoreBuilder:
    """Collects prepared training cases one at a time (host tensors in the storage dtype, so
    the host holds each slice once), then stacks them where they will be used."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self.parts: List[Tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], bool]] = []

    def add(self, prepared, bootstrap: bool) -> None:
        """`prepared`: a frames.Prepared with a label; `bootstrap`: its label may miss lesions."""
        if prepared.label is None:
            raise BrainMetSegError(f"{prepared.case_id}: a training case needs a label")
        images = torch.from_numpy(np.ascontiguousarray(prepared.images)).to(self.dtype).permute(1, 0, 2, 3).contiguous()
        label = torch.from_numpy(np.ascontiguousarray(prepared.label, dtype=np.uint8))
        brain = torch.from_numpy(np.ascontiguousarray(prepared.brain, dtype=bool))
        known = None if prepared.known_negative is None else torch.from_numpy(
            np.ascontiguousarray(prepared.known_negative, dtype=bool))
        if self.parts and images.shape[2:] != self.parts[0][1].shape[2:]:
            raise BrainMetSegError(f"{prepared.case_id}: frame size {tuple(images.shape[2:])} differs from "
                                   f"{tuple(self.parts[0][1].shape[2:])} of the other cases")
        self.parts.append((prepared.case_id, images, label, brain, known, bool(bootstrap)))

    def nbytes(self) -> int:
        return sum(p[1].numel() * p[1].element_size() + 3 * p[2].numel() for p in self.parts)

    def build(self, device: torch.device, pin: bool = False) -> SliceStore:
        """Stack on `device`; `pin` when the slices stay on the host but feed a GPU."""
        if not self.parts:
            raise BrainMetSegError("training data: no labelled training case")
        total = sum(p[1].shape[0] for p in self.parts)
        shape = tuple(self.parts[0][1].shape[1:])
        images = torch.empty((total,) + shape, dtype=self.dtype, device=device)
        labels = torch.empty((total,) + shape[1:], dtype=torch.uint8, device=device)
        brain = torch.empty((total,) + shape[1:], dtype=torch.bool, device=device)
        any_known = any(p[4] is not None for p in self.parts)
        known = torch.zeros((total,) + shape[1:], dtype=torch.bool, device=device) if any_known else None
        start = torch.empty(total, dtype=torch.long)
        end = torch.empty(total, dtype=torch.long)
        bootstrap = torch.empty(total, dtype=torch.bool)
        ids = []
        position = 0
        while self.parts:  # free each host copy as soon as it is stacked
            case_id, case_images, label, case_brain, case_known, case_bootstrap = self.parts.pop(0)
            depth = case_images.shape[0]
            window = slice(position, position + depth)
            images[window] = case_images.to(device)
            labels[window] = label.to(device)
            brain[window] = case_brain.to(device)
            if case_known is not None:
                known[window] = case_known.to(device)  # type: ignore[index]
            start[window], end[window], bootstrap[window] = position, position + depth - 1, case_bootstrap
            ids.append(case_id)
            position += depth
        return SliceStore(images, labels, brain, known, start.to(device), end.to(device), bootstrap.to(device), ids, pin)


def storage_device(nbytes: int, compute: torch.device) -> torch.device:
    """The GPU itself when the slices fit comfortably (GPU_STORE_SHARE of free memory), else the
    host. On a CPU, the CPU."""
    if compute.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(compute)
    return compute if nbytes <= GPU_STORE_SHARE * free else torch.device("cpu")


def steps_for_one_pass(store: SliceStore, batch_size: int) -> int:
    """Default steps per epoch: as many frames as the training cases have brain slices."""
    return max(1, int(math.ceil(len(store.brain_slices) / batch_size)))
