"""The three losses of Yi et al. (MIDL 2020), for labels that miss lesions.

With Y the (possibly censored) label, Ŷ = softmax(logits) and CE(t, Ŷ) = −log Ŷ_t:

- eq. 1, weighted cross-entropy: CE(Y, Ŷ), times α where Y = 1;
- eq. 2, bootstrap: β·CE(Y, Ŷ) + (1 − β)·CE(argmax Ŷ, Ŷ) on every voxel;
- eq. 3, lopsided bootstrap: the bootstrap term where Y = 0, α·CE(Y, Ŷ) where Y = 1.

A label of 0 may be a lesion the annotator missed, so eq. 3 lets the network's own confident
prediction partly replace it; a label of 1 is trusted. β = 1 turns eq. 3 into eq. 1.

Every loss is the *plain mean* of the per-voxel loss over all voxels. This is not what
`torch.nn.CrossEntropyLoss(weight=...)` returns: PyTorch divides by the sum of the weights,
which would shrink the effect of α as lesions get larger. `per_voxel` returns the map before
the mean so that the trainer can give each sample its own loss (lopsided on `partial`
labels, weighted CE on `complete` ones) and still take one plain mean.

`known_negative` marks voxels an annotator reviewed and rejected: there the label 0 is
certain, so the bootstrap term gives way to plain CE (β treated as 1).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from .errors import BrainMetSegError

LOSS_NAMES = ("ce", "bootstrap", "lopsided")
"""Names accepted by make_loss (and the trainer's --loss): eq. 1, eq. 2, eq. 3."""

_TARGET_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise BrainMetSegError(
            f"alpha: must be a positive number, the weight of voxels labelled lesion (got {alpha!r})"
        )
    return float(alpha)


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0 < beta <= 1:
        raise BrainMetSegError(f"beta: must be in (0, 1], the share of the loss that follows the label (got {beta!r})")
    return float(beta)


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(size) for size in tensor.shape)


