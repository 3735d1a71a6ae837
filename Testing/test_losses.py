"""The three losses against values worked out by hand with math.log/math.exp."""
from __future__ import annotations

import math

import pytest
import torch

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.losses import (
    LOSS_NAMES,
    BootstrapLoss,
    LopsidedBootstrapLoss,
    WeightedCrossEntropyLoss,
    make_loss,
)

# Four voxels in one 1x2x2 image: (background logit, lesion logit) and label.
#   v0: confident background, labelled 0            argmax 0
#   v1: predicted lesion, labelled 0 (missed lesion) argmax 1
#   v2: predicted lesion, labelled 1                 argmax 1
#   v3: predicted background, labelled 1             argmax 0
VOXELS = [((2.0, -1.0), 0), ((-0.5, 1.5), 0), ((0.0, 3.0), 1), ((1.0, 0.0), 1)]
ALPHA, BETA = 3.0, 0.1


def ce(z: tuple, cls: int) -> float:
    """−log softmax(z)[cls], written out."""
    return -z[cls] + math.log(math.exp(z[0]) + math.exp(z[1]))


def argmax(z: tuple) -> int:
    return 0 if z[0] >= z[1] else 1


def inputs(voxels=VOXELS, dtype=torch.float32):
    logits = torch.tensor([[[v[0][0] for v in voxels]], [[v[0][1] for v in voxels]]], dtype=dtype)
    logits = logits.reshape(2, 2, 2).unsqueeze(0).clone().requires_grad_(True)  # 1x2x2x2
    target = torch.tensor([v[1] for v in voxels], dtype=torch.uint8).reshape(1, 2, 2)
    return logits, target


def by_hand_weighted(z, y, alpha=ALPHA):
    return (alpha if y == 1 else 1.0) * ce(z, y)


def by_hand_bootstrap(z, y, beta=BETA):
    return beta * ce(z, y) + (1 - beta) * ce(z, argmax(z))


def by_hand_lopsided(z, y, alpha=ALPHA, beta=BETA):
    return alpha * ce(z, y) if y == 1 else by_hand_bootstrap(z, y, beta)


@pytest.mark.parametrize(
    "loss, by_hand",
    [
        (WeightedCrossEntropyLoss(ALPHA), by_hand_weighted),
        (BootstrapLoss(BETA), by_hand_bootstrap),
        (LopsidedBootstrapLoss(ALPHA, BETA), by_hand_lopsided),
    ],
)
def test_values_match_hand_arithmetic(loss, by_hand):
    logits, target = inputs()
    expected = [by_hand(z, y) for z, y in VOXELS]
    per_voxel = loss.per_voxel(logits, target)
    assert per_voxel.shape == (1, 2, 2) and per_voxel.dtype == torch.float32
    assert per_voxel.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert loss(logits, target).item() == pytest.approx(sum(expected) / 4, rel=1e-6)


def test_hand_values_are_what_the_paper_means():
    """Spot check one voxel of each case with the numbers substituted, so the helpers above are right."""
    # v1: label 0 but the network says lesion: 0.1 * CE(0) + 0.9 * CE(1)
    z = (-0.5, 1.5)
    log_sum = math.log(math.exp(-0.5) + math.exp(1.5))
    assert by_hand_lopsided(z, 0) == pytest.approx(0.1 * (0.5 + log_sum) + 0.9 * (-1.5 + log_sum))
    # v3: label 1: 3 * CE(1)
    assert by_hand_lopsided((1.0, 0.0), 1) == pytest.approx(3 * (0.0 + math.log(math.e + 1.0)))


