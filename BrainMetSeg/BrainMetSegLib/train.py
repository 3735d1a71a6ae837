"""Training (paper §3, DESIGN §Method): the loop, validation, model selection, resume, DDP.

One run lives in one folder RUN: options.json (the options it was started with),
events.jsonl (DESIGN §Events, followed by the Slicer module), checkpoint.safetensors (+ a
readable checkpoint.json), censoring.json when labels are censored on the fly, and RUN/model,
the model folder of the epoch with the best validation AP.

Choices that shape the result, and why:

- Loss by label status. Cases whose label may miss lesions (`partial`, and every censored
  case) get the chosen loss (lopsided bootstrap by default); `complete` cases get weighted CE
  with the same α, because bootstrapping a label known to be complete can only teach the
  network to ignore it. `uniform_loss` gives every case the chosen loss, as the paper did.
  Rejected candidates of dataset.json become known negatives (plain CE there).
- Warm-up. The first `warmup_fraction` of the steps train with β = 1 (weighted CE): from
  random weights the bootstrap feedback loop can settle on "everything is lesion". After every
  epoch collapse_watch.py judges the share of brain voxels predicted lesion (training frames and
  validation cases) and whether any labelled validation lesion was found; what it flags is
  reported as `collapse` in the epoch event and in the summary, never silently saved as a good
  model. The lopsided loss cannot lift a network out of "nothing is lesion": where the network
  calls nothing its bootstrap target is the label, and the loss is plain weighted CE.
- Selection. After every epoch the validation cases are segmented and scored with
  metrics.py (on the model grid, which is what the network sees; `brainmetseg evaluate`
  scores on the input grid). The epoch with the best AP is saved as RUN/model, its operating
  point the highest recall at <= 1 false positive per case. Validation cases with `complete`
  labels are preferred when any exist; otherwise the (censored) partial ones, as the paper.
  Without labelled validation cases the last epoch is kept, and the summary says so.
- Reproducible resume. Every random draw is a function of (seed, step) (train_data.py,
  dropout seeded per step), the learning rate a function of the step, so a checkpoint needs
  only weights, optimiser state and counters; a killed run resumed with --resume reaches the
  weights the uninterrupted run would have reached.
- Speed. Slices stay in device memory (train_data.py), frames and augmentation are built
  there, bf16 autocast on CUDA (fp16 with loss scaling on older GPUs), channels_last on every
  device (oneDNN's CPU kernels prefer NHWC too: 1.4x faster training steps on a 2-core Xeon,
  docs/benchmarks.md), one host synchronisation per `log_every` steps.
- Several GPUs. Under torchrun each process takes a disjoint part of every step's batch
  (batch_size is the global batch) and DistributedDataParallel averages the gradients; only
  rank 0 validates and writes. Batch normalisation uses each process's part.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write_json
from .brain_margin import DEFAULT_BRAIN_MARGIN_MM
from .case import Case, case_from_volumes
from .censor import CensorReport, apply_censoring, lesion_volumes, plan_censoring
from .censored_copy import REPORT_FILE as CENSORED_COPY_REPORT
from .checkpoint import load_checkpoint, read_checkpoint_progress, save_checkpoint
from .collapse_watch import POSITIVE_PROBABILITY, collapse_message, validation_verdict
from .dataset import CaseEntry, read_dataset
from .devices import autocast, device_description, resolve_device
from .errors import BrainMetSegError
from .events import EVENTS_FILE, EventWriter
from .fast_path import FastNetwork, inference_copy, skip_padding_taps
from .frames import Prepared, prepare_case
from .losses import Loss, WeightedCrossEntropyLoss, make_loss
from .metrics import CaseEvaluation, evaluate_case, operating_point, summarise
from .model_card import ModelConfig
from .model_folder import WEIGHTS_FILE, load_model_folder, read_model_config, resolve_model, save_model_folder
from .network import build_network
from .predict import predict_probability
from .roles import ROLES
from .synth import SYNTH_JSON
from .train_data import (STREAM_DROPOUT, STREAM_INIT, SliceStore, SliceStoreBuilder, draw_augmentation, draw_batch,
                         draw_crops, seed_for, steps_for_one_pass, storage_device)
from .train_options import (CENSORING_FILE, MODEL_FOLDER, OPTIONS_FILE, RUNTIME_ONLY, TrainOptions, check_options,
                            check_run_folder, read_options_file, resolve_options)
from .volumes import read_volume

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

SLICES = 5
"""Slices per frame (paper: 5 neighbouring axial slices of each sequence)."""
VALIDATION_THRESHOLD = 0.1
"""Probability threshold of predicted lesions at validation (DESIGN §Lesions)."""
OPERATING_POINT_MAX_FP = 1.0
"""The model's default confidence cut-off: highest validation recall at <= 1 FP per case."""
CARD_METRICS = ("ap", "ap_ci95", "max_sensitivity", "tp_dice", "fp_per_case", "n_cases", "n_lesions")
"""Validation metrics of the selected epoch kept in model.json (events.jsonl has them all)."""
LR_FLOOR = 0.01
"""Cosine schedule ends at 1% of the peak learning rate."""
STOP_CHECK_EVERY = 10
"""Under torchrun the processes agree every this many steps whether a stop was requested."""


