"""The trainer's collapse watch: which epochs it flags, on voxel shares and on real lesion metrics."""
from __future__ import annotations

import numpy as np

from BrainMetSegLib.collapse_watch import (COLLAPSE_MAX_SHARE, collapse_message, no_lesion_found_message,
                                          validation_verdict)
from BrainMetSegLib.metrics import evaluate_case, summarise
from BrainMetSegLib.volumes import make_affine

UNIT = make_affine((1.0, 1.0, 1.0))
SHAPE = (12, 20, 20)


def test_collapse_is_reported_above_the_share_or_ratio_limits_only():
    assert collapse_message(0.01, 0.002, "epoch 1") is None  # over-eager but under 2% of the brain
    assert collapse_message(0.019, 0.001, "epoch 1") is None
    message = collapse_message(0.05, 0.002, "epoch 3, validation")
    assert message.startswith("epoch 3, validation: 5.0% of brain voxels predicted lesion (labelled: 0.20%)")
    assert collapse_message(0.15, 0.05, "e") is None  # 3x the labelled share
    assert "above the collapse limit 20.0%" in collapse_message(COLLAPSE_MAX_SHARE + 0.01, 0.1, "e")
    assert collapse_message(0.5, None, "e") is not None and collapse_message(None, 0.1, "e") is None


def test_predicting_no_lesion_where_lesions_are_labelled_is_reported_as_a_collapse():
    message = collapse_message(0.0, 0.00015, "epoch 1, validation")
    assert message.startswith("epoch 1, validation: no brain voxel predicted lesion although 0.01% is labelled")
    assert "--lr" in message and "--alpha" in message  # what to try next
    assert collapse_message(0.0, 0.0, "e") is None and collapse_message(0.0, None, "e") is None  # nothing to find
    assert collapse_message(1e-6, 0.004, "e") is None  # one voxel called is not background only
    assert collapse_message(0.0, 0.004, "e", past_warmup=False) is None  # normal early in training


def _label_with_two_lesions() -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[3:6, 3:6, 3:6] = 1
    label[6:9, 12:15, 12:15] = 1
    return label


def _summary(probability: np.ndarray, label: np.ndarray) -> dict:
    return summarise([evaluate_case(probability, label, UNIT, case_id="Mets_001")])


def test_finding_no_labelled_lesion_after_the_warmup_is_reported_with_what_was_called():
    label = _label_with_two_lesions()
    elsewhere = np.zeros(SHAPE, dtype=np.float32)
    elsewhere[2:4, 15:18, 2:5] = 0.75  # one spot, on no lesion
    message = no_lesion_found_message(_summary(elsewhere, label), "epoch 2, validation")
    assert message.startswith("epoch 2, validation: none of the 2 labelled lesion(s) found "
                              "(all 1 it called are false positives)")
    assert "--lr" in message
    nothing = no_lesion_found_message(_summary(np.zeros(SHAPE, dtype=np.float32), label), "e")
    assert "(it called none)" in nothing
    assert no_lesion_found_message(_summary(elsewhere, label), "e", past_warmup=False) is None


def test_finding_one_lesion_or_having_none_to_find_is_not_reported():
    label = _label_with_two_lesions()
    one_found = np.zeros(SHAPE, dtype=np.float32)
    one_found[3:6, 3:6, 3:6] = 0.25  # weak, but on a lesion
    assert no_lesion_found_message(_summary(one_found, label), "e") is None
    spot = np.zeros(SHAPE, dtype=np.float32)
    spot[2:4, 15:18, 2:5] = 0.75
    assert no_lesion_found_message(_summary(spot, np.zeros(SHAPE, dtype=np.uint8)), "e") is None


def test_the_validation_verdict_says_one_cause_once():
    label = _label_with_two_lesions()
    nothing = _summary(np.zeros(SHAPE, dtype=np.float32), label)
    background = validation_verdict(0.0, 0.004, nothing, "epoch 2, validation")
    assert "no brain voxel predicted lesion" in background and "none of the" not in background
    spot = np.zeros(SHAPE, dtype=np.float32)
    spot[2:4, 15:18, 2:5] = 0.75
    missed = validation_verdict(0.0002, 0.004, _summary(spot, label), "epoch 2, validation")
    assert "none of the 2 labelled lesion(s) found" in missed and "no brain voxel" not in missed
    found = spot.copy()
    found[3:6, 3:6, 3:6] = 0.75
    assert validation_verdict(0.0004, 0.004, _summary(found, label), "e") is None
    weak = np.zeros(SHAPE, dtype=np.float32)
    weak[3:6, 3:6, 3:6] = 0.25  # found, though no voxel reaches 0.5
    assert validation_verdict(0.0, 0.004, _summary(weak, label), "e") is None
    assert validation_verdict(0.0002, 0.004, _summary(spot, label), "e", past_warmup=False) is None