def test_plain_mean_not_weight_normalised_mean():
    logits, target = inputs()
    ours = WeightedCrossEntropyLoss(ALPHA)(logits, target).item()
    weights = [ALPHA if y == 1 else 1.0 for _, y in VOXELS]
    weighted_sum = sum(w * ce(z, y) for w, (z, y) in zip(weights, VOXELS))
    assert ours == pytest.approx(weighted_sum / len(VOXELS), rel=1e-6)
    pytorch = torch.nn.functional.cross_entropy(logits, target.long(), weight=torch.tensor([1.0, ALPHA])).item()
    assert pytorch == pytest.approx(weighted_sum / sum(weights), rel=1e-6)
    assert abs(ours - pytorch) > 0.1


def test_beta_one_turns_lopsided_into_weighted_ce_exactly():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, 7)
    target = torch.rand(3, 5, 7) > 0.7
    lopsided = LopsidedBootstrapLoss(alpha=5.0, beta=1.0).per_voxel(logits, target)
    weighted = WeightedCrossEntropyLoss(alpha=5.0).per_voxel(logits, target)
    assert torch.equal(lopsided, weighted)


def test_beta_one_turns_bootstrap_into_plain_ce():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.rand(2, 4, 4) > 0.5
    assert torch.allclose(
        BootstrapLoss(beta=1.0)(logits, target), torch.nn.functional.cross_entropy(logits, target.long())
    )


def analytic_gradient(alpha, beta, lopsided_only_background: bool, known_negative=None):
    """d(mean loss)/d logits from p − β·e_y − (1 − β)·e_argmax, argmax held constant."""
    rows = []
    for index, (z, y) in enumerate(VOXELS):
        p1 = math.exp(z[1]) / (math.exp(z[0]) + math.exp(z[1]))
        p = (1 - p1, p1)
        k = argmax(z)
        b = 1.0 if known_negative is not None and known_negative[index] else beta
        if lopsided_only_background and y == 1:
            grad = [alpha * (p[c] - (c == y)) for c in (0, 1)]
        else:
            grad = [p[c] - b * (c == y) - (1 - b) * (c == k) for c in (0, 1)]
        rows.append([g / len(VOXELS) for g in grad])
    return torch.tensor(rows).T.reshape(1, 2, 2, 2)


@pytest.mark.parametrize("lopsided", [False, True])
def test_no_gradient_through_argmax_target(lopsided):
    logits, target = inputs()
    loss = LopsidedBootstrapLoss(ALPHA, BETA) if lopsided else BootstrapLoss(BETA)
    loss(logits, target).backward()
    expected = analytic_gradient(ALPHA, BETA, lopsided_only_background=lopsided)
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_known_negative_replaces_bootstrap_by_plain_ce():
    logits, target = inputs()
    mask = torch.tensor([[False, True], [True, True]]).unsqueeze(0)  # v1 (label 0) and v2, v3 (label 1)
    flags = mask.flatten().tolist()

    lopsided = LopsidedBootstrapLoss(ALPHA, BETA).per_voxel(logits, target, known_negative=mask).flatten().tolist()
    # v0 unmasked: bootstrap; v1 masked label 0: plain CE; label-1 voxels keep alpha * CE.
    expected = [by_hand_bootstrap(*VOXELS[0]), ce(*VOXELS[1]), ALPHA * ce(*VOXELS[2]), ALPHA * ce(*VOXELS[3])]
    assert lopsided == pytest.approx(expected, rel=1e-6)

    bootstrap = BootstrapLoss(BETA).per_voxel(logits, target, known_negative=mask).flatten().tolist()
    expected = [by_hand_bootstrap(*VOXELS[0])] + [ce(z, y) for z, y in VOXELS[1:]]
    assert bootstrap == pytest.approx(expected, rel=1e-6)

    weighted = WeightedCrossEntropyLoss(ALPHA)
    assert torch.equal(weighted.per_voxel(logits, target, known_negative=mask), weighted.per_voxel(logits, target))

    BootstrapLoss(BETA)(logits, target, known_negative=mask).backward()
    assert torch.allclose(logits.grad, analytic_gradient(ALPHA, BETA, False, known_negative=flags), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_is_computed_in_float32(dtype):
    logits, target = inputs(dtype=dtype)
    value = LopsidedBootstrapLoss(ALPHA, BETA)(logits, target)
    assert value.dtype == torch.float32
    reference = LopsidedBootstrapLoss(ALPHA, BETA)(logits.detach().to(dtype).float(), target)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)