class TrainingStopped(Exception):
    """The run was stopped (SIGTERM, SIGINT or the cancel callback) after saving a checkpoint."""

    def __init__(self, run: Path, step: int) -> None:
        super().__init__(f"{run}: training stopped at step {step} after saving a checkpoint; "
                         f"continue it with --resume")
        self.run = run
        self.step = step


# ---------------------------------------------------------------------------------- pure pieces


def learning_rate(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up over the first `warmup_fraction` of the steps, then a cosine that reaches
    LR_FLOOR * peak at the last step."""
    warm = int(math.ceil(round(warmup_fraction * total, 9)))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm - 1)
    return peak * (LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def bootstrap_steps(total: int, warmup_fraction: float) -> int:
    """Number of the first steps trained with β = 1."""
    return int(math.ceil(round(warmup_fraction * total, 9)))


def status_loss(logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor],
                bootstrap: torch.Tensor, chosen: Loss, complete: Loss) -> torch.Tensor:
    """Plain mean over every voxel of the batch of the per-voxel loss, taken from `chosen` for
    frames whose label may miss lesions (`bootstrap` true) and from `complete` for the others."""
    partial = chosen.per_voxel(logits, target, known_negative)
    full = complete.per_voxel(logits, target, known_negative)
    return torch.where(bootstrap[:, None, None], partial, full).mean()


def validation_probability(network: Union[nn.Module, FastNetwork], prepared: Prepared, device: torch.device,
                           batch_size: int) -> np.ndarray:
    """The map `predict` gives users, on the model grid: probability beyond the default brain
    margin is zeroed there, so model selection and the operating point must judge the same map."""
    return predict_probability(network, prepared, device, batch_size=batch_size, slices=SLICES,
                               brain_margin_mm=DEFAULT_BRAIN_MARGIN_MM)


def check_batch_split(batch_size: int, world: int) -> int:
    """Frames per process; every process needs an equal part of at least 2 (batch normalisation)."""
    if batch_size % world or batch_size // world < 2:
        raise BrainMetSegError(f"batch_size (--batch-size): {batch_size} frames cannot be split into {world} "
                               "equal parts of at least 2 frames (one part per process under torchrun)")
    return batch_size // world


def _share(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator > 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------- processes


@dataclasses.dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _distributed_from_environment() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def _setup(options: TrainOptions) -> Tuple[Distributed, torch.device]:
    """The process group under torchrun (nccl on GPUs, gloo on CPUs) and this process's device."""
    dist = _distributed_from_environment()
    device = resolve_device(options.device)
    if dist.world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
            dist.initialised = True
    return dist, device


class _StopRequest:
    """Set by SIGTERM/SIGINT; the first signal asks for a clean stop, a second one acts as usual."""

    def __init__(self, cancel: Optional[CancelCheck]) -> None:
        self.cancel = cancel
        self.signal: Optional[str] = None
        self.previous: Dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.getsignal(number)
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        self.signal = signal.Signals(number).name
        signal.signal(number, self.previous.get(number, signal.SIG_DFL))

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    def requested(self) -> Optional[str]:
        if self.signal is None and self.cancel is not None and self.cancel():
            self.signal = "cancel"
        return self.signal


# ---------------------------------------------------------------------------------- data


@dataclasses.dataclass
class _Data:
    store: SliceStore
    validation: List[Prepared]
    selection_ids: List[str]
    selection_rule: str
    description: Dict[str, Any]
    censoring: Optional[CensorReport]
    synthetic: bool


def _synthetic_dataset(root: Path) -> bool:
    """Whether the data are the synthetic cohort: `brainmetseg synth` writes synth.json next to
    dataset.json, and a censored copy (`brainmetseg censor`) names its source in censoring.json."""
    if (root / SYNTH_JSON).is_file():
        return True
    try:
        source = json.loads((root / CENSORED_COPY_REPORT).read_text(encoding="utf-8")).get("source")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    return isinstance(source, str) and (Path(source) / SYNTH_JSON).is_file()


def _censoring_plan(entries: Sequence[CaseEntry], options: TrainOptions) -> Optional[CensorReport]:
    """Which lesions to remove, measured on the label files as `brainmetseg censor` does, so
    on-the-fly censoring equals training on the censored copy."""
    if options.censor_mode == "none":
        return None
    volumes = {}
    for entry in entries:
        label = read_volume(entry.label_path())
        volumes[entry.case_id] = lesion_volumes(label.array, label.affine, str(label.path))[1]
    return plan_censoring(volumes, options.censor_mode, options.censor_rate, options.censor_seed)


def _load_case(entry: CaseEntry, plan: Optional[CensorReport]) -> Case:
    if plan is None:
        return entry.load()
    volumes = {role: read_volume(path) for role, path in entry.image_paths().items()}
    label = read_volume(entry.label_path())
    components, _ = lesion_volumes(label.array, label.affine, str(label.path))
    censored = apply_censoring(label.array, components, plan.case(entry.case_id).removed)
    return case_from_volumes(volumes, label.with_array(censored), None, entry.case_id)


def _load_data(options: TrainOptions, device: torch.device, report: Callable[[float, str], None]) -> _Data:
    dataset = read_dataset(options.dataset)
    train_entries = [e for e in dataset.split("train") if e.label_status != "none"]
    val_entries = [e for e in dataset.split("val") if e.label_status != "none"]
    unlabelled = [e.case_id for e in dataset.cases if e.split in ("train", "val") and e.label_status == "none"]
    if not train_entries:
        raise BrainMetSegError(f"{dataset.root}: no training case with a label (split 'train', label "
                               "'complete' or 'partial'); nothing to train on")
    plan = _censoring_plan(train_entries + val_entries, options)
    censored = plan is not None

    def partial(entry: CaseEntry) -> bool:
        return censored or entry.label_status == "partial"

    size = (options.in_plane_size, options.in_plane_size)
    spacing = (options.pixel_spacing, options.pixel_spacing)

    def prepare(entry: CaseEntry) -> Prepared:
        case = _load_case(entry, plan)
        return prepare_case(case, spacing, options.slice_spacing, size,
                            rejected_ras=entry.rejected if entry.rejected else None)

    cuda = device.type == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16) \
        if cuda else torch.float32
    builder = SliceStoreBuilder(dtype)
    validation: List[Prepared] = []
    entries = train_entries + val_entries
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        for number, (entry, prepared) in enumerate(zip(entries, pool.map(prepare, entries))):
            report(number / len(entries), f"prepared {entry.case_id} ({number + 1} of {len(entries)})")
            if entry.split == "train":
                builder.add(prepared, options.uniform_loss or partial(entry))
            else:
                validation.append(prepared)
    where = storage_device(builder.nbytes(), device)
    store = builder.build(where, pin=cuda and where.type == "cpu")

    complete_val = [e.case_id for e in val_entries if not partial(e)]
    if complete_val:
        selection_ids, rule = complete_val, f"best validation AP on the {len(complete_val)} complete-label val case(s)"
    elif val_entries:
        selection_ids = [e.case_id for e in val_entries]
        kind = "censored" if censored else "partial"
        rule = f"best validation AP on the {len(selection_ids)} val case(s) with {kind} labels (no complete-label val case)"
    else:
        selection_ids, rule = [], "no labelled validation case: the last epoch is kept"
    statuses = {"partial": sum(partial(e) for e in train_entries)}
    statuses["complete"] = len(train_entries) - statuses["partial"]
    description = {
        "dataset": str(dataset.root), "train_cases": len(train_entries), "val_cases": len(val_entries),
        "train_label_status": statuses, "train_slices": store.slices, "train_brain_slices": len(store.brain_slices),
        "train_lesion_slices": len(store.lesion_slices), "unlabelled_cases_skipped": unlabelled,
        "known_negative_cases": sum(1 for e in train_entries if e.rejected),
        "train_case_ids": [e.case_id for e in train_entries],
    }
    return _Data(store, validation, selection_ids, rule, description, plan, _synthetic_dataset(dataset.root))