def _validated(
    logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check the inputs; return float32 log-probabilities (N×2×H×W) and an int64 target (N×H×W)."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        found = getattr(logits, "dtype", type(logits))
        raise BrainMetSegError(f"logits: expected a floating-point tensor (got {found})")
    if logits.dim() != 4 or logits.shape[1] != 2:
        raise BrainMetSegError(f"logits: expected shape Nx2xHxW (background, lesion), got {_shape(logits)}")
    if logits.numel() == 0:
        raise BrainMetSegError(f"logits: no voxels (shape {_shape(logits)})")
    if not isinstance(target, torch.Tensor) or target.dtype not in _TARGET_DTYPES:
        raise BrainMetSegError(
            f"target: expected an integer or bool tensor of 0/1 labels (got {getattr(target, 'dtype', type(target))})"
        )
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise BrainMetSegError(f"target: shape {_shape(target)} does not match logits {_shape(logits)}; expected NxHxW")
    # The value check reads back from the device; on a GPU it would stall every training step,
    # so it runs on the CPU only (the trainer builds its targets from validated 0/1 labels).
    if target.dtype != torch.bool and target.device.type == "cpu" and bool(((target < 0) | (target > 1)).any()):
        bad = target[(target < 0) | (target > 1)][0].item()
        raise BrainMetSegError(f"target: labels must be 0 (background) or 1 (lesion); found {bad}")
    if known_negative is not None:
        if not isinstance(known_negative, torch.Tensor) or known_negative.dtype != torch.bool:
            raise BrainMetSegError(
                f"known_negative: expected a bool tensor (got {getattr(known_negative, 'dtype', type(known_negative))})"
            )
        if known_negative.shape != target.shape:
            raise BrainMetSegError(
                f"known_negative: shape {_shape(known_negative)} does not match target {_shape(target)}"
            )
    return torch.log_softmax(logits.float(), dim=1), target.long()


def _label_ce(log_probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE(Y, Ŷ) per voxel."""
    return -log_probability.gather(1, target.unsqueeze(1)).squeeze(1)


def _bootstrap(
    log_probability: torch.Tensor, label_ce: torch.Tensor, beta: float, known_negative: Optional[torch.Tensor]
) -> torch.Tensor:
    """β·CE(Y, Ŷ) + (1 − β)·CE(argmax Ŷ, Ŷ) per voxel; β = 1 on known negatives.

    The argmax is an index computed from detached values: the network is pushed towards its
    own winning class, but the choice of that class is a constant (ties go to background).
    """
    predicted = log_probability.detach().argmax(dim=1)
    self_ce = -log_probability.gather(1, predicted.unsqueeze(1)).squeeze(1)
    if known_negative is None:
        return beta * label_ce + (1.0 - beta) * self_ce
    share = torch.where(known_negative, torch.ones_like(label_ce), torch.full_like(label_ce, beta))
    return share * label_ce + (1.0 - share) * self_ce


class WeightedCrossEntropyLoss(nn.Module):
    """Eq. 1: cross-entropy with voxels labelled lesion weighted by α.

    Returns the plain mean of the per-voxel loss over all voxels (not PyTorch's
    weight-normalised mean). `known_negative` is accepted for a uniform interface and changes
    nothing: eq. 1 is plain CE on every background voxel already.
    """

    def __init__(self, alpha: float = 3.0) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha)

    def per_voxel(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """N×H×W float32 loss before the mean."""
        log_probability, target = _validated(logits, target, known_negative)
        label_ce = _label_ce(log_probability, target)
        return torch.where(target == 1, self.alpha * label_ce, label_ce)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.per_voxel(logits, target, known_negative).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class BootstrapLoss(nn.Module):
    """Eq. 2: β·CE(Y, Ŷ) + (1 − β)·CE(argmax Ŷ, Ŷ) on every voxel, lesion or not.

    Returns the plain mean of the per-voxel loss over all voxels. On `known_negative` voxels
    the loss is plain CE(Y, Ŷ).
    """

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        self.beta = _check_beta(beta)

    def per_voxel(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """N×H×W float32 loss before the mean."""
        log_probability, target = _validated(logits, target, known_negative)
        return _bootstrap(log_probability, _label_ce(log_probability, target), self.beta, known_negative)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.per_voxel(logits, target, known_negative).mean()

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class LopsidedBootstrapLoss(nn.Module):
    """Eq. 3: the bootstrap term on voxels labelled 0, α·CE on voxels labelled 1.

    Returns the plain mean of the per-voxel loss over all voxels (not PyTorch's
    weight-normalised mean). On `known_negative` voxels labelled 0 the loss is plain CE;
    voxels labelled 1 keep α·CE whatever the mask says. β = 1 gives eq. 1 exactly.
    """

    def __init__(self, alpha: float = 3.0, beta: float = 0.1) -> None:
        super().__init__()
        self.alpha = _check_alpha(alpha)
        self.beta = _check_beta(beta)

    def per_voxel(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """N×H×W float32 loss before the mean."""
        log_probability, target = _validated(logits, target, known_negative)
        label_ce = _label_ce(log_probability, target)
        background = _bootstrap(log_probability, label_ce, self.beta, known_negative)
        return torch.where(target == 1, self.alpha * label_ce, background)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, known_negative: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.per_voxel(logits, target, known_negative).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"


Loss = Union[WeightedCrossEntropyLoss, BootstrapLoss, LopsidedBootstrapLoss]


def make_loss(name: str, alpha: float = 3.0, beta: float = 0.1) -> Loss:
    """The loss the trainer's --loss option names; parameters a loss does not use are ignored."""
    if name == "ce":
        return WeightedCrossEntropyLoss(alpha)
    if name == "bootstrap":
        return BootstrapLoss(beta)
    if name == "lopsided":
        return LopsidedBootstrapLoss(alpha, beta)
    raise BrainMetSegError(f"loss: unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