@pytest.mark.parametrize("target_dtype", [torch.bool, torch.uint8, torch.int32, torch.int64])
def test_target_dtypes_agree(target_dtype):
    logits, target = inputs()
    assert LopsidedBootstrapLoss()(logits, target.to(target_dtype)).item() == pytest.approx(
        LopsidedBootstrapLoss()(logits, target).item()
    )


def test_make_loss_names():
    assert LOSS_NAMES == ("ce", "bootstrap", "lopsided")
    ce_loss = make_loss("ce", 4.0, 0.5)
    assert isinstance(ce_loss, WeightedCrossEntropyLoss) and ce_loss.alpha == 4.0
    bootstrap = make_loss("bootstrap", 4.0, 0.5)
    assert isinstance(bootstrap, BootstrapLoss) and bootstrap.beta == 0.5
    lopsided = make_loss("lopsided", 4.0, 0.5)
    assert isinstance(lopsided, LopsidedBootstrapLoss) and (lopsided.alpha, lopsided.beta) == (4.0, 0.5)
    with pytest.raises(BrainMetSegError, match=r"loss: unknown loss 'focal'; choose one of ce, bootstrap, lopsided"):
        make_loss("focal", 3.0, 0.1)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_bad_alpha_refused(alpha):
    with pytest.raises(BrainMetSegError, match=r"^alpha: must be a positive number"):
        LopsidedBootstrapLoss(alpha=alpha)
    with pytest.raises(BrainMetSegError, match=r"^alpha: "):
        WeightedCrossEntropyLoss(alpha=alpha)


@pytest.mark.parametrize("beta", [0, -0.1, 1.5, float("nan"), None])
def test_bad_beta_refused(beta):
    with pytest.raises(BrainMetSegError, match=r"^beta: must be in \(0, 1\]"):
        LopsidedBootstrapLoss(beta=beta)
    with pytest.raises(BrainMetSegError, match=r"^beta: "):
        BootstrapLoss(beta=beta)


@pytest.mark.parametrize(
    "logits, target, mask, message",
    [
        (torch.zeros(1, 2, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.uint8), None,
         r"^logits: expected a floating-point tensor"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.uint8), None,
         r"^logits: expected shape Nx2xHxW .*got 1x3x2x2"),
        (torch.zeros(2, 2, 2), torch.zeros(2, 2, dtype=torch.uint8), None, r"^logits: expected shape Nx2xHxW"),
        (torch.zeros(0, 2, 2, 2), torch.zeros(0, 2, 2, dtype=torch.uint8), None, r"^logits: no voxels"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2), None, r"^target: expected an integer or bool tensor"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 3, dtype=torch.uint8), None,
         r"^target: shape 1x2x3 does not match logits 1x2x2x2"),
        (torch.zeros(1, 2, 2, 2), torch.tensor([[[0, 1], [2, 0]]]), None,
         r"^target: labels must be 0 \(background\) or 1 \(lesion\); found 2"),
        (torch.zeros(1, 2, 2, 2), torch.tensor([[[0, -1], [1, 0]]]), None, r"^target: .*found -1"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.uint8), torch.zeros(1, 2, 2, dtype=torch.uint8),
         r"^known_negative: expected a bool tensor"),
        (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.bool),
         r"^known_negative: shape 2x2 does not match target 1x2x2"),
    ],
)
def test_bad_inputs_refused(logits, target, mask, message):
    for loss in (WeightedCrossEntropyLoss(), BootstrapLoss(), LopsidedBootstrapLoss()):
        with pytest.raises(BrainMetSegError, match=message):
            loss(logits, target, known_negative=mask)