# ---------------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, options: TrainOptions, dist: Distributed, device: torch.device,
                 progress: Optional[Progress], stop: _StopRequest) -> None:
        self.given = options
        self.dist = dist
        self.device = device
        self.progress = progress
        self.stop = stop
        self.run = options.out
        self.events = EventWriter(self.run / EVENTS_FILE) if dist.main else None

    # -- folder ------------------------------------------------------------------------

    def open_folder(self) -> Tuple[TrainOptions, Dict[str, Any]]:
        """Check the run folder (every process, before any writes), then let rank 0 set it up."""
        given, run = self.given, self.run
        init_config = None
        check_run_folder(given)
        if given.resume:
            _, stored = read_options_file(run)
            resolved = dataclasses.replace(stored, **{name: getattr(given, name) for name in RUNTIME_ONLY})
            previous = read_checkpoint_progress(run)
        else:
            if given.init_model is not None:
                init_config = read_model_config(resolve_model(given.init_model))
            resolved = resolve_options(given, self.device.type, init_config)
            check_options(resolved)
            previous = {}
        self.dist.barrier()
        if self.dist.main:
            run.mkdir(parents=True, exist_ok=True)
            if not given.resume:
                atomic_write_json(run / OPTIONS_FILE, {"given": given.to_json(), "resolved": resolved.to_json()})
        self.dist.barrier()
        return resolved, previous

    def emit(self, event: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.write(event, **fields)

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None and self.dist.main:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)

    # -- set-up ------------------------------------------------------------------------

    def execute(self) -> Path:
        options, previous = self.open_folder()
        self.options = options
        if previous.get("finished"):
            self.report(1.0, "the run had already finished")
            return self.run / MODEL_FOLDER
        self.emit("started", run=str(self.run), options=options.to_json(), device=device_description(self.device),
                  world_size=self.dist.world, resumed_from=previous.get("step") if options.resume else None)
        self.step = int(previous.get("step", 0))
        try:
            return self._train()
        except TrainingStopped:
            raise
        except BaseException as error:
            self.emit("failed", error=str(error) or type(error).__name__, type=type(error).__name__,
                      step=getattr(self, "step", None))
            raise

    def _train(self) -> Path:
        options, dist = self.options, self.dist
        self.report(0.0, "reading and preparing cases")
        self.data = _load_data(options, self.device, lambda f, m: self.report(0.02 * f, m))
        if dist.main and self.data.censoring is not None:
            atomic_write_json(self.run / CENSORING_FILE, self.data.censoring.to_json())
        check_batch_split(options.batch_size, dist.world)
        self.steps_per_epoch = options.steps_per_epoch or steps_for_one_pass(self.data.store, options.batch_size)
        self.total = options.epochs * self.steps_per_epoch
        if options.max_steps is not None:
            self.total = min(self.total, options.max_steps)
        self.warm_steps = bootstrap_steps(self.total, options.warmup_fraction)
        self._build_model()
        self._restore()
        self._loop()
        return self._finish()

    def _build_model(self) -> None:
        options, device = self.options, self.device
        torch.manual_seed(seed_for(options.seed, STREAM_INIT))
        network = build_network(options.backbone, in_channels=len(ROLES) * SLICES, num_classes=2,
                                output_stride=options.output_stride)
        skip_padding_taps(network)  # exact (fast_path.py): same loss and gradients, less work
        if options.init_model is not None:
            folder = resolve_model(options.init_model)
            initial, config = load_model_folder(folder, "cpu")
            if list(config.input_roles) != list(ROLES) or config.slices_per_frame != SLICES:
                raise BrainMetSegError(f"init_model (--init-model): {folder} takes {config.slices_per_frame} slices "
                                       f"of {', '.join(config.input_roles)}; fine-tuning needs {SLICES} of "
                                       f"{', '.join(ROLES)}")
            network.load_state_dict(initial.state_dict())
        network.to(device, memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.network = network
        extra = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay,
                                           **extra)
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and not bf16 else None
        self.chosen = make_loss(options.loss, options.alpha, options.beta)
        self.warm = make_loss(options.loss, options.alpha, 1.0)
        self.complete = WeightedCrossEntropyLoss(options.alpha)
        self.model: nn.Module = network
        if self.dist.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(network, device_ids=ids)

    def _fingerprint(self) -> Dict[str, Any]:
        return {"train_case_ids": self.data.description["train_case_ids"], "train_slices": self.data.store.slices,
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total}

    def _restore(self) -> None:
        """Counters from scratch, or everything from the checkpoint when resuming."""
        self.best: Optional[Dict[str, Any]] = None
        self.history: List[Dict[str, Any]] = []
        self.collapses: List[str] = []
        self.accumulators = torch.zeros(5, dtype=torch.float64, device=self.device)  # loss, steps, positive, labelled, brain
        self.window = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss, steps since the last step event
        self.last_checkpoint = -1
        self.step = 0
        if not self.options.resume or not read_checkpoint_progress(self.run):
            return
        checkpoint = load_checkpoint(self.run)
        progress = checkpoint.progress
        if progress.get("fingerprint") != self._fingerprint():
            raise BrainMetSegError(f"{self.run}: the training data or its epochs changed since the run started "
                                   f"(cases, slices or steps differ from {self.run / 'checkpoint.json'}); "
                                   "cannot resume to the same result; start a new run")
        self.network.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        if self.scaler is not None and progress.get("scaler"):
            self.scaler.load_state_dict(progress["scaler"])
        self.step = int(progress["step"])
        self.best, self.history, self.collapses = progress["best"], progress["history"], progress["collapses"]
        if self.dist.main:
            self.accumulators.copy_(torch.tensor(progress["accumulators"], dtype=torch.float64))
            self.window.copy_(torch.tensor(progress["window"], dtype=torch.float64))
        self.last_checkpoint = self.step

    # -- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        options, dist = self.options, self.dist
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.step, unit="step", desc="training", dynamic_ncols=True,
                   disable=not (dist.main and sys.stderr.isatty()))
        self.model.train()
        start_step, start_time = self.step, time.monotonic()
        try:
            while self.step < self.total:
                loss = self._train_step(self.step)
                self.accumulators[0] += loss
                self.accumulators[1] += 1
                self.window[0] += loss
                self.window[1] += 1
                self.step += 1
                bar.update(1)
                done = self.step
                elapsed = time.monotonic() - start_time
                eta = (self.total - done) * elapsed / max(1, done - start_step)
                if done % options.log_every == 0 or done == self.total:
                    self._log_step(bar, eta, (done - start_step) * options.batch_size / max(elapsed, 1e-9))
                else:
                    self.report(0.02 + 0.98 * done / self.total,
                                f"step {done} of {self.total}, epoch {self._epoch_number()}")
                if done % self.steps_per_epoch == 0 or done == self.total:
                    self._end_epoch()
                elif options.checkpoint_every and done % options.checkpoint_every == 0:
                    self._checkpoint("step")
                self._check_stop()
        finally:
            bar.close()

    def _train_step(self, step: int) -> torch.Tensor:
        options, dist, device = self.options, self.dist, self.device
        lr = learning_rate(step, self.total, options.lr, options.lr_warmup_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(seed_for(options.seed, STREAM_DROPOUT, step, dist.rank))
        store = self.data.store
        centres = draw_batch(options.seed, step, store, options.batch_size, options.lesion_fraction)
        augmentation = draw_augmentation(options.seed, step, options.batch_size, store.size) if options.augment \
            else None
        crops = None if options.crop_size is None else \
            (draw_crops(options.seed, step, options.batch_size)[dist.rank::dist.world], options.crop_size)
        batch = store.batch(centres[dist.rank::dist.world],
                            None if augmentation is None else augmentation.part(dist.rank, dist.world), device, SLICES,
                            crops)
        frames = batch.frames.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = self.model(frames)
        loss_function = self.chosen if step >= self.warm_steps else self.warm
        loss = status_loss(logits.float(), batch.target, batch.known_negative, batch.bootstrap, loss_function,
                           self.complete)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            positive = logits.detach().argmax(dim=1) == 1
            brain = batch.brain
            self.accumulators[2:] += torch.stack([(positive & brain).sum(), ((batch.target > 0) & brain).sum(),
                                                  brain.sum()]).to(torch.float64)
        return loss.detach().to(torch.float64)

    def _log_step(self, bar: Any, eta: float, frames_per_s: float) -> None:
        loss_sum, count = self.window.tolist()
        self.window.zero_()
        loss = loss_sum / max(count, 1)
        lr = self.optimizer.param_groups[0]["lr"]
        options = self.options
        trained = "ce" if options.loss == "ce" else f"{options.loss} (beta {options.beta:g})"
        phase = "warm-up (beta 1)" if self.step <= self.warm_steps else trained
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        self.emit("step", step=self.step, total_steps=self.total, epoch=self._epoch_number(), loss=loss, lr=lr,
                  phase=phase, eta_s=round(eta, 1), frames_per_s=round(frames_per_s, 1))
        self.report(0.02 + 0.98 * self.step / self.total,
                    f"step {self.step} of {self.total}, epoch {self._epoch_number()}, loss {loss:.4f}")

    def _epoch_number(self) -> int:
        """1-based epoch of the last completed step."""
        return max(1, int(math.ceil(self.step / self.steps_per_epoch)))

    def _reduce(self) -> None:
        """Sum the counters over processes; afterwards rank 0 holds the totals, the others zero."""
        if self.dist.world > 1:
            torch.distributed.all_reduce(self.accumulators)
            if not self.dist.main:
                self.accumulators.zero_()

    def _check_stop(self) -> None:
        requested = self.stop.requested()
        if self.dist.world > 1:
            if self.step % STOP_CHECK_EVERY and self.step != self.total:
                return
            flag = torch.tensor([1.0 if requested else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = requested or ("signal on another process" if flag.item() > 0 else None)
        if not requested or self.step >= self.total:
            return
        if self.last_checkpoint != self.step:
            self._checkpoint("stop")
        self.emit("stopped", step=self.step, epoch=self._epoch_number(), reason=requested,
                  checkpoint=str(self.run / "checkpoint.safetensors"))
        raise TrainingStopped(self.run, self.step)

    # -- epochs, validation, selection ---------------------------------------------------

    def _end_epoch(self) -> None:
        self._reduce()
        epoch = self._epoch_number()
        record: Dict[str, Any] = {"epoch": epoch, "step": self.step}
        if self.dist.main:
            loss_sum, steps, positive, labelled, brain = self.accumulators.tolist()
            record.update(train_loss=loss_sum / max(steps, 1), train_positive_share=_share(positive, brain),
                          train_label_share=_share(labelled, brain))
            past_warmup = self.step > self.warm_steps
            messages = [collapse_message(record["train_positive_share"], record["train_label_share"],
                                         f"epoch {epoch}, training frames", past_warmup)]
            evaluation = self._validate() if self.data.validation else None
            if evaluation is not None:
                summary, point, val_positive, val_labelled = evaluation
                record.update(validation=summary, val_positive_share=val_positive, val_label_share=val_labelled)
                messages.append(validation_verdict(val_positive, val_labelled, summary, f"epoch {epoch}, validation",
                                                   past_warmup))
            record["collapse"] = "; ".join(m for m in messages if m) or None
            if record["collapse"]:
                self.collapses.append(record["collapse"])
            ap = None if evaluation is None else evaluation[0]["ap"]
            is_best = self.best is None or (ap is not None and (self.best["ap"] is None or ap > self.best["ap"])) \
                or (ap is None and self.best["ap"] is None)
            if is_best:
                self.best = {"epoch": epoch, "step": self.step, "ap": ap,
                             "operating_point": None if evaluation is None else evaluation[1],
                             "validation": None if evaluation is None else evaluation[0]}
            record.update(selected=is_best, best_epoch=self.best["epoch"], best_ap=self.best["ap"])
            self.history.append(dict(epoch=epoch, step=self.step, train_loss=record["train_loss"], ap=ap,
                                     collapse=record["collapse"]))
            if is_best:
                self._save_model()
            self.emit("epoch", **record)
        self.accumulators.zero_()
        self._checkpoint("epoch")

    def _validate(self) -> Tuple[Dict[str, Any], Optional[float], Optional[float], Optional[float]]:
        """Metrics of the selection cases, their operating point, and the predicted and labelled
        lesion shares of the brain over all validation cases."""
        network = inference_copy(self.network, self.device)
        evaluations: List[CaseEvaluation] = []
        positive = labelled = brain_voxels = 0
        per_process = self.options.batch_size // self.dist.world
        for prepared in self.data.validation:
            probability = validation_probability(network, prepared, self.device, batch_size=2 * per_process)
            evaluations.append(evaluate_case(probability, prepared.label, prepared.affine,
                                             threshold=VALIDATION_THRESHOLD, case_id=prepared.case_id))
            brain = prepared.brain
            positive += int(np.count_nonzero(probability[brain] >= POSITIVE_PROBABILITY))
            labelled += int(np.count_nonzero(prepared.label[brain]))
            brain_voxels += int(np.count_nonzero(brain))
        selected = [e for e in evaluations if e.case_id in set(self.data.selection_ids)]
        summary = summarise(selected)
        point = operating_point(selected, OPERATING_POINT_MAX_FP)
        return summary, point, _share(positive, brain_voxels), _share(labelled, brain_voxels)

    # -- writing -------------------------------------------------------------------------

    def _summary(self) -> Dict[str, Any]:
        """The `training` section of model.json and the `finished` event."""
        o, data = self.options, self.data
        if o.uniform_loss or o.loss == "ce":
            by_status = f"{o.loss} on every case"
        else:
            by_status = f"{o.loss} on partial (and censored) labels, weighted CE on complete labels"
        censoring: Any = "none"
        if data.censoring is not None:
            c = data.censoring
            censoring = {"mode": c.mode, "rate": c.rate, "seed": c.seed, "lesions": c.lesions, "removed": c.removed,
                         "applied_to": "train and val"}
        best = self.best or {}
        point = best.get("operating_point")
        description = {key: value for key, value in data.description.items() if key != "train_case_ids"}
        return {
            "loss": o.loss, "alpha": o.alpha, "beta": o.beta, "loss_by_label_status": by_status,
            "warmup": f"beta 1 for the first {self.warm_steps} of {self.total} steps",
            "censoring": censoring, "data": description,
            "epochs": self._epoch_number() if self.step else 0, "steps": self.step,
            "selected_epoch": best.get("epoch"), "selection": data.selection_rule,
            "validation": None if best.get("validation") is None else
            {key: best["validation"][key] for key in CARD_METRICS},
            "operating_point_rule": (f"highest validation recall at <= {OPERATING_POINT_MAX_FP:g} false positive "
                                     "per case" if point is not None else
                                     "no validation operating point; the probability threshold is used"),
            "collapse": list(self.collapses),
            "optimizer": f"AdamW (lr {o.lr:g}, weight decay {o.weight_decay:g})",
            "schedule": f"linear warm-up over {o.lr_warmup_fraction:g} of the steps, cosine to {LR_FLOOR:g} x lr",
            "batch_size": o.batch_size, "crop_size": o.crop_size, "steps_per_epoch": self.steps_per_epoch,
            "augment": o.augment,
            "lesion_fraction": o.lesion_fraction, "seed": o.seed, "init_model": o.init_model,
            "device": device_description(self.device), "world_size": self.dist.world, "finished": _now(),
        }

    def _config(self) -> ModelConfig:
        o = self.options
        point = (self.best or {}).get("operating_point")
        return ModelConfig(
            name=o.model_name, backbone=o.backbone, pixel_spacing_mm=[o.pixel_spacing, o.pixel_spacing],
            slice_spacing_mm=o.slice_spacing, in_plane_size=[o.in_plane_size, o.in_plane_size],
            output_stride=o.output_stride, slices_per_frame=SLICES, probability_threshold=VALIDATION_THRESHOLD,
            operating_point=VALIDATION_THRESHOLD if point is None else float(point),
            synthetic_training_data=self.data.synthetic, training=self._summary())

    def _save_model(self) -> None:
        save_model_folder(self.run / MODEL_FOLDER, self.network.state_dict(), self._config(), overwrite=True)

    def _progress_state(self, finished: bool) -> Dict[str, Any]:
        return {"step": self.step, "epoch": self._epoch_number(), "total_steps": self.total,
                "fingerprint": self._fingerprint(), "accumulators": self.accumulators.tolist(),
                "window": self.window.tolist(), "best": self.best, "history": self.history,
                "collapses": self.collapses, "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "lr": self.optimizer.param_groups[0]["lr"], "finished": finished, "time": _now()}

    def _checkpoint(self, reason: str) -> None:
        if reason != "epoch":  # the epoch end has reduced them already
            self._reduce()
        if self.dist.main:
            path = save_checkpoint(self.run, self.network.state_dict(), self.optimizer.state_dict(),
                                   self._progress_state(finished=False))
            self.emit("checkpoint", step=self.step, total_steps=self.total, epoch=self._epoch_number(), reason=reason,
                      path=str(path))
        self.last_checkpoint = self.step

    def _finish(self) -> Path:
        folder = self.run / MODEL_FOLDER
        if self.dist.main:
            save_model_folder(folder, _read_weights(folder), self._config(), overwrite=True)
            save_checkpoint(self.run, self.network.state_dict(), self.optimizer.state_dict(),
                            self._progress_state(finished=True))
            summary = self._summary()
            self.emit("finished", step=self.step, model=str(folder), summary=summary)
            self.report(1.0, f"finished: model in {folder}")
        self.dist.barrier()
        return folder


def _read_weights(folder: Path) -> Dict[str, torch.Tensor]:
    """The selected epoch's weights, saved when it was selected (the network has moved on since)."""
    from safetensors.torch import load_file

    return load_file(str(folder / WEIGHTS_FILE), device="cpu")


def train(options: TrainOptions, progress: Optional[Progress] = None, cancel: Optional[CancelCheck] = None) -> Path:
    """Train as `options` say (see train_options.py) and return the model folder RUN/model.

    Raises TrainingStopped after a clean stop (SIGTERM, SIGINT, or `cancel()` returning True,
    polled every step), BrainMetSegError for bad input. Under torchrun every process calls this.
    """
    check_options(options)
    options = options.normalised()
    dist, device = _setup(options)
    stop = _StopRequest(cancel)
    stop.install()
    try:
        return _Run(options, dist, device, progress, stop).execute()
    finally:
        stop.restore()
        if dist.initialised:
            torch.distributed.destroy_process_group()
